"""The schema's history: named, ordered, append-only migrations, each a function of a Connection.

`MIGRATIONS` lists them as (version, name, function); `chatbot.storage.database.migrate`
applies the pending ones, each in its own write transaction, and records them in
``schema_migrations``. They spell out their tables rather than reuse the ORM
classes of `chatbot.storage.schema`, which describe only the latest schema: a new
database goes through the same steps as an upgraded one and ends identical.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

from chatbot.storage.schema import path_digest


def _initial(connection: Connection) -> None:
    """Version 1: models, conversations and a flat list of turns (one per position).

    Spelled out rather than taken from the ORM classes, which describe the
    latest schema: a new database then goes through the same steps as an
    upgraded one and ends identical to it.
    """
    metadata = MetaData()
    Table(
        "models",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("checksum", String(64), nullable=False, unique=True),
        Column("name", String(200), nullable=False),
        Column("path", Text, nullable=False),
        Column("config", Text, nullable=False),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "conversations",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("title", String(61)),  # TITLE_LENGTH + 1 when this was written; frozen like the rest
        Column("created_at", DateTime, nullable=False),
        Column("model_id", Integer, ForeignKey("models.id")),
    )
    turns = Table(
        "turns",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("speaker", String(8), nullable=False),
        Column("text", Text, nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("model_id", Integer, ForeignKey("models.id")),
        Column("decoding", Text),
        Column("seed", Integer),
        Column("latency_ms", Double),
    )
    Index("ix_turns_conversation_position", turns.c.conversation_id, turns.c.position, unique=True)
    metadata.create_all(connection)


def _turn_tree(connection: Connection) -> None:
    """Version 2: turns gain ``parent_id`` and ``active``; siblings may share a position.

    Existing turns become a single active path, each pointing to the turn
    before it in its conversation.
    """
    metadata = MetaData()
    turns = Table(
        "turns",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", Integer),
        Column("position", Integer),
        Column("parent_id", Integer, ForeignKey("turns.id")),
        Column("active", Boolean, nullable=False, server_default=true()),
    )
    preparer = connection.dialect.identifier_preparer
    for column in (turns.c.parent_id, turns.c.active):
        spec = str(CreateColumn(column).compile(dialect=connection.dialect))
        if column.foreign_keys:  # SQLite cannot add a table constraint, only an inline REFERENCES clause
            spec = f"{spec} REFERENCES {preparer.quote('turns')} ({preparer.quote('id')})"
        connection.exec_driver_sql(f"ALTER TABLE {preparer.quote('turns')} ADD COLUMN {spec}")
    previous = turns.alias("previous")
    parent = (
        select(previous.c.id)
        .where(previous.c.conversation_id == turns.c.conversation_id, previous.c.position < turns.c.position)
        .order_by(previous.c.position.desc())
        .limit(1)
        .scalar_subquery()
    )
    connection.execute(update(turns).values(parent_id=parent))
    Index("ix_turns_conversation_position", turns.c.conversation_id, turns.c.position).drop(connection)
    Index("ix_turns_conversation_active_position", turns.c.conversation_id, turns.c.active, turns.c.position).create(connection)


def _serving(connection: Connection) -> None:
    """Version 3, for serving over HTTP: conversations gain ``owner`` (the API key's name that made
    them) and ``system_prompt``; turns gain ``path_digest`` (what a Chat Completions request's
    messages are matched against); ``reply_tickets`` orders the replies of one conversation across
    processes; ``idempotency_keys`` keeps the first result of a retried request.

    Existing turns get their digests here, parents before children.
    """
    metadata = MetaData()
    conversations = Table(
        "conversations",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("owner", String(100)),
        Column("system_prompt", Text),
    )
    turns = Table(
        "turns",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", Integer),
        Column("position", Integer),
        Column("speaker", String(8)),
        Column("text", Text),
        Column("path_digest", String(64)),
    )
    preparer = connection.dialect.identifier_preparer
    for table, column in (
        (conversations, conversations.c.owner),
        (conversations, conversations.c.system_prompt),
        (turns, turns.c.path_digest),
    ):
        spec = str(CreateColumn(column).compile(dialect=connection.dialect))
        connection.exec_driver_sql(f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {spec}")
    digests: dict[int, str] = {}
    rows = connection.execute(select(turns.c.id, turns.c.parent_id, turns.c.speaker, turns.c.text).order_by(turns.c.position, turns.c.id))
    for turn_id, parent_id, speaker, text in rows.all():
        digests[turn_id] = path_digest(digests.get(parent_id) if parent_id is not None else None, speaker, text)
    if digests:
        fill = update(turns).where(turns.c.id == bindparam("turn_id")).values(path_digest=bindparam("digest"))
        connection.execute(fill, [{"turn_id": turn_id, "digest": digest} for turn_id, digest in digests.items()])
    Index("ix_turns_path_digest", turns.c.path_digest).create(connection)
    Index("ix_conversations_owner", conversations.c.owner, conversations.c.id).create(connection)
    Table(
        "reply_tickets",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("holder", String(200), nullable=False),
        Column("expires_at", DateTime, nullable=False),
    ).create(connection)
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("owner", String(100), nullable=False),
        Column("key", String(255), nullable=False),
        Column("request_digest", String(64), nullable=False),
        Column("status_code", Integer),
        Column("response", Text),
        Column("created_at", DateTime, nullable=False),
    )
    idempotency.create(connection)
    Index("ix_idempotency_keys_owner_key", idempotency.c.owner, idempotency.c.key, unique=True).create(connection)


# Ordered, named migrations: (version, name, function). Append, never edit.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial", _initial),
    (2, "turn_tree", _turn_tree),
    (3, "serving", _serving),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
