"""What a corpus format is: its reader, its sniffer, and the text decoding every reader shares.

A format reads a file or directory into `Dialogue`s one at a time (a generator, so a
corpus of a million dialogues is never held in memory), reports each malformed record
to a `Problems` sink (which raises at once, or collects for `chatbot corpus validate`),
and says from a file's first kilobytes whether the file looks like it (`sniff`), so
`chatbot corpus detect` can name it and a plain-text read can refuse it.

Text is decoded the same way everywhere: a given `--encoding` wins, else a byte-order
mark decides (UTF-8, UTF-16, UTF-32), else the format's own encoding (ISO-8859-1 for
Cornell, UTF-8 elsewhere); CRLF and CR line ends read as LF.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue
from chatbot.errors import CorpusError

# How much of a file a sniffer reads, in bytes.
SNIFF_BYTES = 64 * 1024

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read a corpus besides its format.

    Attributes:
        encoding: the files' text encoding (a Python codec name); None detects it
            (byte-order mark, else the format's own encoding).
        convokit_paths: ``longest`` (one dialogue per ConvoKit conversation: its longest
            root-to-leaf reply chain) or ``all`` (every root-to-leaf chain).
    """

    encoding: str | None = None
    convokit_paths: str = "longest"

    def __post_init__(self) -> None:
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError as exc:
                raise CorpusError(f"--encoding {self.encoding!r} is not a known text encoding (try utf-8 or latin-1)") from exc
        if self.convokit_paths not in ("longest", "all"):
            raise CorpusError(f"--convokit-paths must be 'longest' or 'all', got {self.convokit_paths!r}")


class Problems:
    """Where readers report malformed records.

    Strict (training, stats): the first report raises `CorpusError` with its
    ``file:line: what; how to fix`` message. Collecting (``corpus validate``,
    ``--skip-malformed``): reports are kept, the reader skips the record and goes on.
    """

    def __init__(self, strict: bool = True, keep: int = 50):
        self.strict = strict
        self.keep = keep
        self.count = 0
        self.messages: list[str] = []

    def report(self, where: str, message: str) -> None:
        """One malformed record at `where` (``file:line``). Raises CorpusError when strict."""
        line = f"{where}: {message}"
        if self.strict:
            raise CorpusError(line)
        self.count += 1
        if len(self.messages) < self.keep:
            self.messages.append(line)


Reader = Callable[[Path, ReadOptions, Problems], Iterator[Dialogue]]


@dataclasses.dataclass(frozen=True)
class Format:
    """A registered corpus format.

    Attributes:
        name: as given to ``--format NAME`` and as a SPEC prefix (``NAME:PATH``).
        summary: one line for help texts and ``corpus detect``.
        read: yields the dialogues of a path (file or directory); reports malformed
            records to its `Problems`; raises CorpusError when the path is not this format at all.
        sniff: True when a path (file or directory) looks like this format; reads at most
            `SNIFF_BYTES` of a file, never raises.
        directory: whether the format's natural unit is a directory (Cornell, ConvoKit)
            rather than one file.
    """

    name: str
    summary: str
    read: Reader
    sniff: Callable[[Path], bool]
    directory: bool = False


def bom_encoding(head: bytes) -> str | None:
    """The encoding a byte-order mark at the start of `head` announces, or None."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def file_encoding(path: Path, options: ReadOptions, default: str = "utf-8") -> str:
    """The encoding to read `path` with: `options.encoding`, else its BOM's, else `default`.

    UTF-8 is read as ``utf-8-sig`` so a BOM never reaches the text.
    """
    if options.encoding:
        return options.encoding
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc
    found = bom_encoding(head)
    if found:
        return found
    return "utf-8-sig" if codecs.lookup(default).name == "utf-8" else default


def _undecodable(path: Path, number: int, encoding: str, exc: UnicodeDecodeError) -> CorpusError:
    name = codecs.lookup(encoding).name
    utf8 = name.startswith("utf-8")
    hint = "give the file's encoding with --encoding (for example --encoding latin-1)" if utf8 else "check --encoding"
    return CorpusError(
        f"{path}:{number}: not {'UTF-8' if utf8 else name} text (byte {exc.start + 1} of the line, 0x{exc.object[exc.start]:02x}); {hint}"
    )


def text_lines(path: Path, options: ReadOptions, default: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, line) pairs of a text file, line ends removed, streamed.

    Raises:
        CorpusError: the file cannot be read, or a line does not decode (the message
            names the file, the line and the byte, and suggests ``--encoding``).
    """
    encoding = file_encoding(path, options, default)
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        yield from _wide_lines(path, encoding)
        return
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc
    with handle:
        number = 0
        for number, raw in enumerate(handle, start=1):  # noqa: B007 - number is used after the loop
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _undecodable(path, number, encoding, exc) from exc
            if number == 1:
                line = line.removeprefix("\ufeff")
            # A lone CR (old Mac files) ends lines too.
            parts = line.rstrip("\n").rstrip("\r").split("\r")
            yield from ((number, part) for part in parts)


def _wide_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding=encoding, newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not {encoding} text ({exc.reason}); check --encoding") from exc
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc


def json_lines(path: Path, options: ReadOptions, problems: Problems) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line of a JSON-lines file; a line that is not
    JSON is reported to `problems` as ``file:line: invalid JSON (…)`` and skipped."""
    for number, line in text_lines(path, options):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.report(f"{path}:{number}", f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            problems.report(f"{path}:{number}", "JSON nested too deeply to read")
            continue
        yield number, value


def open_text(path: Path, options: ReadOptions, default: str = "utf-8") -> io.TextIOWrapper:
    """A text stream for readers that parse records spanning lines (CSV, JSON); ``newline=""``.

    Raises:
        CorpusError: the file cannot be opened.
    """
    try:
        return path.open(encoding=file_encoding(path, options, default), newline="")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc


def head_lines(path: Path, limit: int = 20) -> list[str]:
    """Up to `limit` non-blank lines from the first `SNIFF_BYTES` of a file, for sniffers.

    Decodes by BOM, else UTF-8 with undecodable bytes replaced (a sniffer only looks
    for markers); returns [] for a directory or an unreadable file.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return []
    text = head.decode(bom_encoding(head) or "utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if len(head) == SNIFF_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut
    return [line for line in lines if line.strip()][:limit]


# Words in a file or folder name that say which official split it holds.
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "valid", "valid": "valid", "dev": "valid", "test": "test"}


def split_from_name(name: str) -> str | None:
    """The official split a file or folder name gives (``valid_self_original`` → valid,
    ``dialogues_train`` → train, ``ubuntu-test`` → test), or None."""
    for word in re.findall(r"[a-z]+", name.lower()):
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def head_json(path: Path) -> object:
    """The first non-blank line of a file parsed as JSON, for sniffers; None when it is not JSON."""
    lines = head_lines(path, 1)
    try:
        return json.loads(lines[0]) if lines else None
    except (ValueError, RecursionError):
        return None


def is_text(text: str) -> bool:
    """False for text carrying control characters other than tab (binary data pasted as text)."""
    return not any(ord(ch) < 32 and ch != "\t" for ch in text)
