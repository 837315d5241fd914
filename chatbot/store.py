"""ConversationStore: the only code that touches SQL (SQLAlchemy 2 ORM, bound parameters only).

SQLite by default (WAL journal, foreign keys on, file readable by its owner
only); any SQLAlchemy URL works. Schema changes are named, ordered migrations
recorded in the ``schema_migrations`` table; a SQLite file is backed up
beside itself before it is upgraded.

A conversation is a tree of turns: each turn points to the previous one
(``parent_id``), and one root-to-leaf path is active. Regenerating a reply
(or editing a message) adds a sibling that takes over the active path; the
turns it replaces stay stored as alternatives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    create_engine,
    event,
    delete,
    false,
    func,
    select,
    true,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column, sessionmaker

from chatbot.errors import ConversationNotFoundError, StorageError
from chatbot.migrations import MIGRATIONS, SCHEMA_VERSION, TITLE_LENGTH

SPEAKERS = ("user", "bot")


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
    """One utterance. Bot turns also record the model, decoding settings (JSON), seed and latency.

    Turns form a tree per conversation: siblings (same parent, same position)
    are alternatives of each other, and exactly one turn per position of the
    active path has ``active`` set.
    """

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_conversation_active_position", "conversation_id", "active", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id"))  # previous turn on the path; None for the first
    position: Mapped[int]  # depth in the tree, 0-based; siblings share it
    active: Mapped[bool] = mapped_column(default=True, server_default=true())  # on the conversation's active path
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




@dataclasses.dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str | None
    created_at: dt.datetime
    num_turns: int  # turns on the active path
    model_name: str | None
    last_turn_at: dt.datetime | None = None  # when the newest turn was stored


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.query.get("uri") == "true":  # SQLite URI (e.g. ?mode=ro): the file is the caller's to manage
        return None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def _display_name(url: str) -> str:
    """How messages name a database: the file of a SQLite URL (URI form included), else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.database.removeprefix("file:")
    return parsed.render_as_string(hide_password=True)


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


def auto_title(text: str) -> str:
    """The title a conversation gets from its first user message: the message, cut to TITLE_LENGTH characters."""
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally (escape character backslash)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _active_path(conversation_id: int):
    """Active turns of a conversation, last first (an index range scan over (conversation_id, active, position))."""
    return select(Turn).where(Turn.conversation_id == conversation_id, Turn.active == true()).order_by(Turn.position.desc())


def _new_turn(
    parent: Turn | None,
    conversation_id: int,
    speaker: str,
    text: str,
    model_id: int | None,
    decoding: dict | None,
    seed: int | None,
    latency_ms: float | None,
) -> Turn:
    """An active turn following `parent` (or first in the conversation)."""
    return Turn(
        conversation_id=conversation_id,
        parent_id=None if parent is None else parent.id,
        position=0 if parent is None else parent.position + 1,
        active=True,
        speaker=speaker,
        text=text,
        created_at=utc_now(),
        model_id=model_id,
        decoding=json.dumps(decoding) if decoding is not None else None,
        seed=seed,
        latency_ms=latency_ms,
    )


def _locked_turn(session: Session, turn_id: int) -> Turn:
    """Turn `turn_id`, with its conversation locked for writing (one writer per conversation).

    Raises:
        ConversationNotFoundError: no turn with id `turn_id`.
    """
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise ConversationNotFoundError(f"no turn with id {turn_id}")
    session.get(Conversation, turn.conversation_id, with_for_update=True)
    return turn


def _activate_path(session: Session, turn: Turn) -> None:
    """Make the path through `turn` the active one: up to the first turn, and down through the
    newest child of each turn to a leaf. Only the turns that change are touched: the inactive
    ancestors up to where the path joins the active one, and the active turns below that point.
    """
    inactive_ancestors, fork_position = [], -1
    parent_id = turn.parent_id
    while parent_id is not None:
        ancestor = session.get(Turn, parent_id)
        if ancestor.active:
            fork_position = ancestor.position
            break
        inactive_ancestors.append(ancestor)
        parent_id = ancestor.parent_id
    descendants, current = [], turn
    while True:
        child = session.scalar(
            select(Turn)
            .where(Turn.conversation_id == turn.conversation_id, Turn.parent_id == current.id)
            .order_by(Turn.id.desc())
            .limit(1)
        )
        if child is None:
            break
        descendants.append(child)
        current = child
    session.execute(
        update(Turn)
        .where(Turn.conversation_id == turn.conversation_id, Turn.active == true(), Turn.position > fork_position)
        .values(active=False)
    )
    for on_path in [*inactive_ancestors, turn, *descendants]:
        on_path.active = True


