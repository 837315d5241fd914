"""ConversationStore: every read and write of conversations, turns and models (SQLAlchemy 2, bound parameters only).

Each public method runs in one transaction (`_transaction`): a write commits
before the method returns, so a crash loses at most the reply being
generated, and any SQLAlchemy error leaves as one `StorageError` line. The
tables are in `chatbot.storage.schema`; opening and migrating the database in
`chatbot.storage.database`. Nothing here prints.

Concurrent writers of one conversation (several chats, several processes, one
database) take turns on a row lock: a write that depends on the conversation's
turns (`add_turn`, `add_alternative`, `activate`, rename, delete) first locks
the conversation's row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite
``BEGIN IMMEDIATE`` already excludes every other writer), then reads the last
active turn and appends after it, so appends get positions 0..n-1 in commit
order, none lost or doubled. A unique (conversation, position) constraint with
a retry cannot do it: alternatives share their position.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

from sqlalchemy import delete, func, select, true
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from chatbot.errors import ConversationNotFoundError, StorageError
from chatbot.storage.branches import TurnTree, on_tree
from chatbot.storage.database import (
    begin_writing,
    check_writable,
    display_name,
    migrate,
    open_engine,
    sqlite_path,
    storage_errors,
)
from chatbot.storage.idempotency import IdempotencyKeys
from chatbot.storage.schema import (
    Conversation,
    ConversationSummary,
    ModelRecord,
    SchemaMigration,
    Turn,
    auto_title,
    utc_now,
)
from chatbot.storage.tickets import ReplyTickets
from chatbot.storage.turns import append_turn

T = TypeVar("T")


class _Writers:
    """The turn of one writer at a time to a SQLite file, in this process (a lock) and among processes (an
    exclusive `flock` on ``<file>-writer``, owner-only): a blocked writer is woken when the lock is free,
    where SQLite's own busy handler sleeps and retries and, under many writers, starves some for seconds."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._path = Path(f"{path}-writer")
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:  # a read-only folder: SQLite's busy handler alone, as before
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


_WRITERS: dict[str, _Writers] = {}
_WRITERS_LOCK = threading.Lock()


def _sqlite_writers(path: Path) -> _Writers:
    """The writers' turn for the SQLite file `path` (one per file in a process, shared by its stores)."""
    key = os.path.realpath(path)
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, _Writers(Path(key)))


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally (escape character backslash)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _retry_lost_race(operation: Callable[[], T]) -> T:
    """`operation()`, run once more if it broke a unique key: on PostgreSQL writers of different rows do not
    exclude each other, so two processes may insert the same new model at once; the second run reads the winner's row."""
    try:
        return operation()
    except StorageError as exc:
        if not isinstance(exc.__cause__, sa_exc.IntegrityError):
            raise
        return operation()


