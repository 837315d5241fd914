"""Shared fixtures: a tiny HRED (and a VHRED from it) really trained on chatterbot:english, and temporary databases
(`db_url`: SQLite; `store_url`: SQLite and, with $CHATBOT_TEST_POSTGRES, PostgreSQL).

The trained models are built once per test run, not once per pytest-xdist worker: each is
kept in a directory named by the hash of its configs, under the folder all workers share,
and the first worker to need it trains it while the others wait on a file lock.

XLA's compiled programs are likewise kept once per test run: every process of the run (the pytest-xdist
workers and the `chatbot serve` and `chatbot chat` processes the tests start) shares one persistent
compilation cache (`pytest_configure` below), as a user's second chat or server start does; without it
each of the run's dozen servers compiled the scripted model's batch graphs again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from chatbot.config import TrainConfig, model_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = os.path.join(REPO, "corpora")

XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
_xla_cache_made_here: str | None = None


def pytest_configure(config):
    """Point TensorFlow's XLA persistent compilation cache at one folder for the whole run, before any
    TensorFlow starts. `chatbot chat` and `chatbot serve` keep a cache flag already in TF_XLA_FLAGS
    (chatbot/compiler.py), so the processes the tests start share it too. The pytest-xdist controller
    sets it before it starts the workers, which inherit it; the process that made the folder removes it
    at the end. A cache folder already named in TF_XLA_FLAGS is left as it is."""
    global _xla_cache_made_here
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if XLA_CACHE_FLAG in flags:
        return
    _xla_cache_made_here = tempfile.mkdtemp(prefix="chatbot-test-xla-")
    os.environ["TF_XLA_FLAGS"] = f"{flags} {XLA_CACHE_FLAG}={_xla_cache_made_here}".strip()


def pytest_unconfigure(config):
    if _xla_cache_made_here is not None:
        shutil.rmtree(_xla_cache_made_here, ignore_errors=True)


def tiny_train_config(**overrides) -> TrainConfig:
    # One length group: the traced training graph is a third the size, which halves a tiny run's time;
    # the length-group path itself is checked against one group in tests/test_models.py.
    values = dict(corpus="chatterbot:english", epochs=2, batch_size=32, vocabulary_size=400, learning_rate=3e-3, length_groups=1)
    values.update(overrides)
    return TrainConfig(**values)


def trained_once(tmp_path_factory, name: str, config, train_config):
    """The model directory `train` writes for these configs, trained at most once per test run.

    Raises what `train` raises (then no directory is left, and the next caller trains again).
    """
    from chatbot.training.trainer import train

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this run
    key = hashlib.sha256(json.dumps([dataclasses.asdict(config), dataclasses.asdict(train_config)], sort_keys=True).encode()).hexdigest()
    out = root / "trained-models" / key[:12] / name  # the folder's name is the model's name in stored conversations
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            partial = out.with_name(out.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)  # what a failed attempt left
            train(partial, config, train_config, verbose=0, log=lambda line: None)
            partial.rename(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model directory written by `train` with the tiny preset (about 20 s on 2 cores)."""
    return trained_once(tmp_path_factory, "tiny", model_config("tiny"), tiny_train_config())


@pytest.fixture(scope="session")
def tiny_vhred_dir(tmp_path_factory, tiny_model_dir):
    """A tiny VHRED started from the tiny HRED (--init-from), one epoch."""
    config = model_config("tiny", model="vhred")  # the KL weight rises over half the run (kl_anneal_fraction 0.5)
    return trained_once(tmp_path_factory, "tiny-vhred", config, tiny_train_config(epochs=1, init_from=str(tiny_model_dir)))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model_dir):
    from chatbot.inference.checkpoint import load_checkpoint

    return load_checkpoint(tiny_model_dir)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Runtime data of every test goes to its own folder, never the checkout's storage/."""
    monkeypatch.setenv("CHATBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHATBOT_MODEL", raising=False)


POSTGRES_SERVER = (
    "CHATBOT_TEST_POSTGRES"  # a PostgreSQL URL whose server the tests may create databases on (bin/postgres-test or bin/postgres-server)
)


@contextlib.contextmanager
def postgres_database(server_url: str):
    """A new, empty database on the server of `server_url`, uniquely named, dropped (connections and all) afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from chatbot.storage.postgres import engine_url

    server = engine_url(make_url(server_url))
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"chatbot_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A database URL, once per backend: a SQLite file in tmp_path, and a fresh database on the PostgreSQL
    server named by $CHATBOT_TEST_POSTGRES (skipped when it is unset: bin/postgres-test sets it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.db'}"
        return
    server = os.environ.get(POSTGRES_SERVER)
    if not server:
        pytest.skip(f"PostgreSQL variant: set {POSTGRES_SERVER} to a server URL (bin/postgres-test starts a throwaway one)")
    with postgres_database(server) as url:
        yield url
