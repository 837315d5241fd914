"""The database's lifecycle: open it (owner-only file, pragmas), back it up, migrate it.

Schema changes are the named, ordered migrations of `chatbot.storage.migrations`,
recorded in the ``schema_migrations`` table and applied by `migrate`, each in
its own write transaction; a SQLite file is first backed up beside itself, a
PostgreSQL database with ``pg_dump`` (`chatbot.storage.postgres.dump`).

SQLite is the default (WAL journal, foreign keys on, busy timeout 5 s);
PostgreSQL goes through psycopg 3 (`chatbot.storage.postgres`); any other
SQLAlchemy URL is passed through as it is. Driver errors become one-line `StorageError`s that say
what is wrong and how to fix it (`storage_errors`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import (
    create_engine,
    event,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from chatbot.errors import StorageError
from chatbot.paths import new_private_file
from chatbot.storage import postgres
from chatbot.storage.migrations import MIGRATIONS, SCHEMA_VERSION
from chatbot.storage.schema import SchemaMigration, utc_now

# --- opening ----------------------------------------------------------------

SCHEMA_MIGRATIONS = SchemaMigration.metadata.tables["schema_migrations"]  # the Table behind SchemaMigration


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL that this code creates and backs up; None for other databases,
    in-memory ones and SQLite URIs (e.g. ``?mode=ro``, whose file is the caller's to manage)."""
    parsed = make_url(url)
    if parsed.query.get("uri") == "true":
        return None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def display_name(url: str) -> str:
    """How messages name a database: the file of a SQLite URL (URI form included), else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.database.removeprefix("file:")
    return urllib.parse.unquote(parsed.render_as_string(hide_password=True))  # ?host=/run/postgresql, not %2F


def storage_error(exc: Exception, where: str) -> StorageError:
    """Turn a driver error into one line that says what is wrong and how to fix it."""
    original = str(getattr(exc, "orig", exc))
    message = original.lower()
    unreachable = postgres.connection_error(original, where) if isinstance(exc, sa_exc.OperationalError) else None
    if unreachable is not None:
        return unreachable
    if "disk is full" in message:
        return StorageError(
            f"{where}: the disk is full (or the database reached its size limit); free some space and send the "
            "message again (the up arrow brings it back)"
        )
    if "deadlock" in message:
        return StorageError(
            f"{where}: two writers waited for each other (a deadlock) and this one was stopped; nothing was stored, try again"
        )
    if "locked" in message or "busy" in message:
        return StorageError(f"{where}: the database is locked by another process; close other chatbot sessions or retry")
    if "readonly" in message or "read-only" in message:
        return StorageError(f"{where}: the database is read-only; check the file's permissions or pass another --db")
    if "not a database" in message or "malformed" in message:
        return StorageError(f"{where}: not a SQLite database (or corrupt); move it away or pass another --db")
    if "unable to open" in message:
        return StorageError(f"{where}: cannot open the database file; check that its folder exists and is writable")
    return StorageError(f"{where}: database error: {' '.join(original.split())}")


@contextlib.contextmanager
def storage_errors(where: str) -> Iterator[None]:
    """Raise SQLAlchemy errors from the block as `StorageError`s naming the database `where`."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise storage_error(exc, where) from exc


