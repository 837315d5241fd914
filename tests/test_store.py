"""The conversation store (`chatbot.storage`) on SQLite and, with $CHATBOT_TEST_POSTGRES, PostgreSQL: the file's
mode, schema upgrades, branches, export, concurrent writers and read-only or foreign files."""

import contextlib
import json
import multiprocessing
import os
import re
import sqlite3
import stat
import sys

import pytest
from sqlalchemy import event

import chatbot.storage.database
import chatbot.storage.postgres
from chatbot.dialogue.export import write_export
from chatbot.errors import ConversationNotFoundError, StorageError
from chatbot.storage import SCHEMA_VERSION, ConversationStore, open_store
from chatbot.storage.database import open_engine

# The schema that migration 1 ("initial") created, as SQLite stored it.
V1_SCHEMA = [
    """CREATE TABLE schema_migrations (
	version INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
)""",
    """CREATE TABLE models (
	id INTEGER NOT NULL, 
	checksum VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	path TEXT NOT NULL, 
	config TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (checksum)
)""",
    """CREATE TABLE conversations (
	id INTEGER NOT NULL, 
	title VARCHAR(61), 
	created_at DATETIME NOT NULL, 
	model_id INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(model_id) REFERENCES models (id)
)""",
    """CREATE TABLE turns (
	id INTEGER NOT NULL, 
	conversation_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	speaker VARCHAR(8) NOT NULL, 
	text TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	model_id INTEGER, 
	decoding TEXT, 
	seed INTEGER, 
	latency_ms DOUBLE, 
	PRIMARY KEY (id), 
	FOREIGN KEY(conversation_id) REFERENCES conversations (id) ON DELETE CASCADE, 
	FOREIGN KEY(model_id) REFERENCES models (id)
)""",
    "CREATE UNIQUE INDEX ix_turns_conversation_position ON turns (conversation_id, position)",
]
V1_TURNS = [  # (id, conversation_id, position, speaker, text)
    (1, 1, 0, "user", "hello"),
    (2, 1, 1, "bot", "hi there"),
    (3, 1, 2, "user", "how are you"),
    (4, 2, 0, "user", "second chat"),
    (5, 2, 1, "bot", "sure"),
]


def write_v1_database(raw: sqlite3.Connection) -> None:
    """The v1 schema, its schema_migrations row and the V1_TURNS, committed."""
    for statement in V1_SCHEMA:
        raw.execute(statement)
    raw.execute("INSERT INTO schema_migrations VALUES (1, 'initial', '2024-01-01 00:00:00')")
    raw.execute("INSERT INTO conversations (id, title, created_at) VALUES (1, 'hello', '2024-01-01'), (2, 'x', '2024-01-01')")
    for turn in V1_TURNS:
        raw.execute(
            "INSERT INTO turns (id, conversation_id, position, speaker, text, created_at) VALUES (?, ?, ?, ?, ?, '2024-01-01')", turn
        )
    raw.commit()


