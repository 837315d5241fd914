"""The pretrained model in storage/models/default: what `chatbot chat` opens without --model."""

import argparse
import re
import zipfile

import h5py
import keras
import numpy as np
import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import chatbot.models  # noqa: F401  registers the custom layers for keras.models.load_model
from chatbot.chat.run import run_chat
from chatbot.cli.parser import build_parser, main
from chatbot.inference.checkpoint import MODEL_FILENAME, SHIPPED_MODEL_DIR, find_default_model, load_checkpoint, model_checksum, sha256_of
from chatbot.storage import ConversationStore
from chatbot.text.tokenizer import FILENAME as TOKENIZER_FILENAME

CARD = SHIPPED_MODEL_DIR / "MODEL_CARD.md"


def test_it_is_small_enough_to_live_in_the_repository():
    total = sum(path.stat().st_size for path in SHIPPED_MODEL_DIR.iterdir())
    assert total <= 25 * 1024 * 1024, f"{total} bytes"


def test_checksums_match_the_model_card():
    card = CARD.read_text()
    for name in (MODEL_FILENAME, TOKENIZER_FILENAME):
        match = re.search(rf"`{re.escape(name)}`[^\n]*?`([0-9a-f]{{64}})`", card)
        assert match, f"the card lists no SHA-256 for {name}"
        assert match.group(1) == sha256_of(SHIPPED_MODEL_DIR / name), name
    assert f"`{model_checksum(SHIPPED_MODEL_DIR)}`" in card  # the model id replay records
    assert "chatbot train " in card and "chatbot pack " in card  # the commands that reproduce it


def test_it_loads_in_safe_mode_with_float16_weights_decoded_in_float32():
    # Keras's own loader with safe_mode refuses any serialized code (lambdas), so this proves none is needed.
    raw = keras.models.load_model(SHIPPED_MODEL_DIR / MODEL_FILENAME, safe_mode=True, compile=False)
    with zipfile.ZipFile(SHIPPED_MODEL_DIR / MODEL_FILENAME) as archive, archive.open("model.weights.h5") as handle:
        with h5py.File(handle) as weights:
            dtypes = set()
            weights.visititems(lambda name, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {"float16"}
    checkpoint = load_checkpoint(SHIPPED_MODEL_DIR)
    assert {w.dtype for w in checkpoint.model.weights} == {"float32"}
    assert checkpoint.model.dtype_policy.name == "float32"
    for raw_weight, weight in zip(raw.get_weights(), checkpoint.model.get_weights(), strict=True):
        np.testing.assert_array_equal(raw_weight.astype(np.float32), weight)


@pytest.mark.slow
def test_chat_without_model_answers_a_three_turn_conversation(db_url):
    assert find_default_model() == SHIPPED_MODEL_DIR
    args: argparse.Namespace = build_parser().parse_args(["chat", "--db", db_url])
    lines: list[str] = []
    with create_pipe_input() as pipe:
        pipe.send_text("hi, how are you?\nwhat do you do for fun?\ndo you like music?\n\x04")
        assert run_chat(args, prompt_session=PromptSession(input=pipe, output=DummyOutput()), write=lines.append) == 0
    replies = [line.removeprefix("bot> ") for line in lines if line.startswith("bot> ")]
    assert len(replies) == 3 and all(reply.strip() for reply in replies)
    store = ConversationStore(db_url)
    turns = store.turns(1)
    assert [t.speaker for t in turns] == ["user", "bot"] * 3
    assert [t.text for t in turns[1::2]] == replies
    models = store.models()
    assert {models[t.model_id].checksum for t in turns[1::2]} == {model_checksum(SHIPPED_MODEL_DIR)}
    # Every reply regenerates exactly from the stored model, settings and seed.
    assert main(["replay", "1", "--regenerate", "--db", db_url]) == 0
