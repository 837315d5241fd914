"""Text normalisation shared by the corpus readers, the chat and the Responder: one rule, one place.

A message and a corpus utterance are normalised alike, so the model reads a typed message as it
read its training data.
"""

from __future__ import annotations

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize_text(text: str) -> str:
    """Drop zero-width characters; collapse runs of whitespace (newlines included) into single spaces."""
    return " ".join(text.translate(_ZERO_WIDTH).split())
