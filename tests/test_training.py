"""`chatbot train` on tiny real models: the model directory, --resume (of a run the time budget cut:
tests/test_time_budget.py), damaged checkpoints, --init-from (a VHRED started from an HRED), the
posterior-collapse warning and mixed-bfloat16 training."""

import json

import keras
import numpy as np
import pytest

from chatbot.cli.parser import main
from chatbot.config import model_config
from chatbot.errors import CheckpointError
from chatbot.inference.checkpoint import load_checkpoint, read_config
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.responder import Responder
from chatbot.models import build_model
from chatbot.text.tokenizer import BOS_ID, EOS_ID
from chatbot.training.callbacks import PosteriorCollapseWarning
from chatbot.training.trainer import copy_encoder_weights
from tests.conftest import tiny_train_config


def test_training_writes_a_complete_model_directory(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.keras", "tokenizer.model", "config.json", "metrics.json", "logs", "backup"} <= names
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["loss"] < epochs[0]["loss"]
    assert all(e["val_perplexity"] > 1 and e["target_tokens_per_second"] > 0 for e in epochs)
    assert metrics["best"]["val_perplexity"] == min(e["val_perplexity"] for e in epochs)
    model_config, train_config = read_config(tiny_model_dir)
    assert model_config.vocabulary_size == load_checkpoint(tiny_model_dir).tokenizer.vocabulary_size
    assert train_config.corpus == ("chatterbot:english",)
    assert any((tiny_model_dir / "logs").rglob("*tfevents*"))


@pytest.mark.slow
def test_resume_continues_after_the_last_epoch_with_optimizer_state(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--corpus", "chatterbot:english", "--preset", "tiny", "--vocabulary-size", "400", "--length-groups", "1"]
    common += ["--max-dialogues", "300"]  # 6 batches an epoch: the shuffle, the optimizer's steps and the learning show as well
    # The same rates in a 1-epoch run and in its 2-epoch continuation; no dropout, whose noise a
    # resumed run draws afresh (its generators' state is not in the backup), so the runs can match exactly.
    common += ["--lr-schedule", "constant", "--dropout", "0"]
    straight = main(common + ["--epochs", "2", "--out", str(tmp_path / "straight")])
    common += ["--out", str(out)]
    assert main(common + ["--epochs", "1"]) == 0
    first = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in first] == [1]

    # Without --resume an existing run is protected.
    assert main(common + ["--epochs", "2"]) == 1
    assert "already holds a model; continue it with --resume" in capsys.readouterr().err

    assert main(common + ["--epochs", "2", "--resume"]) == 0
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    # The optimizer continued: the backup's step counter counts both epochs' batches.
    from chatbot.models import build_model
    from chatbot.training.trainer import make_optimizer

    batches = json.loads((out / "metrics.json").read_text())["data"]["train_batches"]
    model_config, train_config = read_config(out)
    model = build_model(model_config)
    # The trainer's own optimizer (a cosine schedule by default), so the saved variables match.
    model.compile(optimizer=make_optimizer(train_config, total_steps=train_config.epochs * batches))
    model.optimizer.build(model.trainable_variables)
    model.load_weights(out / "backup" / "latest.weights.h5")
    assert int(model.optimizer.iterations.numpy()) == 2 * batches
    assert epochs[1]["loss"] < epochs[0]["loss"]
    # The resumed epoch is the uninterrupted run's second epoch: same shuffle order (fit's epoch, not
    # the process's), same weights and optimizer state, so the same losses.
    assert straight == 0
    uninterrupted = json.loads((tmp_path / "straight" / "metrics.json").read_text())["epochs"]
    for name in ("loss", "val_loss"):
        assert epochs[1][name] == pytest.approx(uninterrupted[1][name], rel=1e-4), name


def test_resume_without_a_run_says_so(tmp_path, capsys):
    assert main(["train", "--corpus", "chatterbot:english", "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "config.json: missing" in capsys.readouterr().err


def test_train_limits_only_lower_a_runs_budget_and_name_what_they_lowered():
    """$CHATBOT_TRAIN_LIMITS (docs/training.md): each limit lowers its setting, never raises one; an unknown name is refused."""
    from chatbot.config import TrainConfig, limited, train_limits
    from chatbot.errors import ConfigError

    limits = train_limits("epochs=1,max_minutes=0.05 length_groups=1,batch_size=128")
    config, lowered = limited(TrainConfig(corpus="chitchat", epochs=4, batch_size=64, length_groups=4), limits)
    assert (config.epochs, config.max_minutes, config.length_groups, config.batch_size) == (1, 0.05, 1, 64)
    assert sorted(lowered) == ["epochs 4 → 1", "length_groups 4 → 1", "max_minutes None → 0.05"]
    with pytest.raises(ConfigError, match="unknown limit 'dropout'.*length_groups"):
        train_limits("dropout=0.1")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_checkpoint(tmp_path, tiny_model_dir, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    if damage == "missing":
        (broken / "model.keras").unlink()
        match = "model.keras: missing"
    else:
        (broken / "model.keras").write_bytes(b"not a zip file at all")
        match = "cannot load the model"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(broken)


@pytest.mark.slow
def test_init_from_reuses_the_tokenizer_and_sizes_and_logs_every_vhred_term(tiny_model_dir, tiny_vhred_dir):
    assert (tiny_vhred_dir / "tokenizer.model").read_bytes() == (tiny_model_dir / "tokenizer.model").read_bytes()
    vhred_config, train_config = read_config(tiny_vhred_dir)
    assert vhred_config.model == "vhred" and train_config.init_from == str(tiny_model_dir)
    assert vhred_config.hidden_dim == read_config(tiny_model_dir)[0].hidden_dim
    epoch = json.loads((tiny_vhred_dir / "metrics.json").read_text())["epochs"][0]
    for name in ("reconstruction", "kl", "bow", "kl_weight", "active_units", "val_kl", "val_perplexity"):
        assert name in epoch, name
    batches = json.loads((tiny_vhred_dir / "metrics.json").read_text())["data"]["train_batches"]
    assert vhred_config.kl_anneal_steps == round(0.5 * batches)  # half of the one epoch planned
    assert epoch["kl_weight"] > 0


def test_init_from_copies_hreds_layers_and_the_vhred_starts_as_that_hred(tiny_checkpoint):
    """Serban et al. (2017) start VHRED from a trained HRED: every HRED layer is copied, and the decoder's
    weights for z start at zero, so whatever z the prior draws, the first replies are the HRED's."""
    source = tiny_checkpoint.model
    model = build_model(model_config("tiny", model="vhred", vocabulary_size=source.vocabulary_size))
    copied = copy_encoder_weights(model, source)
    assert copied == ["embedding", "utterance_encoder", "context_encoder", "decoder", "output_projection", "context_centering"]
    for name in copied:
        for a, b in zip(getattr(model, name).get_weights(), getattr(source, name).get_weights(), strict=True):
            np.testing.assert_array_equal(a[: b.shape[0]], b)
            assert not a[b.shape[0] :].any()  # the rows that read z
    context = np.zeros((2, 3, 8), np.int32)
    context[:, :, :4] = [BOS_ID, 5, 6, EOS_ID]
    context[1, 2] = 0
    noise = np.random.default_rng(0).standard_normal((2, model.latent_dim)).astype("float32") * 3
    tokens = np.array([BOS_ID, BOS_ID], np.int32)
    theirs, _ = source.decode_step(tokens, source.encode_context(context))
    mine, _ = model.decode_step(tokens, model.encode_context(context, noise))
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_posterior_collapse_is_reported_only_after_annealing(tiny_vhred_dir):
    lines = []
    model = load_checkpoint(tiny_vhred_dir).model
    model.compile(optimizer=keras.optimizers.Adam())
    warning = PosteriorCollapseWarning(anneal_steps=10, write=lines.append)
    warning.set_model(model)
    model.optimizer.iterations.assign(5)
    warning.on_epoch_end(0, {"val_kl": 0.001})
    assert lines == []  # still annealing
    model.optimizer.iterations.assign(10)
    warning.on_epoch_end(1, {"val_kl": 2.5})
    assert lines == []  # healthy KL
    warning.on_epoch_end(2, {"val_kl": 0.001})
    assert len(lines) == 1 and "posterior collapse" in lines[0] and "epoch 3" in lines[0]


@pytest.mark.slow
def test_mixed_bfloat16_training_decodes_in_float32(tmp_path):
    from chatbot.training.trainer import train

    out = tmp_path / "bf16"
    # 600 dialogues, 20 batches: validation perplexity about 240, well under the uniform 400 (all 1948: about 45).
    train_config = tiny_train_config(epochs=1, precision="mixed_bfloat16", max_dialogues=600)
    train(out, model_config("tiny"), train_config, verbose=0, log=lambda line: None)
    assert keras.mixed_precision.global_policy().name == "float32"  # the run's policy does not leak
    checkpoint = load_checkpoint(out)
    assert checkpoint.train_config.precision == "mixed_bfloat16"
    assert checkpoint.model.dtype_policy.name == "float32" and {w.dtype for w in checkpoint.model.weights} == {"float32"}
    metrics = json.loads((out / "metrics.json").read_text())["epochs"]
    assert metrics[-1]["val_perplexity"] < 400  # learnt something: the vocabulary is 400
    history = ["hello", "hi, how are you?"]
    first = Responder(checkpoint).candidates(history, DecodingConfig(), seed=5).texts
    assert first == Responder(load_checkpoint(out)).candidates(history, DecodingConfig(), seed=5).texts