def snapshot(path) -> tuple:
    """The schema and every row of a database, to check that it was left unchanged."""
    with contextlib.closing(sqlite3.connect(path)) as raw:
        tables = [row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        schema = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        return schema, {table: raw.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in tables}


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
    indexes = {row[1]: row[2] for row in raw.execute("PRAGMA index_list('turns')")}  # name: unique
    assert indexes == {"ix_turns_conversation_active_position": 0, "ix_turns_path_digest": 0}
    migrations = [(1, "initial"), (2, "turn_tree"), (3, "serving")]
    assert raw.execute("SELECT version, name FROM schema_migrations").fetchall() == migrations
    assert store.schema_version() == SCHEMA_VERSION == 3
    assert store.backup_path is None
    assert not [name for name in os.listdir(path.parent) if "backup" in name]


def test_turns_keep_order_positions_and_bot_metadata(store_url):
    store = ConversationStore(store_url)
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


def test_unknown_conversation(store_url):
    store = ConversationStore(store_url)
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


def test_v1_database_is_backed_up_then_upgraded(tmp_path):
    path = tmp_path / "chat.db"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    other_session = sqlite3.connect(path)  # still open: the v1 rows are only in the WAL, never checkpointed
    other_session.execute("PRAGMA journal_mode=WAL")
    other_session.execute("PRAGMA wal_autocheckpoint=0")
    write_v1_database(other_session)

    store = ConversationStore(f"sqlite:///{path}")
    other_session.close()

    [backup] = [name for name in os.listdir(tmp_path) if "backup" in name]
    assert re.fullmatch(r"chat\.db\.v1-backup-\d{8}-\d{6}", backup)
    assert store.backup_path == tmp_path / backup
    assert stat.S_IMODE(os.stat(tmp_path / backup).st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(tmp_path / backup)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
        assert raw.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert raw.execute("SELECT id, conversation_id, position, speaker, text FROM turns ORDER BY id").fetchall() == V1_TURNS
        assert "parent_id" not in [row[1] for row in raw.execute("PRAGMA table_info('turns')")]

    assert store.schema_version() == 3
    assert [(t.id, t.parent_id, t.position, t.active) for t in store.turns(1)] == [
        (1, None, 0, True),
        (2, 1, 1, True),
        (3, 2, 2, True),
    ]
    assert [(t.id, t.parent_id, t.text) for t in store.turns(2)] == [(4, None, "second chat"), (5, 4, "sure")]
    # every old turn got the digest a new path with the same texts gets: requests can continue old conversations
    assert store.find_path(store.turns(2)[-1].path_digest).id == 5
    copy = store.create_conversation().id
    store.add_turn(copy, "user", "second chat")
    assert store.add_turn(copy, "bot", "sure").path_digest == store.turns(2)[-1].path_digest
    assert [(c.id, c.num_turns) for c in store.list_conversations()] == [(3, 2), (2, 2), (1, 3)]
    turn = store.add_turn(1, "bot", "fine")
    assert (turn.parent_id, turn.position) == (3, 3)
    store.close()

    reopened = ConversationStore(f"sqlite:///{path}")  # nothing pending: no second backup
    assert reopened.backup_path is None
    assert len([name for name in os.listdir(tmp_path) if "backup" in name]) == 1
    assert [t.text for t in reopened.turns(1)] == ["hello", "hi there", "how are you", "fine"]


def test_a_newer_schema_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    store.add_turn(store.create_conversation().id, "user", "hello")
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01 00:00:00')")
        raw.commit()
    before = snapshot(path)
    with pytest.raises(StorageError, match=r"schema version 99 .* up to version 3; upgrade chatbot") as error:
        ConversationStore(f"sqlite:///{path}")
    assert "\n" not in str(error.value)
    assert snapshot(path) == before
    assert not [name for name in os.listdir(tmp_path) if "backup" in name]


def test_a_failed_migration_leaves_the_database_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    store.add_turn(store.create_conversation().id, "user", "hello")
    store.close()
    before = snapshot(path)

    def broken(connection):
        connection.exec_driver_sql("ALTER TABLE turns ADD COLUMN note TEXT")
        connection.exec_driver_sql("UPDATE turns SET note = 'x'")
        connection.exec_driver_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(chatbot.storage.database, "MIGRATIONS", [*chatbot.storage.database.MIGRATIONS, (4, "broken", broken)])
    monkeypatch.setattr(chatbot.storage.database, "SCHEMA_VERSION", 4)
    with pytest.raises(StorageError, match="no such table"):
        ConversationStore(f"sqlite:///{path}")
    assert snapshot(path) == before
    [backup] = [name for name in os.listdir(tmp_path) if "backup" in name]
    assert backup.startswith("chat.db.v3-backup-")


def test_a_regenerated_reply_keeps_the_old_one_as_an_alternative(store_url):
    store = ConversationStore(store_url)
    model_id = store.register_model("abc123", "tiny", "/models/tiny", {"model": "hred"})
    conversation = store.create_conversation(model_id)
    user = store.add_turn(conversation.id, "user", "hello")
    first = store.add_turn(conversation.id, "bot", "hi", model_id=model_id, seed=1)
    assert store.alternatives_on_path(conversation.id) == {}

    second = store.add_alternative(first.id, "hey", model_id=model_id, decoding={"top_k": 5}, seed=2, latency_ms=3.5)
    assert (second.parent_id, second.position, second.speaker, second.active) == (user.id, 1, "bot", True)
    assert (second.seed, second.latency_ms, second.decoding) == (2, 3.5, '{"top_k": 5}')
    assert [t.text for t in store.turns(conversation.id)] == ["hello", "hey"]
    assert [(t.id, t.active) for t in store.alternatives(first.id)] == [(first.id, False), (second.id, True)]
    assert [t.id for t in store.alternatives(second.id)] == [first.id, second.id]
    assert [t.id for t in store.alternatives(user.id)] == [user.id]
    assert {k: [t.id for t in v] for k, v in store.alternatives_on_path(conversation.id).items()} == {second.id: [first.id]}
    [summary] = store.list_conversations()
    assert summary.num_turns == 2

    third = store.add_alternative(second.id, "howdy")
    assert [t.id for t in store.alternatives(first.id)] == [first.id, second.id, third.id]
    assert [t.id for t in store.alternatives_on_path(conversation.id)[third.id]] == [first.id, second.id]

    follow_up = store.add_turn(conversation.id, "user", "what now")
    assert (follow_up.parent_id, follow_up.position) == (third.id, 2)
    assert [t.text for t in store.turns(conversation.id)] == ["hello", "howdy", "what now"]
    assert [t.text for t in store.turns(conversation.id, last=2)] == ["howdy", "what now"]
    assert store.list_conversations()[0].num_turns == 3


def test_an_edited_message_drops_the_rest_of_the_path_until_switched_back(store_url):
    store = ConversationStore(store_url)
    conversation = store.create_conversation()
    u1, b1, u2, b2 = (store.add_turn(conversation.id, s, t) for s, t in [("user", "a"), ("bot", "b"), ("user", "c"), ("bot", "d")])

    edited = store.add_alternative(u2.id, "c edited")
    assert [t.text for t in store.turns(conversation.id)] == ["a", "b", "c edited"]
    assert store.list_conversations()[0].num_turns == 3
    b3 = store.add_turn(conversation.id, "bot", "e")
    assert (b3.parent_id, b3.position) == (edited.id, 3)
    assert {k: [t.id for t in v] for k, v in store.alternatives_on_path(conversation.id).items()} == {edited.id: [u2.id]}

    # An alternative of a turn off the active path switches the path back through its ancestors.
    b4 = store.add_alternative(b2.id, "d again")
    assert [t.id for t in store.turns(conversation.id)] == [u1.id, b1.id, u2.id, b4.id]
    assert [t.active for t in store.alternatives(edited.id)] == [True, False]
    assert [t.active for t in store.alternatives(b3.id)] == [False]
    assert {k: [t.id for t in v] for k, v in store.alternatives_on_path(conversation.id).items()} == {
        u2.id: [edited.id],
        b4.id: [b2.id],
    }
    assert store.list_conversations()[0].num_turns == 4

    first = store.add_alternative(u1.id, "a edited")  # the root: siblings have no parent
    assert (first.parent_id, first.position) == (None, 0)
    assert [t.text for t in store.turns(conversation.id)] == ["a edited"]
    assert [t.id for t in store.alternatives(u1.id)] == [u1.id, first.id]
    assert {k: [t.id for t in v] for k, v in store.alternatives_on_path(conversation.id).items()} == {first.id: [u1.id]}


def test_unknown_turn(store_url):
    store = ConversationStore(store_url)
    with pytest.raises(ConversationNotFoundError, match="no turn with id 999"):
        store.add_alternative(999, "text")
    with pytest.raises(ConversationNotFoundError, match="no turn with id 999"):
        store.alternatives(999)


def test_the_active_path_is_read_through_the_index(db_url):
    store = ConversationStore(db_url)
    conversation = store.create_conversation()
    for position in range(6):
        turn = store.add_turn(conversation.id, ("user", "bot")[position % 2], str(position))
    store.add_alternative(turn.id, "again")
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, sql, params, *_: statements.append((sql, params)))
    assert [t.text for t in store.turns(conversation.id, last=2)] == ["4", "again"]
    [(sql, params)] = statements
    with store.engine.connect() as connection:
        plan = " | ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "USING INDEX ix_turns_conversation_active_position" in plan and "TEMP B-TREE" not in plan, plan


# --- PostgreSQL, and every backend -------------------------------------------------------------


def test_export_reads_back_what_was_stored(store_url, tmp_path):
    store = ConversationStore(store_url)
    model_id = store.register_model("abc123", "tiny", "/models/tiny", {"model": "hred"})
    conversation = store.create_conversation(model_id)
    store.add_turn(conversation.id, "user", "héllo, ünïcode ✓ 'quotes' 100% _x_")
    first = store.add_turn(conversation.id, "bot", "hi", model_id=model_id, decoding={"top_p": 0.9}, seed=2**31 - 1, latency_ms=1.25)
    store.add_alternative(first.id, "hey", model_id=model_id, seed=3)
    assert [c.id for c in store.list_conversations(search="100%")] == [conversation.id]
    assert store.list_conversations(search="50%") == []
    assert write_export(store, None, "jsonl", str(tmp_path / "out.jsonl")) == 1
    [record] = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [t["text"] for t in record["turns"]] == ["héllo, ünïcode ✓ 'quotes' 100% _x_", "hey"]
    [turn] = [t for t in store.tree(conversation.id) if t.id == first.id]
    assert (turn.seed, turn.latency_ms, turn.decoding, turn.active) == (2**31 - 1, 1.25, '{"top_p": 0.9}', False)
    assert turn.created_at.tzinfo is None and abs((turn.created_at - store.turns(conversation.id)[0].created_at).total_seconds()) < 60
    assert store.delete_conversation(conversation.id) == 3
    assert store.list_conversations() == []


def append_turns(url: str, conversation: int, writer: int, count: int) -> list[int]:
    """One writer process: register the shared model, then append `count` turns to `conversation`; the ids committed."""
    store = ConversationStore(url)
    store.register_model("shared-model", "tiny", "/models/tiny", {})
    ids = [store.add_turn(conversation, ("user", "bot")[i % 2], f"writer {writer} turn {i}").id for i in range(count)]
    store.close()
    return ids


def test_concurrent_processes_append_to_one_conversation_without_gaps(store_url):
    store = ConversationStore(store_url)
    conversation = store.create_conversation().id
    writers, count = 4, 25
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        committed = pool.starmap(append_turns, [(store_url, conversation, w, count) for w in range(writers)])
    turns = store.turns(conversation)
    assert [t.position for t in turns] == list(range(writers * count))
    assert sorted(t.id for t in turns) == sorted(i for ids in committed for i in ids)
    assert [t.parent_id for t in turns[1:]] == [t.id for t in turns[:-1]]
    for w, ids in enumerate(committed):  # each writer's turns in its own order
        assert [t.text for t in turns if t.id in set(ids)] == [f"writer {w} turn {i}" for i in range(count)]
    assert len(store.models()) == 1


@pytest.mark.parametrize("url", ["postgresql://me:s3cret@/nodb?host=/nonexistent-dir", "postgres://me:s3cret@/nodb?host=/nonexistent-dir"])
def test_postgresql_urls_get_psycopg_and_an_unreachable_server_one_line(url):
    assert open_engine(url).dialect.driver == "psycopg"
    with pytest.raises(StorageError) as error:
        ConversationStore(url)
    message = str(error.value)
    assert message.startswith(url.split(":s3cret")[0] + ":***@/nodb?host=/nonexistent-dir: ")
    assert "cannot connect to the database server" in message and "/nonexistent-dir" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_missing_postgresql_driver_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StorageError, match=r"^postgresql\+psycopg://me:\*\*\*@db\.example/chat: .*pip install -e '\.\[postgres\]' in the chatbot clone$"):
        ConversationStore("postgresql+psycopg://me:s3cret@db.example/chat")


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgresql_v1_database_is_dumped_then_upgraded(store_url, tmp_path, monkeypatch):
    engine = open_engine(store_url)
    with engine.begin() as connection:
        chatbot.storage.database.SCHEMA_MIGRATIONS.create(connection)
        chatbot.storage.database.MIGRATIONS[0][2](connection)
        connection.exec_driver_sql("INSERT INTO schema_migrations VALUES (1, 'initial', '2024-01-01 00:00:00')")
        connection.exec_driver_sql("INSERT INTO conversations (title, created_at) VALUES ('hello', '2024-01-01'), ('x', '2024-01-01')")
        for _, conversation, position, speaker, text in V1_TURNS:
            connection.exec_driver_sql(
                "INSERT INTO turns (conversation_id, position, speaker, text, created_at) VALUES (%s, %s, %s, %s, '2024-01-01')",
                (conversation, position, speaker, text),
            )
    engine.dispose()

    store = ConversationStore(store_url)
    backups = tmp_path / "home" / "backups"
    [backup] = os.listdir(backups)
    assert re.fullmatch(r"chatbot_test_\w+\.v1-backup-\d{8}-\d{6}\.sql", backup) and store.backup_path == backups / backup
    assert stat.S_IMODE(os.stat(backups / backup).st_mode) == 0o600
    dump = (backups / backup).read_text()
    assert "CREATE TABLE public.turns" in dump and "how are you" in dump and "parent_id" not in dump
    assert store.schema_version() == 3 and "upgraded" in store.upgrade_note
    assert [(t.id, t.parent_id, t.position, t.active) for t in store.turns(1)] == [(1, None, 0, True), (2, 1, 1, True), (3, 2, 2, True)]
    assert [(t.parent_id, t.text) for t in store.turns(2)] == [(None, "second chat"), (4, "sure")]
    assert (store.add_turn(1, "bot", "fine").position, store.add_alternative(5, "sure thing").parent_id) == (3, 4)
    store.close()
    assert ConversationStore(store_url).backup_path is None  # nothing pending: no second dump
    assert len(os.listdir(backups)) == 1

    monkeypatch.setattr(chatbot.storage.postgres, "find_tool", lambda name: None)
    monkeypatch.setattr(chatbot.storage.database, "MIGRATIONS", [*chatbot.storage.database.MIGRATIONS, (4, "more", lambda c: None)])
    monkeypatch.setattr(chatbot.storage.database, "SCHEMA_VERSION", 4)
    with pytest.raises(StorageError, match=r"cannot back up the database before upgrading it from schema version 3: pg_dump not found"):
        ConversationStore(store_url)
    monkeypatch.setenv("CHATBOT_PG_BACKUP", "off")
    assert ConversationStore(store_url).schema_version() == 4


