"""Where runtime data lives: ``$CHATBOT_HOME``, or ``./storage`` under the working directory."""

from __future__ import annotations

import itertools
import os
from pathlib import Path


def storage_dir() -> Path:
    return Path(os.environ.get("CHATBOT_HOME") or "storage")


def default_database_url() -> str:
    return f"sqlite:///{storage_dir() / 'chatbot.db'}"


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
