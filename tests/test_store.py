import os
import sqlite3
import stat

import pytest

from chatbot.errors import ConversationNotFoundError, StorageError
from chatbot.store import SCHEMA_VERSION, ConversationStore


def test_database_is_private_wal_with_foreign_keys(tmp_path):
    path = tmp_path / "sub" / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    conversation = store.create_conversation()
    store.add_turn(conversation.id, "user", "hello")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            assert stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) == 0o600
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    raw = sqlite3.connect(path)
    indexes = {row[1] for row in raw.execute("PRAGMA index_list('turns')")}
    assert "ix_turns_conversation_position" in indexes
    assert [r[0] for r in raw.execute("SELECT version FROM schema_migrations")] == [SCHEMA_VERSION]
    assert store.schema_version() == SCHEMA_VERSION


def test_turns_keep_order_positions_and_bot_metadata(db_url):
    store = ConversationStore(db_url)
    model_id = store.register_model("abc123", "tiny", "/models/tiny", {"model": "hred"})
    assert store.register_model("abc123", "tiny", "/models/tiny", {"model": "hred"}) == model_id
    conversation = store.create_conversation(model_id)
    store.add_turn(conversation.id, "user", "x" * 100)
    store.add_turn(conversation.id, "bot", "hi", model_id=model_id, decoding={"top_p": 0.9}, seed=7, latency_ms=12.5)
    turns = store.turns(conversation.id)
    assert [(t.position, t.speaker) for t in turns] == [(0, "user"), (1, "bot")]
    assert (turns[1].seed, turns[1].latency_ms, turns[1].model_id) == (7, 12.5, model_id)
    assert [t.text for t in store.turns(conversation.id, last=1)] == ["hi"]
    [summary] = store.list_conversations()
    assert summary.num_turns == 2 and summary.model_name == "tiny"
    assert len(summary.title) <= 60 and summary.title.endswith("…")


def test_unknown_conversation(db_url):
    store = ConversationStore(db_url)
    with pytest.raises(ConversationNotFoundError, match="no conversation with id 42"):
        store.get_conversation(42)
    with pytest.raises(ConversationNotFoundError):
        store.add_turn(42, "user", "hello")


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 200)
    with pytest.raises(StorageError, match="not a SQLite database"):
        ConversationStore(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are my notes")


def test_read_only_database_reads_but_refuses_writes(tmp_path):
    path = tmp_path / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    conversation = store.create_conversation()
    store.add_turn(conversation.id, "user", "hello")
    store.close()
    with sqlite3.connect(path) as raw:  # leave no WAL behind, as a copied database would
        raw.execute("PRAGMA journal_mode=DELETE")
    reader = ConversationStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert [t.text for t in reader.turns(conversation.id)] == ["hello"]
    with pytest.raises(StorageError, match="read-only"):
        reader.add_turn(conversation.id, "user", "more")
    assert [t.text for t in ConversationStore(f"sqlite:///{path}").turns(conversation.id)] == ["hello"]
