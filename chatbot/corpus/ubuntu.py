"""The Ubuntu Dialogue Corpus v2 (Lowe et al. 2015): CSV rows of a context and its reply.

https://github.com/rkadlec/ubuntu-ranking-dataset-creator writes ``train.csv``
(``Context,Utterance,Label``: label 1 rows hold the real reply, label 0 rows a random
one, which is skipped) and ``valid.csv``/``test.csv`` (``Context,Ground Truth
Utterance,Distractor_0,...,Distractor_8``: the distractors are kept in the dialogue's
metadata as ``{"distractors": [...]}`` for a recall@k evaluation). In a context
``__eou__`` ends an utterance and ``__eot__`` a turn; a turn is its speaker's
utterances joined. Speakers alternate (``speaker1``, ``speaker2``), the reply being
the next speaker after the context's last turn. Files are streamed row by row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, merge_runs
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_lines, is_text, split_from_name, text_lines
from chatbot.corpus.plain import alternating
from chatbot.errors import CorpusError
from chatbot.text.normalize import normalize_text

FILES = ("train.csv", "valid.csv", "test.csv")
END_OF_UTTERANCE = "__eou__"
END_OF_TURN = "__eot__"
LABELS = {"1": True, "1.0": True, "0": False, "0.0": False}
# A context can run to hundreds of kilobytes; csv's default limit is 128 KiB. (2**31 - 1 fits a C long everywhere.)
FIELD_SIZE_LIMIT = 2**31 - 1


def _turn(text: str) -> str:
    """One turn's (or one reply's) text: its ``__eou__``-ended utterances joined by spaces."""
    return " ".join(filter(None, (normalize_text(u) for u in text.split(END_OF_UTTERANCE))))


def _context(text: str) -> list[str]:
    return list(filter(None, (_turn(t) for t in text.split(END_OF_TURN))))


def _kind(header: list[str], where: str) -> str:
    names = [name.strip().lower() for name in header]
    if names == ["context", "utterance", "label"]:
        return "train"
    if len(names) >= 2 and names[:2] == ["context", "ground truth utterance"] and all(n.startswith("distractor_") for n in names[2:]):
        return "eval"
    raise CorpusError(
        f"{where}: not an Ubuntu Dialogue Corpus CSV: the header must be Context,Utterance,Label (training) "
        f"or Context,Ground Truth Utterance,Distractor_0,... (validation, test); got {','.join(header)[:200]!r}"
    )


def read_file(path: Path, options: ReadOptions, problems: Problems, split: str | None) -> Iterator[Dialogue]:
    """The dialogues of one Ubuntu CSV; `split` is its official split (None: the hash of the ids decides)."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    name = split or path.stem
    # text_lines decodes (BOM, --encoding, CRLF) and names the line of an undecodable byte; csv needs the line ends back.
    reader = csv.reader(line + "\n" for _, line in text_lines(path, options))
    try:
        header = next(reader, None)
        if header is None:
            raise CorpusError(f"{path}: empty file; an Ubuntu CSV starts with a header line")
        kind = _kind(header, f"{path}:1")
        row_number, last_line = 0, reader.line_num
        for row in reader:
            start, last_line = last_line + 1, reader.line_num  # a quoted field may span lines: name the row's first
            if not row:
                continue
            row_number += 1
            dialogue = _row(row, kind, len(header), f"{path}:{start}", problems)
            if dialogue is not None:
                texts, metadata = dialogue
                yield Dialogue(f"ubuntu:{name}:{row_number}", merge_runs(alternating(texts)), metadata, split)
    except csv.Error as exc:
        raise CorpusError(f"{path}:{reader.line_num}: malformed CSV ({exc}); check the file's quoting") from exc


def _row(row: list[str], kind: str, width: int, where: str, problems: Problems) -> tuple[list[str], dict | None] | None:
    """A row's turn texts and metadata, or None (skipped: a label 0 row, or a malformed row after reporting it)."""
    if len(row) != width:
        problems.report(where, f"expected {width} columns like the header, got {len(row)}; quote fields that hold commas")
        return None
    if kind == "train":
        label = row[2].strip()
        if label not in LABELS:
            problems.report(where, f"the label must be 1 or 0 (1.0, 0.0), got {label[:40]!r}")
            return None
        if not LABELS[label]:
            return None
    context, reply = _context(row[0]), _turn(row[1])
    distractors = [_turn(d) for d in row[2:]] if kind == "eval" else []
    if not all(map(is_text, [*context, reply, *distractors])):  # after normalising: a quoted field's newlines are fine
        problems.report(where, "control characters in a field (binary data?); remove them")
        return None
    if not context:
        problems.report(where, f"the context is empty; it needs at least one utterance ended by {END_OF_UTTERANCE}")
        return None
    if not reply:
        problems.report(where, "the reply is empty; give the utterance that answers the context")
        return None
    metadata = {"distractors": distractors} if kind == "eval" else None
    return [*context, reply], metadata


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """A folder's train.csv, valid.csv and test.csv (official splits), or one CSV (split from its name)."""
    if not path.is_dir():
        yield from read_file(path, options, problems, split_from_name(path.stem))
        return
    files = [path / name for name in FILES if (path / name).is_file()]
    if not files:
        raise CorpusError(f"{path}: none of {', '.join(FILES)} in this folder; give the Ubuntu corpus folder or one of its CSV files")
    for file in files:
        yield from read_file(file, options, problems, split_from_name(file.stem))


def _has_header(path: Path) -> bool:
    lines = head_lines(path, 1)
    return bool(lines) and lines[0].lstrip().startswith(("Context,", '"Context",'))


def sniff(path: Path) -> bool:
    """A file whose first line is a header starting ``Context,``, or a folder holding such a train/valid/test.csv."""
    try:
        if path.is_dir():
            return any(_has_header(path / name) for name in FILES)
    except OSError:
        return False
    return _has_header(path)


FORMAT = Format("ubuntu", "the Ubuntu Dialogue Corpus (CSV with a 'Context,...' header)", read, sniff, directory=True)
