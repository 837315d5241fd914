"""What a typed or pasted message becomes before it is stored: text, never a crash.

Any string is accepted. `clean_message` removes terminal escape sequences
(colours and cursor moves copied from a coloured terminal: CSI, OSC and
two-character ESC sequences, bracketed-paste markers among them), then every
control character (C0, DEL, C1) and lone surrogate, collapses whitespace
(tabs and newlines included) to single spaces, and cuts the result to
MAX_MESSAGE_CHARS characters. What is stored is that cleaned text; the
original is not kept.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata

from chatbot.text.normalize import normalize_text

MAX_MESSAGE_CHARS = 65_536  # characters of a message that are stored (64 Ki); the rest is cut, with a notice

# ESC [ params intermediates final (CSI), ESC ] ... BEL or ESC \ (OSC), ESC + one character (the rest).
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")


@dataclasses.dataclass(frozen=True)
class CleanMessage:
    """A message as it will be stored.

    Attributes:
        text: the cleaned text (may be empty: nothing printable was typed).
        removed: characters removed as escape sequences or control characters.
        cut: characters beyond MAX_MESSAGE_CHARS that were dropped.
    """

    text: str
    removed: int
    cut: int


def _is_control(character: str) -> bool:
    category = unicodedata.category(character)
    return category == "Cc" and character not in "\t\n\r" or category == "Cs"  # controls and lone surrogates


def clean_message(text: str) -> CleanMessage:
    """The storable form of `text` (see the module docstring); never raises for a `str`."""
    without_escapes = _ESCAPE_SEQUENCE.sub("", text)
    printable = "".join(character for character in without_escapes if not _is_control(character))
    removed = len(text) - len(printable)
    normalized = normalize_text(printable)
    return CleanMessage(normalized[:MAX_MESSAGE_CHARS], removed, max(len(normalized) - MAX_MESSAGE_CHARS, 0))
