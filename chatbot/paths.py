"""Where runtime data lives: ``$CHATBOT_HOME``, or ``./storage`` under the working directory."""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import sys
from pathlib import Path


def storage_dir() -> Path:
    return Path(os.environ.get("CHATBOT_HOME") or "storage")


def default_database_url() -> str:
    return f"sqlite:///{storage_dir() / 'chatbot.db'}"


def program() -> str:
    """How to type this program again in a hint: `bin/chatbot` sets $CHATBOT_PROGRAM to the path it was run
    as; a `chatbot` script that is not the one on $PATH (a virtualenv not activated) is named by its path;
    otherwise `chatbot`."""
    if os.environ.get("CHATBOT_PROGRAM"):
        return shlex.quote(os.environ["CHATBOT_PROGRAM"])
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "chatbot":
        found = shutil.which("chatbot")
        if not found or os.path.realpath(found) != os.path.realpath(script):
            return shlex.quote(script)
    return "chatbot"


def db_flag(url: str | None) -> str:
    """` --db URL` (quoted for a shell) when `url` is not the default database, else ""."""
    return f" --db {shlex.quote(url)}" if url and url != default_database_url() else ""


def models_dir() -> Path:
    return storage_dir() / "models"


def cache_dir() -> Path:
    """Derived data that can always be rebuilt: tokenized corpora and their tokenizers."""
    return storage_dir() / "cache"


def new_private_file(folder: Path, stem: str, suffix: str = "") -> Path:
    """Create an empty file `folder/stem[-N]suffix` readable by its owner only (mode 0o600), with the
    first name not yet taken (N = 1, 2, … after a clash), and return its path.

    Raises:
        OSError: the folder cannot be written.
    """
    for attempt in itertools.count():
        path = folder / (f"{stem}{suffix}" if attempt == 0 else f"{stem}-{attempt}{suffix}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")