def test_every_conversation_with_its_path_reads_consistently_while_a_chat_writes(store_url):
    """`active_paths` (sessions export --all, replay --all) reads conversations and turns in one snapshot:
    a conversation created between two separate reads used to leave turns without their conversation (KeyError)."""
    import threading

    store = ConversationStore(store_url)
    writer = ConversationStore(store_url)
    done = threading.Event()
    written = []

    def chat():
        while not done.is_set():
            conversation = writer.create_conversation().id
            writer.add_turn(conversation, "user", "hello")
            writer.add_turn(conversation, "bot", "hi")
            written.append(conversation)

    thread = threading.Thread(target=chat)
    thread.start()
    try:
        reads = 0
        while len(written) < 60 or reads < 60:
            for conversation, path in store.active_paths():
                assert [t.conversation_id for t in path] == [conversation.id] * len(path)
            reads += 1
    finally:
        done.set()
        thread.join()
    paths = dict((c.id, [t.text for t in p]) for c, p in store.active_paths())
    assert all(paths[c] == ["hello", "hi"] for c in written)
    store.close()
    writer.close()


@pytest.mark.parametrize("url", ["foo", "storage/chatbot.db", ""])
def test_a_database_argument_that_is_not_a_url_is_one_line(url):
    with pytest.raises(StorageError, match=r"is not a database URL; give sqlite:///PATH"):
        ConversationStore(url)


def test_read_only_commands_create_no_database_and_no_folder(tmp_path, monkeypatch, capsys):
    """Issue 27, item 10: listing, showing, exporting or replaying a database that does not exist is one line and
    a nonzero exit, and leaves nothing behind (before, the folders and an empty database were created)."""
    from chatbot.cli.parser import main

    monkeypatch.chdir(tmp_path)
    url = "sqlite:///mistyped/path.db"
    for argv in (["sessions", "list"], ["sessions", "show", "1"], ["sessions", "export", "--all"], ["replay", "1"]):
        assert main([*argv, "--db", url]) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["chatbot: error: mistyped/path.db: no such database; check --db (a chat or `chatbot serve` creates one on its first message)"]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StorageError, match="no such database"):
        open_store(url, create=False)
    assert open_store(url).url == url and (tmp_path / "mistyped" / "path.db").exists()  # a chat's store creates it
