"""The Cornell Movie-Dialogs Corpus (Danescu-Niculescu-Mizil & Lee 2011): ``' +++$+++ '``-separated lines.

A corpus folder holds ``movie_lines.txt`` (one line of a film per row: line id, character
id, movie id, character name, text) and ``movie_conversations.txt`` (two character ids,
a movie id and the Python list of the conversation's line ids, in order), and usually
``movie_titles_metadata.txt`` (movie id, title, year, rating, votes, genres). The files
are ISO-8859-1. https://www.cs.cornell.edu/~cristian/Cornell_Movie-Dialogs_Corpus.html

The lines are held in memory by id (about 300,000 in the real corpus); the
conversations are streamed. A turn's speaker is the character's name (its id when
the name is empty); empty lines are dropped and a character's consecutive lines
become one turn.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, Utterance, merge_runs
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_lines, is_text, text_lines
from chatbot.errors import CorpusError
from chatbot.text.normalize import normalize_text

SEPARATOR = "+++$+++"
ENCODING = "iso-8859-1"
LINES = "movie_lines.txt"
CONVERSATIONS = "movie_conversations.txt"
TITLES = "movie_titles_metadata.txt"

# What a line's id maps to: (character id, movie id, speaker, text), or None for a line
# that was reported as malformed (the conversations holding it are skipped without a second report).
_Line = tuple[str, str, str, str] | None


def _fields(line: str) -> list[str]:
    return [field.strip() for field in line.split(SEPARATOR)]


def _folder(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    for name in (LINES, CONVERSATIONS):
        if not (folder / name).is_file():
            raise CorpusError(f"{path}: no {name} in {folder}; the Cornell corpus is a folder holding {LINES} and {CONVERSATIONS}")
    return folder


def _lines(path: Path, options: ReadOptions, problems: Problems) -> dict[str, _Line]:
    lines: dict[str, _Line] = {}
    for number, line in text_lines(path, options, default=ENCODING):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = _fields(line)
        if len(fields) != 5 or not fields[0]:
            problems.report(
                where, f"expected 5 fields separated by ' {SEPARATOR} ' (line id, character id, movie id, name, text), got {len(fields)}"
            )
            if fields[0]:
                lines[fields[0]] = None
            continue
        line_id, character_id, movie_id, name, text = fields
        if line_id in lines:
            problems.report(where, f"line id {line_id} appears twice; each line of {LINES} needs its own id")
            continue
        text = normalize_text(text)
        if not is_text(text):
            problems.report(where, "control characters in the text (binary data?); remove them")
            lines[line_id] = None
            continue
        lines[line_id] = (character_id, movie_id, name or character_id, text)
    return lines


def _titles(path: Path, options: ReadOptions, problems: Problems) -> dict[str, str]:
    titles: dict[str, str] = {}
    if not path.is_file():
        return titles
    for number, line in text_lines(path, options, default=ENCODING):
        if not line.strip():
            continue
        fields = _fields(line)
        if len(fields) < 2 or not fields[0]:
            problems.report(f"{path}:{number}", f"expected a movie id and a title separated by ' {SEPARATOR} '")
            continue
        titles[fields[0]] = normalize_text(fields[1])
    return titles


def _line_ids(value: str) -> list[str] | None:
    try:
        ids = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return ids


def _turns(ids: list[str], lines: dict[str, _Line]) -> tuple[Utterance, ...] | None:
    """The turns of a conversation's lines (empty ones dropped), or None when one of them is malformed."""
    turns = []
    for line_id in ids:
        line = lines[line_id]
        if line is None:
            return None
        character_id, _, speaker, text = line
        if text:
            turns.append(Utterance(speaker, text, {"line_id": line_id, "character_id": character_id}))
    return merge_runs(turns)


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """The conversations of a Cornell corpus folder (or of the folder of one of its files), in file order."""
    folder = _folder(path)
    lines = _lines(folder / LINES, options, problems)
    titles = _titles(folder / TITLES, options, problems)
    conversations = folder / CONVERSATIONS
    for number, row in text_lines(conversations, options, default=ENCODING):
        if not row.strip():
            continue
        where = f"{conversations}:{number}"
        fields = _fields(row)
        ids = _line_ids(fields[3]) if len(fields) == 4 else None
        if ids is None:
            problems.report(
                where,
                f"expected 4 fields separated by ' {SEPARATOR} ' (two character ids, a movie id, a list of line ids like ['L1', 'L2'])",
            )
            continue
        movie_id = fields[2]
        missing = next((i for i in ids if i not in lines), None)
        if missing is not None:
            problems.report(where, f"line id {missing} is not in {LINES}; fix the id or add the line")
            continue
        turns = _turns(ids, lines)
        if turns is None or len(turns) < 2:
            continue  # a malformed line was reported where it stands; a lone turn is no dialogue
        metadata = {"movie_id": movie_id}
        if movie_id in titles:
            metadata["movie_title"] = titles[movie_id]
        yield Dialogue(f"cornell:{movie_id}:{ids[0]}", turns, metadata)


def sniff(path: Path) -> bool:
    """A folder holding movie_lines.txt and movie_conversations.txt, or a file whose first lines hold ' +++$+++ '."""
    try:
        if path.is_dir():
            return (path / LINES).is_file() and (path / CONVERSATIONS).is_file()
    except OSError:
        return False
    return any(f" {SEPARATOR} " in line for line in head_lines(path, 5))


FORMAT = Format("cornell", "the Cornell Movie-Dialogs Corpus (' +++$+++ ' fields)", read, sniff, directory=True)
