"""chatbot: hierarchical recurrent dialogue models as a Python library, a terminal chat, a server and a chat page.

HRED, HRAN and VHRED on Keras 3 (TensorFlow or JAX), every turn stored in SQLite or PostgreSQL.

From Python (the public names are `__all__`; `chatbot.api` documents them):

    import chatbot

    bot = chatbot.load()                                    # the shipped model
    print(bot.reply(["hi! what are you studying?"]).text)

The names are imported on first use, so `import chatbot` does not start TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

__all__ = [
    "Bot",
    "Conversation",
    "Decoding",
    "Reply",
    "ReplayReport",
    "Report",
    "evaluate",
    "find_model",
    "load",
    "replay",
    "train",
    "corpus",
    "training",
    "errors",
    "__version__",
]

_SUBPACKAGES = {"corpus", "training", "errors"}

if TYPE_CHECKING:
    from chatbot import corpus, errors, training
    from chatbot.api import Bot, Conversation, Decoding, ReplayReport, Reply, Report, evaluate, find_model, load, replay, train


def __getattr__(name: str):
    """The public names, imported when first used (PEP 562)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"chatbot.{name}")
    if name in __all__:
        from chatbot import api

        return getattr(api, name)
    raise AttributeError(f"module 'chatbot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
