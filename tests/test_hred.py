"""HRED (`chatbot.models.hred`): saving and loading in safe mode, the inference contract (`decode_step` against
teacher forcing) and padding turns that change nothing."""

import json

import keras
import numpy as np
import pytest

from chatbot.config import model_config
from chatbot.corpus import load_corpus
from chatbot.models import build_model
from chatbot.models.base import existing_targets
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.data import WindowBatches, dialogue_windows


@pytest.fixture(scope="module")
def english_batches():
    corpus = load_corpus("chatterbot:english")
    tokenizer = Tokenizer.train([t.text for d in corpus.split("train") for t in d.turns], 400)
    config = model_config("tiny", vocabulary_size=tokenizer.vocabulary_size)
    windows = dialogue_windows(corpus.split("train"), tokenizer, config.max_turns, config.max_utterance_length)
    return config, WindowBatches(windows, 32, seed=0)


def _batch(batches):
    return next(iter(batches.dataset())).numpy()


def teacher_logits(model, tokens):
    """`(M, V)` logits of every real target token, computed as training computes them (teacher forcing)."""
    context, _ = model.encode_turns(tokens)
    replies, context = existing_targets(context[:, :-1], replies=tokens[:, 1:])
    outputs, _ = model.decoder_outputs(replies, model.condition(context))
    return model.logits(outputs).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("cell, bidirectional", [("gru", False), ("lstm", True)])
def test_save_then_load_gives_identical_logits(tmp_path, english_batches, cell, bidirectional):
    config, batches = english_batches
    model = build_model(model_config("tiny", vocabulary_size=config.vocabulary_size, cell=cell, bidirectional=bidirectional))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # eager: no traced training step to build
    model.fit(batches.dataset().take(3), epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    probe = _batch(batches)
    np.testing.assert_array_equal(teacher_logits(model, probe), teacher_logits(loaded, probe))
    assert loaded.get_config()["cell"] == cell and loaded.get_config()["bidirectional"] is bidirectional
    # the optimizer state travels too (what --resume relies on)
    assert int(loaded.optimizer.iterations.numpy()) == 3


def test_checkpoint_holds_no_pickle(tmp_path, english_batches):
    import zipfile

    config, _ = english_batches
    path = tmp_path / "model.keras"
    build_model(config).save(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        config_json = json.loads(archive.read("config.json"))
    assert sorted(names) == ["config.json", "metadata.json", "model.weights.h5"]
    assert config_json["class_name"] == "HRED"


def test_decode_step_matches_teacher_forcing(english_batches):
    """The inference contract runs the same weights as training: logits agree token by token."""
    config, batches = english_batches
    model = build_model(config)
    probe = _batch(batches)[:1]
    turns = int((probe[0, :, 0] != 0).sum())
    history, reply = probe[:, : turns - 1], probe[0, turns - 1]
    length = int((reply != 0).sum())
    teacher = teacher_logits(model, probe[:, :turns])[-(length - 1) :]  # the last reply's target tokens, (length - 1, V)
    state = model.encode_context(history)
    for position in range(length - 1):
        logits, state = model.decode_step(reply[position : position + 1], state)
        np.testing.assert_allclose(logits.numpy()[0], teacher[position], rtol=1e-4, atol=1e-4)


def test_encode_context_ignores_padding_turns(english_batches):
    config, batches = english_batches
    model = build_model(config)
    probe = _batch(batches)[:1, :2]
    padded = np.concatenate([probe, np.zeros_like(probe)], axis=1)  # two empty turns after
    np.testing.assert_allclose(model.encode_context(probe)[0], model.encode_context(padded)[0], atol=1e-6)
