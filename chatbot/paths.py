"""Where runtime data lives: ``$CHATBOT_HOME``, or ``./storage`` under the working directory."""

from __future__ import annotations

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
