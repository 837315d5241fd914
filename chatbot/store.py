"""ConversationStore: the only code that touches SQL (SQLAlchemy 2 ORM, bound parameters only).

SQLite by default (WAL journal, foreign keys on, file readable by its owner
only); any SQLAlchemy URL works. Schema changes are named, ordered migrations
recorded in the ``schema_migrations`` table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Callable

from sqlalchemy import ForeignKey, Index, String, Text, create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from chatbot.errors import ConversationNotFoundError, StorageError

SPEAKERS = ("user", "bot")
TITLE_LENGTH = 60  # characters of the first user message kept as the conversation title


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelRecord(Base):
    """A trained model a reply came from, identified by the checksum of its files."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    checksum: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    config: Mapped[str] = mapped_column(Text)  # JSON of ModelConfig
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(String(TITLE_LENGTH + 1))
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))


class Turn(Base):
    """One utterance. Bot turns also record the model, decoding settings (JSON), seed and latency."""

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_conversation_position", "conversation_id", "position", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    position: Mapped[int]  # 0-based order within the conversation
    speaker: Mapped[str] = mapped_column(String(8))  # "user" or "bot"
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    decoding: Mapped[str | None] = mapped_column(Text)  # JSON of DecodingConfig
    seed: Mapped[int | None]
    latency_ms: Mapped[float | None]  # wall time to generate the reply, milliseconds


class SchemaMigration(Base):
    __tablename__ = "schema_migrations"
    version: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utc_now)


def _initial(connection: Connection) -> None:
    Base.metadata.create_all(connection, tables=[ModelRecord.__table__, Conversation.__table__, Turn.__table__])


# Ordered, named migrations: (version, name, function). Append, never edit.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [(1, "initial", _initial)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclasses.dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str | None
    created_at: dt.datetime
    num_turns: int
    model_name: str | None


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.query.get("uri") == "true":  # SQLite URI (e.g. ?mode=ro): the file is the caller's to manage
        return None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def _storage_error(exc: Exception, where: str) -> StorageError:
    """Turn a driver error into one line that says what is wrong and how to fix it."""
    message = str(getattr(exc, "orig", exc)).lower()
    if "locked" in message or "busy" in message:
        return StorageError(f"{where}: the database is locked by another process; close other chatbot sessions or retry")
    if "readonly" in message or "read-only" in message:
        return StorageError(f"{where}: the database is read-only; check the file's permissions or pass another --db")
    if "not a database" in message or "malformed" in message:
        return StorageError(f"{where}: not a SQLite database (or corrupt); move it away or pass another --db")
    if "unable to open" in message:
        return StorageError(f"{where}: cannot open the database file; check that its folder exists and is writable")
    return StorageError(f"{where}: database error: {getattr(exc, 'orig', exc)}")


