"""PostgreSQL specifics: the psycopg 3 driver, UTC sessions, the migration lock, pg_dump backups, connection errors.

`chatbot.storage.database` calls these when a URL names PostgreSQL; SQLite
never reaches them. A plain ``postgresql://`` (or ``postgres://``) URL gets
the psycopg 3 driver that ``pip install -e '.[postgres]'`` installs, rather
than SQLAlchemy's default psycopg2, which this project does not ship.
Concurrent writers need nothing from here: each write locks its
conversation's row (``SELECT ... FOR UPDATE``, see
`ConversationStore.add_turn`); only migrations take a database-wide lock.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Engine

from chatbot.errors import StorageError

DRIVER = "postgresql+psycopg"
# pg_advisory_xact_lock key held by the transaction that migrates (any 64-bit number unique to this use: "chatbot").
MIGRATION_LOCK = 0x63686174626F74
BACKUP_SWITCH = "CHATBOT_PG_BACKUP"  # "off": upgrade without a pg_dump copy (you made your own)


def engine_url(url: URL) -> URL:
    """`url` with psycopg 3 as its driver when it names PostgreSQL without one (SQLAlchemy would pick psycopg2)."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername=DRIVER)
    return url


def connect_args(url: URL) -> dict:
    """Every session in UTC (stored times are naive UTC, as in SQLite) and a 10 s connect timeout unless the URL sets one."""
    args: dict = {"options": "-c timezone=UTC"}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = 10
    return args


def missing_driver(where: str) -> StorageError:
    return StorageError(f"{where}: the PostgreSQL driver (psycopg 3) is not installed: pip install -e '.[postgres]' in the chatbot clone")


def lock_migrations(connection: Connection) -> None:
    """Hold the migration lock until the transaction ends, so two processes opening one database never migrate it at once."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def connection_error(message: str, where: str) -> StorageError | None:
    """One line for a failure to reach or log in to the server (`message`: the driver's text); None for other errors."""
    lowered = message.lower()
    detail = (
        " ".join(message.strip().splitlines()[0].split()).removeprefix("connection failed: ").removeprefix("connection is bad: ")
        if message.strip()
        else message
    )
    if (
        "password authentication failed" in lowered
        or "no pg_hba.conf entry" in lowered
        or ("role" in lowered and "does not exist" in lowered)
    ):
        return StorageError(f"{where}: the database server refused the login ({detail}); check the user and password in the URL")
    if "database" in lowered and "does not exist" in lowered:
        return StorageError(f"{where}: no such database on the server; create it (createdb NAME) or fix the URL's database name")
    if (
        "connection" in lowered and ("failed" in lowered or "refused" in lowered or "timeout" in lowered)
    ) or "could not connect" in lowered:
        return StorageError(
            f"{where}: cannot connect to the database server ({detail}); check that it is running and the URL's host and port"
        )
    return None


def find_tool(name: str) -> str | None:
    """`name` (a PostgreSQL client program) on PATH, else in the newest /usr/lib/postgresql/*/bin (Debian's layout)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return str(candidates[-1]) if candidates else None


def dump(engine: Engine, where: str, version: int) -> Path | None:
    """Copy the database with ``pg_dump`` (plain SQL, restorable with ``psql -f``) to
    ``$CHATBOT_HOME/backups/<database>.v<version>-backup-<YYYYmmdd-HHMMSS>.sql``, mode 0o600.

    Returns None, copying nothing, when the environment sets CHATBOT_PG_BACKUP=off.

    Raises:
        StorageError: pg_dump is missing or fails; nothing has been migrated yet.
    """
    if os.environ.get(BACKUP_SWITCH, "").lower() == "off":
        return None
    from chatbot.paths import new_private_file, storage_dir

    refuse = f"{where}: cannot back up the database before upgrading it from schema version {version}"
    tool = find_tool("pg_dump")
    if tool is None:
        raise StorageError(
            f"{refuse}: pg_dump not found; install PostgreSQL's client programs (the server's version or newer), "
            f"or back it up yourself and set {BACKUP_SWITCH}=off"
        )
    folder = storage_dir() / "backups"
    stem = f"{engine.url.database}.v{version}-backup-{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        copy = new_private_file(folder, stem, ".sql")
    except OSError as exc:
        raise StorageError(f"{refuse}: {folder}: {exc.strerror}") from exc
    from psycopg.conninfo import make_conninfo

    _, params = engine.dialect.create_connect_args(engine.url)
    params = {key: value for key, value in params.items() if isinstance(value, str | int)}  # libpq options only
    password = params.pop("password", None)
    environment = dict(os.environ, **({"PGPASSWORD": str(password)} if password else {}))
    command = [tool, "--format=plain", "--no-owner", f"--file={copy}", f"--dbname={make_conninfo(**params)}"]
    try:
        result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        copy.unlink(missing_ok=True)
        raise StorageError(f"{refuse}: pg_dump: {exc}") from exc
    if result.returncode != 0:
        copy.unlink(missing_ok=True)
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise StorageError(f"{refuse}: {reason}")
    return copy
