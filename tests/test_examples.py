"""The scripts in examples/ run as written (in this process through `runpy`, with tiny settings where they
train) and do what they print: replies from the shipped model, a stored and replayed conversation, a custom
sampler in the reply path, a fine-tuned model saved and reloaded, a trained model against the 3-gram, and a
trained model served over HTTP to the official `openai` client."""

from __future__ import annotations

import re
import runpy
import sys

import pytest

import chatbot
from tests.api_surface import REPO

pytestmark = pytest.mark.slow  # each loads or trains a real model

EXAMPLES = REPO / "examples"


def run_example(name: str, *args: str, capsys, monkeypatch) -> str:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_chat_from_python(tmp_path, capsys, monkeypatch):
    out = run_example("chat_from_python.py", "--db", str(tmp_path / "chat.db"), capsys=capsys, monkeypatch=monkeypatch)
    assert re.search(r"^loaded default: hred, model id [0-9a-f]{16}$", out, re.M), out
    replies = re.findall(r"^bot> (.+)$", out, re.M)
    assert len(replies) == 2 and all(replies), out
    assert len(re.search(r"^beam candidates: (.+)$", out, re.M)[1].split(" | ")) == 3
    assert re.search(r"^conversation 1: '.+', retried: '.+', branches: 2$", out, re.M), out
    assert "replay: 2 of 2 replies identical" in out


def test_custom_sampler_answers_a_stored_conversation(tmp_path, capsys, monkeypatch):
    db = tmp_path / "chat.db"
    out = run_example("custom_sampler.py", "--db", str(db), capsys=capsys, monkeypatch=monkeypatch)
    top_p, typical = re.search(r"^top-p  : (.+)$", out, re.M)[1], re.search(r"^typical: (.+)$", out, re.M)[1]
    assert top_p and typical and top_p != typical  # another sampler, another reply from the same seed
    assert "stored as conversation 1, 4 turns" in out
    with chatbot.load().conversation(db=db, conversation_id=1) as chat:
        stored = [t for t in chat.history() if t.speaker == "bot"]
    assert [t.text for t in stored] == re.findall(r"^bot> (.+)$", out, re.M) and all(t.seed == 7 for t in stored)


def test_fine_tune_on_stored_conversations(tmp_path, capsys, monkeypatch):
    args = ["--db", str(tmp_path / "chat.db"), "--out", str(tmp_path / "tuned"), "--epochs", "2", "--learning-rate", "1e-3"]
    out = run_example("fine_tune.py", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert "held no conversations: stored 3 short ones to train on" in out
    assert "fine-tuning default on 3 stored conversations (12 turns)" in out  # two messages and two replies each
    first, second = (float(x) for x in re.search(r"loss per epoch \(nats per token\): ([\d.]+), ([\d.]+)", out).groups())
    assert second < first
    tuned = chatbot.load(tmp_path / "tuned")
    assert tuned.model_id != chatbot.load().model_id and f"saved {tmp_path / 'tuned'} (model id {tuned.model_id})" in out


def test_train_your_own(tmp_path, capsys, monkeypatch):
    model = tmp_path / "mine"
    args = ["--out", str(model), "--preset", "tiny", "--epochs", "1", "--minutes", "0.1", "--vocabulary-size", "400", "--contexts", "4"]
    out = run_example("train_your_own.py", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert f"wrote {tmp_path / 'mine.jsonl'}" in out and (tmp_path / "mine.jsonl").stat().st_size > 0
    assert re.search(rf"^trained 1 epoch\(s\) in \d+ s into {re.escape(str(model))}$", out, re.M), out
    rows = dict(re.findall(r"^\s*(\S+)  test perplexity\s+([\d.]+)$", out, re.M))
    assert set(rows) == {"unigram", "kn-3gram", "mine"}, out
    verdict = "the model beats the 3-gram" if float(rows["mine"]) < float(rows["kn-3gram"]) else "the 3-gram still wins"
    assert verdict in out and re.search(r"^it says: .+$", out, re.M)


def test_serve_a_trained_model(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The model a test session trained once (what train_your_own.py writes, as tests/test_api.py checks)."""
    out = run_example(
        "serve_your_model.py", "--model", str(tiny_model_dir), "--db", f"sqlite:///{tmp_path / 'served.db'}", capsys=capsys, monkeypatch=monkeypatch
    )
    assert len(re.findall(r"^assistant> .+$", out, re.M)) == 2, out
    assert re.search(rf"^model {re.escape(tiny_model_dir.name)}: conversation 1 holds 4 turns on the server$", out, re.M), out
