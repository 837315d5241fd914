"""Shared fixtures: a tiny HRED really trained on chatterbot:english, and a temporary database."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from chatbot.config import TrainConfig, model_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(REPO, "corpora")


def tiny_train_config(**overrides) -> TrainConfig:
    values = dict(corpus="chatterbot:english", epochs=2, batch_size=32, vocabulary_size=400, learning_rate=3e-3)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model directory written by `train` with the tiny preset (about 20 s on 2 cores)."""
    from chatbot.training.trainer import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(out, model_config("tiny"), tiny_train_config(), verbose=0, log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def tiny_vhred_dir(tmp_path_factory, tiny_model_dir):
    """A tiny VHRED started from the tiny HRED (--init-from), one epoch."""
    from chatbot.training.trainer import train

    out = tmp_path_factory.mktemp("models") / "tiny-vhred"
    config = model_config("tiny", model="vhred", kl_anneal_steps=20)
    train(out, config, tiny_train_config(epochs=1, init_from=str(tiny_model_dir)), verbose=0, log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model_dir):
    from chatbot.checkpoint import load_checkpoint

    return load_checkpoint(tiny_model_dir)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Runtime data of every test goes to its own folder, never the checkout's storage/."""
    monkeypatch.setenv("CHATBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHATBOT_MODEL", raising=False)