class ConversationStore:
    """All reads and writes of conversations, turns and models.

    Every write commits before returning, in one transaction, so a crash
    loses at most the reply being generated.

    Attributes:
        backup_path: where the database was copied before this store upgraded its schema; None if it was not.

    Raises:
        StorageError: the database cannot be opened, is locked, read-only or not a database, its
            schema is newer than this code's SCHEMA_VERSION, or it cannot be backed up before an upgrade.
    """

    def __init__(self, url: str):
        self.url = url
        self.where = _display_name(url)
        self.backup_path: Path | None = None
        path = _sqlite_path(url)
        if path is not None:
            self._create_private_file(path)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", self._sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._guard(self._migrate, path)
        except BaseException:
            self.engine.dispose()
            raise

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

    def _lock(self, connection: Connection) -> None:
        """Start the transaction as a writer.

        Python's sqlite3 only opens a transaction before INSERT/UPDATE/DELETE,
        so without this DDL would autocommit statement by statement, and a
        read followed by a write could interleave with another writer.
        """
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Session]:
        """A session in one write transaction, committed on leaving the block, rolled back on an error."""
        with self._sessions() as session, session.begin():
            self._lock(session.connection())
            yield session

    def _migrate(self, path: Path | None) -> None:
        """Apply the pending migrations, each in its own transaction, after backing up a SQLite file."""
        with self.engine.begin() as connection:
            self._lock(connection)
            SchemaMigration.__table__.create(connection, checkfirst=True)
            applied = set(connection.execute(select(SchemaMigration.version)).scalars())
        current = max(applied, default=0)
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"{self.where}: the database has schema version {current} but this chatbot reads up to "
                f"version {SCHEMA_VERSION}; upgrade chatbot to open it"
            )
        pending = [migration for migration in MIGRATIONS if migration[0] not in applied]
        if pending and applied and path is not None:
            self.backup_path = self._backup(path, current)
        for version, name, migration in pending:
            with self.engine.begin() as connection:
                self._lock(connection)
                done = connection.scalar(select(SchemaMigration.version).where(SchemaMigration.version == version))
                if done is not None:  # another process applied it since we looked
                    continue
                migration(connection)
                connection.execute(SchemaMigration.__table__.insert().values(version=version, name=name, applied_at=utc_now()))

    def _backup(self, path: Path, version: int) -> Path:
        """Copy the database (WAL content included) to `<name>.v<version>-backup-<YYYYmmdd-HHMMSS>`, mode 0o600.

        Raises:
            StorageError: the copy cannot be written; the database is left as it was.
        """
        stem = f"{path.name}.v{version}-backup-{dt.datetime.now():%Y%m%d-%H%M%S}"
        for attempt in itertools.count():
            backup = path.with_name(stem if attempt == 0 else f"{stem}-{attempt}")
            try:
                os.close(os.open(backup, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError(f"{path}: cannot back up the database before upgrading it: {exc.strerror}") from exc
        raw = self.engine.raw_connection()
        try:
            target = sqlite3.connect(backup)
            try:
                raw.driver_connection.backup(target)  # the online backup API: a consistent copy, WAL included
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                target.close()
        except sqlite3.Error as exc:
            backup.unlink(missing_ok=True)
            raise StorageError(f"{path}: cannot back up the database to {backup} before upgrading it: {exc}") from exc
        finally:
            raw.close()
        return backup

    def schema_version(self) -> int:
        with self._sessions() as session:
            return self._guard(lambda: session.scalar(select(func.max(SchemaMigration.version))) or 0)

    def close(self) -> None:
        self.engine.dispose()

    # --- writes ---------------------------------------------------------

    def _add(self, record):
        def write():
            with self._writing() as session:
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
        """Append a turn to the end of the active path and commit it. The first user turn titles the conversation.

        Args:
            speaker: "user" or "bot".
            model_id, decoding, seed, latency_ms: for bot turns, what produced the reply (latency in milliseconds).

        Raises:
            ValueError: `speaker` is not one of SPEAKERS.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        if speaker not in SPEAKERS:
            raise ValueError(f"speaker must be one of {SPEAKERS}, got {speaker!r}")

        def write():
            with self._writing() as session:
                conversation = session.get(Conversation, conversation_id, with_for_update=True)
                if conversation is None:
                    raise ConversationNotFoundError(f"no conversation with id {conversation_id}")
                parent = session.scalar(_active_path(conversation_id).limit(1))
                turn = _new_turn(parent, conversation_id, speaker, text, model_id, decoding, seed, latency_ms)
                session.add(turn)
                if speaker == "user" and conversation.title is None:
                    conversation.title = auto_title(text)
            return turn

        return self._guard(write)

    def add_alternative(
        self,
        turn_id: int,
        text: str,
        model_id: int | None = None,
        decoding: dict | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
    ) -> Turn:
        """Add a sibling of turn `turn_id` (same conversation, parent, position, speaker) and make it active.

        `turn_id` and the active turns after it become inactive; they stay
        stored and `alternatives` still lists them. If `turn_id` is itself off
        the active path, the path is switched to run through the new turn.
        Editing the first user message retitles the conversation unless it was renamed.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
            StorageError: the database cannot be written.
        """

        def write():
            with self._writing() as session:
                original = _locked_turn(session, turn_id)
                conversation = session.get(Conversation, original.conversation_id)
                if original.position == 0 and original.speaker == "user" and conversation.title == auto_title(original.text):
                    conversation.title = auto_title(text)
                parent = session.get(Turn, original.parent_id) if original.parent_id is not None else None
                turn = _new_turn(parent, original.conversation_id, original.speaker, text, model_id, decoding, seed, latency_ms)
                session.add(turn)
                session.flush()  # gives the turn its id
                _activate_path(session, turn)
            return turn

        return self._guard(write)

    def activate(self, turn_id: int) -> list[Turn]:
        """Make the path through turn `turn_id` the active one and return it.

        The path runs from the first turn down to `turn_id`, then on through the
        newest child of each turn to a leaf: switching to a leaf selects exactly
        that branch. Nothing is deleted.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
            StorageError: the database cannot be written.
        """

        def write():
            with self._writing() as session:
                target = _locked_turn(session, turn_id)
                _activate_path(session, target)
            return target.conversation_id

        return self.turns(self._guard(write))

    def rename_conversation(self, conversation_id: int, title: str) -> Conversation:
        """Set a conversation's title (whitespace collapsed, cut to TITLE_LENGTH characters).

        Raises:
            ValueError: the title is empty.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        title = " ".join(title.split())
        if not title:
            raise ValueError("a title needs some text")

        def write():
            with self._writing() as session:
                conversation = session.get(Conversation, conversation_id, with_for_update=True)
                if conversation is None:
                    raise self._not_found(conversation_id)
                conversation.title = auto_title(title)
            return conversation

        return self._guard(write)

    def delete_conversation(self, conversation_id: int) -> int:
        """Delete a conversation and every turn of it (all branches); returns the number of turns deleted.

        Raises:
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """

        def write():
            with self._writing() as session:
                conversation = session.get(Conversation, conversation_id, with_for_update=True)
                if conversation is None:
                    raise self._not_found(conversation_id)
                deleted = session.execute(delete(Turn).where(Turn.conversation_id == conversation_id)).rowcount
                session.delete(conversation)
            return deleted

        return self._guard(write)

    # --- reads ----------------------------------------------------------

    def get_conversation(self, conversation_id: int) -> Conversation:
        """Raises ConversationNotFoundError for an unknown id."""
        with self._sessions() as session:
            conversation = self._guard(session.get, Conversation, conversation_id)
        if conversation is None:
            raise self._not_found(conversation_id)
        return conversation

    def _not_found(self, conversation_id: int) -> ConversationNotFoundError:
        return ConversationNotFoundError(
            f"no conversation with id {conversation_id} in {self.where} (never created, or deleted); "
            "`chatbot sessions list` shows the stored ones"
        )

    def tree(self, conversation_id: int) -> list[Turn]:
        """Every turn of a conversation, all branches, by position then age (parents before children)."""
        query = select(Turn).where(Turn.conversation_id == conversation_id).order_by(Turn.position, Turn.id)
        with self._sessions() as session:
            return self._guard(lambda: list(session.scalars(query)))

    def conversations(self, conversation_ids: list[int] | None = None) -> list[Conversation]:
        """The given conversations, or all of them, oldest first (no turns are read).

        Raises:
            ConversationNotFoundError: one of `conversation_ids` is unknown.
        """
        query = select(Conversation).order_by(Conversation.id)
        if conversation_ids is not None:
            query = query.where(Conversation.id.in_(conversation_ids))
        with self._sessions() as session:
            conversations = self._guard(lambda: list(session.scalars(query)))
        missing = sorted(set(conversation_ids or ()) - {c.id for c in conversations})
        if missing:
            raise self._not_found(missing[0])
        return conversations

    def active_paths(self, conversation_ids: list[int] | None = None) -> Iterator[tuple[Conversation, list[Turn]]]:
        """(conversation, its active path) for the given conversations, or all of them, oldest first.

        Raises:
            ConversationNotFoundError: one of `conversation_ids` is unknown (checked before anything is yielded).
        """
        conversations = self.conversations(conversation_ids)
        with self._sessions() as session:
            turns = select(Turn).where(Turn.active == true()).order_by(Turn.conversation_id, Turn.position)
            if conversation_ids is not None:
                turns = turns.where(Turn.conversation_id.in_(conversation_ids))
            paths: dict[int, list[Turn]] = {c.id: [] for c in conversations}
            for turn in self._guard(lambda: list(session.scalars(turns))):
                paths[turn.conversation_id].append(turn)
        for conversation in conversations:
            yield conversation, paths[conversation.id]

    def models(self) -> dict[int, ModelRecord]:
        """Every registered model by id."""
        with self._sessions() as session:
            return self._guard(lambda: {m.id: m for m in session.scalars(select(ModelRecord))})

    def turns(self, conversation_id: int, last: int | None = None) -> list[Turn]:
        """The active path of a conversation in order; with `last`, only its final `last` turns."""
        query = _active_path(conversation_id)
        if last is not None:
            query = query.limit(last)
        with self._sessions() as session:
            rows = self._guard(lambda: list(session.scalars(query)))
        return rows[::-1]

    def alternatives(self, turn_id: int) -> list[Turn]:
        """Turn `turn_id` and its siblings (same parent and position), oldest first.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
        """
        with self._sessions() as session:
            turn = self._guard(session.get, Turn, turn_id)
            if turn is None:
                raise ConversationNotFoundError(f"no turn with id {turn_id}")
            query = (
                select(Turn)
                .where(
                    Turn.conversation_id == turn.conversation_id,
                    Turn.position == turn.position,
                    Turn.parent_id.is_not_distinct_from(turn.parent_id),
                )
                .order_by(Turn.id)
            )
            return self._guard(lambda: list(session.scalars(query)))

    def alternatives_on_path(self, conversation_id: int) -> dict[int, list[Turn]]:
        """For each active turn that has siblings, its (inactive) siblings oldest first, keyed by the active turn's id.

        Active turns without alternatives are left out; keys follow the path's order.
        """
        on_path = aliased(Turn)
        query = (
            select(on_path.id, Turn)
            .join(
                Turn,
                (Turn.conversation_id == on_path.conversation_id)
                & (Turn.position == on_path.position)
                & Turn.parent_id.is_not_distinct_from(on_path.parent_id)
                & (Turn.active == false()),  # a sibling of an active turn is inactive: lets the index cover the join
            )
            .where(on_path.conversation_id == conversation_id, on_path.active == true())
            .order_by(on_path.position, Turn.id)
        )
        with self._sessions() as session:
            rows = self._guard(lambda: session.execute(query).all())
        siblings: dict[int, list[Turn]] = {}
        for active_id, sibling in rows:
            siblings.setdefault(active_id, []).append(sibling)
        return siblings

    def get_model(self, model_id: int) -> ModelRecord | None:
        with self._sessions() as session:
            return self._guard(session.get, ModelRecord, model_id)

    def list_conversations(self, limit: int | None = 50, search: str | None = None) -> list[ConversationSummary]:
        """Most recent first; `num_turns` counts the active path.

        Args:
            limit: at most this many (None: all).
            search: keep conversations whose title or any turn (any branch) contains this text, ignoring case.

        The counts are per listed conversation through the (conversation_id, active,
        position) index, so the cost follows `limit`, not the number of turns stored.
        """
        active = Turn.active == true()
        num_turns = select(func.count(Turn.id)).where(Turn.conversation_id == Conversation.id, active).scalar_subquery()
        last_turn_at = select(func.max(Turn.created_at)).where(Turn.conversation_id == Conversation.id).scalar_subquery()
        query = (
            select(Conversation, num_turns, ModelRecord.name, last_turn_at)
            .outerjoin(ModelRecord, ModelRecord.id == Conversation.model_id)
            .order_by(Conversation.id.desc())
            .limit(limit)
        )
        if search:
            pattern = _like_pattern(search)
            mentions = select(Turn.id).where(Turn.conversation_id == Conversation.id, Turn.text.ilike(pattern, escape="\\"))
            query = query.where(Conversation.title.ilike(pattern, escape="\\") | mentions.exists())
        with self._sessions() as session:
            rows = self._guard(lambda: session.execute(query).all())
        return [ConversationSummary(c.id, c.title, c.created_at, n, name, last) for c, n, name, last in rows]


def decoding_of(turn: Turn) -> dict:
    """The settings stored with a bot turn (JSON of DecodingConfig plus chosen, context_turns, decoder_version); {} for none."""
    return json.loads(turn.decoding) if turn.decoding else {}


def open_store(url: str | None = None) -> ConversationStore:
    """The store at `url` (default: storage/chatbot.db); says on stderr when its schema was upgraded.

    Raises:
        StorageError: as ConversationStore.
    """
    import sys

    from chatbot.paths import default_database_url

    store = ConversationStore(url or default_database_url())
    if store.backup_path is not None:
        print(f"upgraded {store.where} to schema version {SCHEMA_VERSION}; the previous file is kept as {store.backup_path}", file=sys.stderr)
    return store
