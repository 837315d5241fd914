"""Schema migrations of the conversation database: named, ordered, append-only.

Each is a function of a SQLAlchemy Connection that runs inside the store's
write transaction (see `ConversationStore._migrate`). They spell out their
tables rather than reuse the ORM classes, which describe only the latest
schema: a new database goes through the same steps as an upgraded one and
ends identical to it.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Boolean, Column, DateTime, Double, ForeignKey, Index, Integer, MetaData, String, Table, Text, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

TITLE_LENGTH = 60  # characters of the first user message kept as the conversation title


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
        Column("title", String(TITLE_LENGTH + 1)),
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
        spec = CreateColumn(column).compile(dialect=connection.dialect)
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
    Index("ix_turns_conversation_active_position", turns.c.conversation_id, turns.c.active, turns.c.position).create(
        connection
    )


# Ordered, named migrations: (version, name, function). Append, never edit.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [(1, "initial", _initial), (2, "turn_tree", _turn_tree)]
SCHEMA_VERSION = MIGRATIONS[-1][0]