def create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite copies the mode to -wal/-shm).

    Raises:
        StorageError: the file or its folder cannot be created.
    """
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the database: {exc.strerror}") from exc


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except Exception:  # noqa: BLE001 - a read-only database keeps its journal mode; reading still works
        pass
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file is created owner-only first and every connection gets the pragmas.
    A PostgreSQL URL without a driver (``postgresql://``) gets psycopg 3, and its sessions run in UTC.

    Raises:
        StorageError: the SQLite file cannot be created, or the URL's driver is not installed.
    """
    path = sqlite_path(url)
    if path is not None:
        create_private_file(path)
    parsed = postgres.engine_url(make_url(url))
    is_postgres = parsed.get_backend_name() == "postgresql"
    try:
        engine = create_engine(parsed, connect_args=postgres.connect_args(parsed) if is_postgres else {})
    except ImportError as exc:
        if is_postgres:
            raise postgres.missing_driver(display_name(url)) from exc
        raise StorageError(f"{display_name(url)}: its database driver is not installed ({exc})") from exc
    except sa_exc.NoSuchModuleError as exc:
        raise StorageError(f"{display_name(url)}: unknown kind of database ({exc}); use sqlite:///FILE or postgresql://…") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def begin_writing(connection: Connection) -> None:
    """Start the transaction as a writer.

    Python's sqlite3 only opens a transaction before INSERT/UPDATE/DELETE,
    so without this DDL would autocommit statement by statement, and a
    read followed by a write could interleave with another writer.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def begin_migrating(connection: Connection) -> None:
    """Start the transaction as the one process migrating: on SQLite `begin_writing` already excludes every
    other writer; on PostgreSQL an advisory lock does, for other migrations only (DDL is transactional there)."""
    begin_writing(connection)
    if connection.dialect.name == "postgresql":
        postgres.lock_migrations(connection)


def check_writable(engine: Engine, where: str) -> None:
    """Fail now, with one line, if the database cannot take a write: it is read-only, locked by
    another process beyond the busy timeout, or (SQLite) fails `PRAGMA quick_check`. Nothing is changed.

    Raises:
        StorageError: naming the database and the fix.
    """
    with storage_errors(where), engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            verdict = connection.exec_driver_sql("PRAGMA quick_check").scalar()
            connection.rollback()  # end the read the pragma began
            if verdict != "ok":
                raise StorageError(
                    f"{where}: the database fails its integrity check ({verdict}); move it away (or restore a "
                    "*-backup-* copy beside it) and start again, or pass another --db"
                )
        transaction = connection.begin()
        try:
            begin_writing(connection)
            connection.execute(SCHEMA_MIGRATIONS.insert().values(version=-1, name="write check", applied_at=utc_now()))
        finally:
            transaction.rollback()


# --- migrating --------------------------------------------------------------


def migrate(engine: Engine, where: str, path: Path | None) -> Path | None:
    """Apply the pending migrations, each in its own write transaction, after backing up the SQLite file `path`
    (or, on PostgreSQL, dumping the database with `postgres.dump`).

    Args:
        where: how messages name the database (`display_name`).
        path: the SQLite file to back up before an upgrade (None: no backup, unless the database is PostgreSQL).
    Returns:
        the backup's path, or None when nothing was upgraded (or there is no file, or CHATBOT_PG_BACKUP=off).
    Raises:
        StorageError: the schema is newer than SCHEMA_VERSION, the backup cannot be written,
            or the database cannot be read or written.
    """
    with storage_errors(where):
        with engine.begin() as connection:
            begin_migrating(connection)
            SCHEMA_MIGRATIONS.create(connection, checkfirst=True)
            applied = set(connection.execute(select(SchemaMigration.version)).scalars())
        current = max(applied, default=0)
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"{where}: the database has schema version {current} but this chatbot reads up to "
                f"version {SCHEMA_VERSION}; upgrade chatbot to open it"
            )
        pending = [migration for migration in MIGRATIONS if migration[0] not in applied]
        backup_path = None
        if pending and applied and path is not None:
            backup_path = backup(engine, path, current)
        elif pending and applied and engine.dialect.name == "postgresql":
            backup_path = postgres.dump(engine, where, current)
        for version, name, migration in pending:
            with engine.begin() as connection:
                begin_migrating(connection)
                done = connection.scalar(select(SchemaMigration.version).where(SchemaMigration.version == version))
                if done is not None:  # another process applied it since we looked
                    continue
                migration(connection)
                connection.execute(SCHEMA_MIGRATIONS.insert().values(version=version, name=name, applied_at=utc_now()))
    return backup_path


def backup(engine: Engine, path: Path, version: int) -> Path:
    """Copy the database (WAL content included) to `<name>.v<version>-backup-<YYYYmmdd-HHMMSS>`, mode 0o600.

    Raises:
        StorageError: the copy cannot be written; the database is left as it was.
    """
    stem = f"{path.name}.v{version}-backup-{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        copy = new_private_file(path.parent, stem)
    except OSError as exc:
        raise StorageError(f"{path}: cannot back up the database before upgrading it: {exc.strerror}") from exc
    raw = engine.raw_connection()
    try:
        target = sqlite3.connect(copy)
        try:
            raw.driver_connection.backup(target)  # type: ignore[union-attr]  # the online backup API: a consistent copy, WAL included
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            target.close()
    except sqlite3.Error as exc:
        copy.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot back up the database to {copy} before upgrading it: {exc}") from exc
    finally:
        raw.close()
    return copy