class ConversationStore:
    """All reads and writes of conversations, turns and models.

    Every write commits before returning, so a crash loses at most the reply
    being generated.

    Raises:
        StorageError: the database cannot be opened, is locked, read-only or not a database.
    """

    def __init__(self, url: str):
        self.url = url
        self.where = str(_sqlite_path(url) or make_url(url).render_as_string(hide_password=True))
        path = _sqlite_path(url)
        if path is not None:
            self._create_private_file(path)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", self._sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._guard(self._migrate)

    @staticmethod
    def _create_private_file(path: Path) -> None:
        """Create the database file readable by its owner only (SQLite copies the mode to -wal/-shm)."""
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StorageError(f"{path}: cannot create the database: {exc.strerror}") from exc

    @staticmethod
    def _sqlite_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except Exception:  # a read-only database keeps its journal mode; reading still works
            pass
        cursor.close()

    def _guard(self, operation: Callable, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except sa_exc.SQLAlchemyError as exc:
            raise _storage_error(exc, self.where) from exc

    def _migrate(self) -> None:
        with self.engine.begin() as connection:
            SchemaMigration.__table__.create(connection, checkfirst=True)
            applied = set(connection.execute(select(SchemaMigration.version)).scalars())
        for version, name, migration in MIGRATIONS:
            if version in applied:
                continue
            with self.engine.begin() as connection:
                migration(connection)
                connection.execute(SchemaMigration.__table__.insert().values(version=version, name=name, applied_at=utc_now()))

    def schema_version(self) -> int:
        with self._sessions() as session:
            return self._guard(lambda: session.scalar(select(func.max(SchemaMigration.version))) or 0)

    def close(self) -> None:
        self.engine.dispose()

    # --- writes ---------------------------------------------------------

    def _add(self, record):
        def write():
            with self._sessions() as session, session.begin():
                session.add(record)
            return record

        return self._guard(write)

    def register_model(self, checksum: str, name: str, path: str, config: dict) -> int:
        """Id of the model with this checksum, recording it first if new."""
        with self._sessions() as session:
            existing = self._guard(lambda: session.scalar(select(ModelRecord).where(ModelRecord.checksum == checksum)))
        if existing is not None:
            return existing.id
        return self._add(ModelRecord(checksum=checksum, name=name, path=path, config=json.dumps(config))).id

    def create_conversation(self, model_id: int | None = None) -> Conversation:
        return self._add(Conversation(model_id=model_id, created_at=utc_now()))

    def add_turn(
        self,
        conversation_id: int,
        speaker: str,
        text: str,
        model_id: int | None = None,
        decoding: dict | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
    ) -> Turn:
        """Append a turn at the next position and commit it. The first user turn titles the conversation."""
        if speaker not in SPEAKERS:
            raise ValueError(f"speaker must be one of {SPEAKERS}, got {speaker!r}")

        def write():
            with self._sessions() as session, session.begin():
                conversation = session.get(Conversation, conversation_id)
                if conversation is None:
                    raise ConversationNotFoundError(f"no conversation with id {conversation_id}")
                last = session.scalar(select(func.max(Turn.position)).where(Turn.conversation_id == conversation_id))
                turn = Turn(
                    conversation_id=conversation_id,
                    position=0 if last is None else last + 1,
                    speaker=speaker,
                    text=text,
                    created_at=utc_now(),
                    model_id=model_id,
                    decoding=json.dumps(decoding) if decoding is not None else None,
                    seed=seed,
                    latency_ms=latency_ms,
                )
                session.add(turn)
                if speaker == "user" and conversation.title is None:
                    conversation.title = text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"
            return turn

        return self._guard(write)

    # --- reads ----------------------------------------------------------

    def get_conversation(self, conversation_id: int) -> Conversation:
        """Raises ConversationNotFoundError for an unknown id."""
        with self._sessions() as session:
            conversation = self._guard(session.get, Conversation, conversation_id)
        if conversation is None:
            raise ConversationNotFoundError(
                f"no conversation with id {conversation_id} in {self.where}; `chatbot sessions` lists them"
            )
        return conversation

    def turns(self, conversation_id: int, last: int | None = None) -> list[Turn]:
        """Turns of a conversation in order; with `last`, only the final `last` of them."""
        query = select(Turn).where(Turn.conversation_id == conversation_id).order_by(Turn.position.desc())
        if last is not None:
            query = query.limit(last)
        with self._sessions() as session:
            rows = self._guard(lambda: list(session.scalars(query)))
        return rows[::-1]

    def get_model(self, model_id: int) -> ModelRecord | None:
        with self._sessions() as session:
            return self._guard(session.get, ModelRecord, model_id)

    def list_conversations(self, limit: int = 50) -> list[ConversationSummary]:
        """Most recent first."""
        counts = select(Turn.conversation_id, func.count(Turn.id).label("num_turns")).group_by(Turn.conversation_id).subquery()
        query = (
            select(Conversation, func.coalesce(counts.c.num_turns, 0), ModelRecord.name)
            .outerjoin(counts, counts.c.conversation_id == Conversation.id)
            .outerjoin(ModelRecord, ModelRecord.id == Conversation.model_id)
            .order_by(Conversation.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            rows = self._guard(lambda: session.execute(query).all())
        return [ConversationSummary(c.id, c.title, c.created_at, n, name) for c, n, name in rows]
