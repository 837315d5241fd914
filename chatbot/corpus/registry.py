"""Corpus SPECs: which reader reads a name, a ``FORMAT:PATH`` or a bare path, and detection.

A SPEC is a registered name (``chitchat``, ``chatterbot:LANG``), the stored
conversations (``db:`` or ``db:URL``), ``FORMAT:PATH`` with a registered format
(``dailydialog:data/dd``), or a bare path read as ``txt`` or ``jsonl`` by its
extension (or ``--format``). A bare path is never guessed: when it looks like one of
the standard corpora (`detect`), it is refused with a line naming that format and
the flag that reads it, because reading DailyDialog or Cornell as plain text
trains on garbage without a word.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from chatbot.corpus import convokit, cornell, dailydialog, parlai, personachat, ubuntu
from chatbot.corpus.dialogue import Dialogue
from chatbot.corpus.formats import Format, Problems, ReadOptions
from chatbot.corpus.loaders import chatterbot_directory, chitchat_file, load_chatterbot, load_stored, read_chitchat
from chatbot.corpus.plain import JSONL, TXT
from chatbot.errors import CorpusError
from chatbot.paths import cache_dir

# Standard corpora first: detection tries them in this order, then the project's own formats.
STANDARD_FORMATS: tuple[Format, ...] = (
    dailydialog.FORMAT,
    cornell.FORMAT,
    ubuntu.FORMAT,
    parlai.FORMAT,
    convokit.FORMAT,
    personachat.FORMAT,
)
FORMATS: dict[str, Format] = {f.name: f for f in (*STANDARD_FORMATS, JSONL, TXT)}
NAMED = ("chitchat", "chatterbot:LANG", "db:[URL]")


@dataclasses.dataclass(frozen=True)
class Source:
    """One corpus SPEC, resolved: what reads it and what identifies its content.

    Attributes:
        spec: as the user gave it.
        format: the format's name, or ``chitchat``, ``chatterbot`` or ``db``.
        files: the files the dialogues come from (empty for ``db``), for `fingerprint`.
        options: how the files are decoded.
    """

    spec: str
    format: str
    files: tuple[Path, ...]
    options: ReadOptions
    _read: Callable[[Problems], Iterator[Dialogue]] = dataclasses.field(repr=False, compare=False)

    def dialogues(self, problems: Problems | None = None) -> Iterator[Dialogue]:
        """The dialogues, streamed. Raises CorpusError (strict `problems`, the default) on a malformed record."""
        return self._read(problems or Problems())

    def fingerprint(self) -> str | None:
        """SHA-256 over the format, the decoding options and every byte of `files`; None for ``db``
        (stored conversations change between runs, so they are never cached). Computed once."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str | None:
        if not self.files:
            return None
        digest = hashlib.sha256(f"{self.format}\0{self.options.encoding}\0{self.options.convokit_paths}".encode())
        for path in self.files:
            digest.update(f"\0{path.name}\0{file_sha256(path)}".encode())
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, remembered under ``storage/cache/digests/`` by path, size and
    modification time (nanoseconds), so an unchanged 600 MB corpus is not re-read on every run.

    Raises:
        CorpusError: the file cannot be read.
    """
    try:
        stat = path.stat()
        key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        memo = cache_dir() / "digests" / hashlib.sha256(key.encode()).hexdigest()[:32]
        if memo.is_file():
            return memo.read_text(encoding="ascii").strip()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_name(f".{memo.name}.{os.getpid()}")
        partial.write_text(digest.hexdigest(), encoding="ascii")
        os.replace(partial, memo)
    except OSError:
        pass  # a read-only storage folder only costs the re-hash next time
    return digest.hexdigest()


def _files(path: Path) -> tuple[Path, ...]:
    if path.is_file():
        return (path,)
    return tuple(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))


def detect(path: Path) -> list[Format]:
    """The standard formats a file or directory looks like (usually one; [] for plain corpora)."""
    return [f for f in STANDARD_FORMATS if f.sniff(path)]


def _lookalike(path: Path) -> CorpusError | None:
    found = detect(path)
    if not found:
        return None
    f = found[0]
    return CorpusError(f"{path}: looks like {f.summary}; read it with {f.name}:{path} (or --format {f.name})")


def resolve(spec: str, format: str | None = None, options: ReadOptions | None = None) -> Source:
    """The `Source` of a SPEC; `format` (``--format``) names the format of a bare path.

    Raises:
        CorpusError: unknown name or format, missing path, or a bare path that looks like
            a standard corpus (the message names the format and the flag to use).
    """
    options = options or ReadOptions()
    if spec == "chitchat":
        return Source(spec, "chitchat", (chitchat_file(),), options, lambda problems: read_chitchat())
    if spec.startswith("chatterbot:"):
        language = spec.split(":", 1)[1]
        directory = chatterbot_directory(language)
        return Source(spec, "chatterbot", _files(directory), options, lambda problems: iter(load_chatterbot(language)))
    if spec == "db" or spec.startswith("db:"):
        return Source(spec, "db", (), options, lambda problems: iter(load_stored(spec[3:] or None)))
    prefix, _, rest = spec.partition(":")
    if rest and prefix in FORMATS:
        if format and format != prefix:
            raise CorpusError(f"{spec}: the SPEC says {prefix} but --format says {format}; give one of them")
        format, spec_path = prefix, rest
    else:
        spec_path = spec
    path = Path(spec_path)
    if not path.exists() and (format is not None or "/" in spec_path or path.suffix):
        what = f"the {format} corpus" if format else "a corpus file"
        raise CorpusError(f"{spec_path}: no such file or directory ({what} named by {spec!r})")
    if not path.exists():
        raise CorpusError(
            f"unknown corpus {spec!r}: not a registered name ({', '.join(NAMED)}), not FORMAT:PATH "
            f"(formats: {', '.join(FORMATS)}), and no such file or directory"
        )
    if format is None:
        if lookalike := _lookalike(path):
            raise lookalike
        if path.is_dir():
            raise CorpusError(
                f"{spec}: is a directory of no format this tool knows; give a file, or FORMAT:DIR (formats: {', '.join(FORMATS)})"
            )
        format = path.suffix.lstrip(".").lower()
        if format not in ("txt", "jsonl"):
            raise CorpusError(f"{spec}: unknown corpus format {format!r}; use a .txt or .jsonl file or --format ({', '.join(FORMATS)})")
    elif format not in FORMATS:
        raise CorpusError(f"unknown corpus format {format!r}; choose one of: {', '.join(FORMATS)}")
    elif format in ("txt", "jsonl") and (lookalike := _lookalike(path)):
        raise lookalike
    reader = FORMATS[format]
    if path.is_dir() and format in ("txt", "jsonl"):
        raise CorpusError(f"{spec}: is a directory; give a .{format} file")

    def read(problems: Problems) -> Iterator[Dialogue]:
        count = 0
        for dialogue in reader.read(path, options, problems):
            count += 1
            yield dialogue
        if not count:
            raise CorpusError(f"{spec}: no dialogues found (check the format: `chatbot corpus detect {path}`)")

    return Source(spec, format, _files(path), options, read)