class ConversationStore:
    """All reads and writes of conversations, turns and models.

    Every write commits before returning, in one transaction, so a crash
    loses at most the reply being generated.

    Args:
        url: a SQLAlchemy URL (`chatbot.paths.default_database_url()` by default in the CLI).

    Attributes:
        where: how messages name the database (its file, or the URL without password).
        backup_path: where the database was copied before this store upgraded its schema; None if it was not.
        turn_tree, tickets, idempotency: the turn tree (`TurnTree`, its operations also the store's), reply queue, idempotency keys.

    Raises:
        StorageError: the database cannot be opened, is locked, read-only or not a database, its
            schema is newer than this code's SCHEMA_VERSION, or it cannot be backed up before an upgrade.
    """

    def __init__(self, url: str):
        self.url = url
        try:
            self.where = display_name(url)
        except sa_exc.ArgumentError:
            raise StorageError(
                f"{url!r} is not a database URL; give sqlite:///PATH for a file (sqlite:////abs/path) or postgresql://USER@HOST/NAME"
            ) from None
        self._path = sqlite_path(url)
        self.engine = open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self.backup_path: Path | None = migrate(self.engine, self.where, self._path)
        except BaseException:
            self.engine.dispose()
            raise
        # SQLite lets one writer in at a time, and a writer that finds it taken sleeps and retries (busy
        # timeout), which under many threads starves some for seconds; this process's writers queue here instead.
        self._writers = _sqlite_writers(self._path) if self._path is not None else contextlib.nullcontext()
        self.tickets = ReplyTickets(self._transaction, self._not_found)
        self.idempotency = IdempotencyKeys(self._transaction)
        self.turn_tree = TurnTree(self._transaction, self.get_conversation, self.models, self._not_found)

    @contextlib.contextmanager
    def _transaction(self, write: bool = False, snapshot: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on leaving the block and rolled back on an error;
        with `write`, begun as a writer (`begin_writing`); with `snapshot`, every read in it sees the
        database as of its first (PostgreSQL: REPEATABLE READ; SQLite's WAL readers always do).
        SQLAlchemy errors leave as `StorageError`."""
        if write and self._path is not None and not self._path.exists():
            raise StorageError(
                f"{self.where}: the database file was deleted or moved while it was open; put it back, or restart "
                "to start a new one (what was written since it went is not in any file)"
            )
        writers = self._writers if write else contextlib.nullcontext()
        with writers, storage_errors(self.where), self._sessions() as session, session.begin():
            if write:
                begin_writing(session.connection())
            elif snapshot and self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @property
    def upgrade_note(self) -> str | None:
        """One line for the person when opening upgraded the schema (the caller shows it); None otherwise."""
        if self.backup_path is None:
            return None
        return f"upgraded {self.where} to schema version {self.schema_version()}; the previous file is kept as {self.backup_path}"

    def check_writable(self) -> None:
        """Raise StorageError now if a write would fail (read-only, locked, corrupt): `database.check_writable`."""
        check_writable(self.engine, self.where)

    def schema_version(self) -> int:
        with self._transaction() as session:
            return session.scalar(select(func.max(SchemaMigration.version))) or 0

    def close(self) -> None:
        self.engine.dispose()

    # --- writes ---------------------------------------------------------

    def register_model(self, checksum: str, name: str, path: str, config: dict) -> int:
        """Id of the model with this checksum, recording it first if new (`_retry_lost_race`: two processes at once)."""
        return _retry_lost_race(lambda: self._register_model(checksum, name, path, config))

    def _register_model(self, checksum: str, name: str, path: str, config: dict) -> int:
        with self._transaction(write=True) as session:
            record = session.scalar(select(ModelRecord).where(ModelRecord.checksum == checksum))
            if record is None:
                record = ModelRecord(checksum=checksum, name=name, path=path, config=json.dumps(config))
                session.add(record)
        return record.id

    def create_conversation(self, model_id: int | None = None, owner: str | None = None, system_prompt: str | None = None) -> Conversation:
        """A new, empty conversation.

        Args:
            owner: the API key's name that may see it over HTTP (None: made in a terminal or by a server without keys).
            system_prompt: a Chat Completions ``system`` message, stored and shown, never fed to the model.
        """
        with self._transaction(write=True) as session:
            conversation = Conversation(model_id=model_id, created_at=utc_now(), owner=owner, system_prompt=system_prompt)
            session.add(conversation)
        return conversation

    def add_turn(
        self,
        conversation_id: int,
        speaker: str,
        text: str,
        model_id: int | None = None,
        decoding: dict | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
        after: int | None = None,
    ) -> Turn:
        """Append a turn after the last active one under the conversation's row lock (see above); the first user turn titles it.

        Args:
            speaker: "user" or "bot".
            model_id, decoding, seed, latency_ms: for bot turns, what produced the reply (latency in milliseconds).
            after: the id of the turn that must still be last (what the reply answered); None: no check.

        Raises:
            ValueError: `speaker` is not one of SPEAKERS.
            ConversationNotFoundError: unknown conversation.
            ConversationChangedError: `after` is no longer the last turn (another chat wrote meanwhile).
            StorageError: the database cannot be written.
        """
        with self._transaction(write=True) as session:
            return append_turn(session, conversation_id, speaker, text, model_id, decoding, seed, latency_ms, after, self._not_found)

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
        with self._transaction(write=True) as session:
            conversation = session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                raise self._not_found(conversation_id)
            conversation.title = auto_title(title)
        return conversation

    def delete_conversation(self, conversation_id: int) -> int:
        """Delete a conversation and every turn of it (all branches); returns the number of turns deleted.

        Raises:
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        with self._transaction(write=True) as session:
            conversation = session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                raise self._not_found(conversation_id)
            deleted = cast(CursorResult, session.execute(delete(Turn).where(Turn.conversation_id == conversation_id))).rowcount
            session.delete(conversation)
        return deleted

    # --- the turn tree: alternatives, the active path, branches (`TurnTree`, run on `self.turn_tree`) ---
    add_alternative = on_tree(TurnTree.add_alternative)
    add_child = on_tree(TurnTree.add_child)
    activate = on_tree(TurnTree.activate)
    turns = on_tree(TurnTree.turns)
    branches = on_tree(TurnTree.branches)
    transcript = on_tree(TurnTree.transcript)
    path = on_tree(TurnTree.path)
    get_turn = on_tree(TurnTree.get_turn)
    active_paths = on_tree(TurnTree.active_paths)
    find_path = on_tree(TurnTree.find_path)
    children = on_tree(TurnTree.children)
    tree = on_tree(TurnTree.tree)
    alternatives = on_tree(TurnTree.alternatives)
    alternatives_on_path = on_tree(TurnTree.alternatives_on_path)

    # --- reads ----------------------------------------------------------

    def get_conversation(self, conversation_id: int) -> Conversation:
        """Raises ConversationNotFoundError for an unknown id."""
        with self._transaction() as session:
            conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            raise self._not_found(conversation_id)
        return conversation

    def _not_found(self, conversation_id: int) -> ConversationNotFoundError:
        return ConversationNotFoundError(
            f"no conversation with id {conversation_id} in {self.where} (never created, or deleted); "
            "`chatbot sessions list` shows the stored ones"
        )

    def conversations(self, conversation_ids: list[int] | None = None) -> list[Conversation]:
        """The given conversations, or all of them, oldest first (no turns are read).

        Raises:
            ConversationNotFoundError: one of `conversation_ids` is unknown.
        """
        query = select(Conversation).order_by(Conversation.id)
        if conversation_ids is not None:
            query = query.where(Conversation.id.in_(conversation_ids))
        with self._transaction() as session:
            conversations = list(session.scalars(query))
        missing = sorted(set(conversation_ids or ()) - {c.id for c in conversations})
        if missing:
            raise self._not_found(missing[0])
        return conversations

    def models(self) -> dict[int, ModelRecord]:
        """Every registered model by id."""
        with self._transaction() as session:
            return {m.id: m for m in session.scalars(select(ModelRecord))}

    def list_conversations(
        self, limit: int | None = 50, search: str | None = None, owner: str | None = None, before: int | None = None
    ) -> list[ConversationSummary]:
        """Most recent first; `num_turns` counts the active path.

        Args:
            limit: at most this many (None: all).
            search: keep conversations whose title or any turn (any branch) contains this text, ignoring case.
            owner: only the conversations of this API key's name (None: every conversation).
            before: only conversations with a smaller id (the next page after the one ending there).

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
        if owner is not None:
            query = query.where(Conversation.owner == owner)
        if before is not None:
            query = query.where(Conversation.id < before)
        if search:
            pattern = _like_pattern(search)
            mentions = select(Turn.id).where(Turn.conversation_id == Conversation.id, Turn.text.ilike(pattern, escape="\\"))
            query = query.where(Conversation.title.ilike(pattern, escape="\\") | mentions.exists())
        with self._transaction() as session:
            rows = session.execute(query).all()
        return [ConversationSummary(c.id, c.title, c.created_at, n, name, last, c.owner) for c, n, name, last in rows]


def open_store(url: str | None = None, *, create: bool = True) -> ConversationStore:
    """The store at `url` (default: `chatbot.paths.default_database_url()`, storage/chatbot.db).

    Whether its schema was upgraded on opening is in `backup_path`; telling the person is the caller's job.

    Args:
        create: make a SQLite file (and its folder) that does not exist yet; False for commands that
            only read, which then create nothing.
    Raises:
        StorageError: as ConversationStore; without `create`, a SQLite file that does not exist.
    """
    from chatbot.paths import default_database_url

    url = url or default_database_url()
    if not create:
        try:
            path = sqlite_path(url)
        except sa_exc.ArgumentError:
            path = None  # ConversationStore says what is wrong with the URL
        if path is not None and not path.exists():
            raise StorageError(f"{path}: no such database; check --db (a chat or `chatbot serve` creates one on its first message)")
    return ConversationStore(url)
