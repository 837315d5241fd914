"""Where the chat's lines come from: a prompt-toolkit session on a terminal, or a file or pipe line by line.

Both offer `prompt(message, default="") -> str` and raise EOFError at the end
of input, so `ChatREPL` reads them alike. On a terminal, input the line
editor cannot parse is kept as text: an escape sequence copied from a
coloured terminal (``ESC[31m``) looks to prompt-toolkit like a mouse report
and used to crash its event loop; here it is inserted into the line, and
`chatbot.text.messages.clean_message` removes it before anything is stored.
A file or pipe's lines are echoed as that cleaned text too, so the transcript
shows what was stored and carries no control codes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys

from chatbot.text.messages import clean_message

_MOUSE_REPORT = re.compile(r"^\x1b\[<?\d+;\d+;\d+[mM]$")  # what a real SGR / urxvt mouse report looks like


def private_history(path: os.PathLike) -> History:
    """Input history kept in a file readable by its owner only (it holds what the person typed)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def _input_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add(Keys.Vt100MouseEvent)
    def _escape_sequence_as_text(event) -> None:
        # The chat does not use the mouse; anything parsed as a mouse report that is not one is typed text.
        if not _MOUSE_REPORT.match(event.data):
            event.current_buffer.insert_text(event.data)

    return bindings


def terminal_session(history: History) -> PromptSession:
    """The chat's prompt on a terminal: line editing, `history`, escape sequences kept as text."""
    return PromptSession(history=history, key_bindings=_input_bindings())


class LineInput:
    """Lines of a file or pipe as the chat's input, echoed as a transcript (`you> text`).

    The echo shows each line as `clean_message` stores it (escape sequences and control
    characters removed, whitespace collapsed); `prompt` returns the line as read, for the REPL
    to clean, store and report on.

    Args:
        stream: a binary file object; lines are decoded as UTF-8, undecodable bytes replaced.
        write: prints one line (the echo of each prompt and its answer); None echoes nothing.
    """

    def __init__(self, stream, write: Callable[[str], None] | None = print):
        self.stream = stream
        self.write = write

    def prompt(self, message: str = "", default: str = "") -> str:
        raw = self.stream.readline()
        if not raw:
            raise EOFError
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n") if isinstance(raw, bytes) else raw.rstrip("\r\n")
        if self.write is not None:
            self.write(f"{message}{clean_message(line).text}")  # never a raw escape code on the transcript
        return line


def binary(stream: TextIO):
    """The byte stream under a text stream (stdin), or the stream itself."""
    return getattr(stream, "buffer", stream)
