"""The project's own corpus formats: plain text (``txt``) and JSON lines (``jsonl``).

``txt``: one utterance per line, a blank line between dialogues; speakers alternate.
``jsonl``: one dialogue per line, a list of strings or an object
``{"id"?, "split"?, "metadata"?, "turns": [...]}`` whose turns are strings or
``{"speaker", "text", "metadata"?}``; what ``chatbot corpus convert --to jsonl`` writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import SPLITS, Dialogue, Utterance, content_id, merge_runs
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_json, is_text, json_lines, text_lines
from chatbot.text.normalize import normalize_text

# Speakers given to formats that carry none: turns alternate between them.
ALTERNATING = ("speaker1", "speaker2")


def alternating(texts: list[str]) -> tuple[Utterance, ...]:
    """Utterances whose speakers alternate ``speaker1``, ``speaker2``, … (corpora without speakers)."""
    return tuple(Utterance(ALTERNATING[i % 2], t) for i, t in enumerate(texts))


def read_text(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """Plain text: one utterance per line, a blank line between dialogues; speakers alternate."""
    texts: list[str] = []
    start = 1
    for number, line in itertools.chain(text_lines(path, options), [(0, "")]):  # a final blank line closes the last dialogue
        if not is_text(line):
            problems.report(f"{path}:{number}", "control characters in a line (binary data?); remove them")
            continue
        text = normalize_text(line)
        if text:
            if not texts:
                start = number
            texts.append(text)
            continue
        if len(texts) == 1:
            problems.report(
                f"{path}:{start}",
                "a dialogue with a single utterance; a dialogue needs at least two lines (a blank line separates dialogues)",
            )
        elif texts:
            yield Dialogue(content_id(texts), alternating(texts))
        texts = []


def _turns(value: list, where: str, problems: Problems) -> tuple[Utterance, ...] | None:
    turns = []
    for index, turn in enumerate(value, start=1):
        speaker = ALTERNATING[(index - 1) % 2]
        metadata = None
        if isinstance(turn, str):
            text = turn
        elif isinstance(turn, dict) and isinstance(turn.get("text"), str):
            speaker, text = str(turn.get("speaker") or speaker), turn["text"]
            metadata = turn.get("metadata") if isinstance(turn.get("metadata"), dict) else None
        else:
            problems.report(where, f"turn {index} must be a string or an object with a 'text' string")
            return None
        text = normalize_text(text)
        if not text:
            problems.report(where, f"turn {index} is empty")
            return None
        if not is_text(text):
            problems.report(where, f"turn {index} holds control characters (binary data?)")
            return None
        turns.append(Utterance(speaker, text, metadata))
    if len(turns) < 2:
        problems.report(where, f"a dialogue needs at least two turns, got {len(turns)}")
        return None
    return merge_runs(turns)


def _record(value: object, where: str, problems: Problems) -> Dialogue | None:
    """One JSONL record as a dialogue, or None after reporting what is wrong with it."""
    dialogue_id = split = metadata = None
    if isinstance(value, dict):
        if "turns" not in value:
            problems.report(where, f"an object needs a 'turns' list (got keys: {', '.join(sorted(value)) or 'none'})")
            return None
        dialogue_id = None if value.get("id") is None else str(value["id"])
        split = value.get("split")
        if split is not None and split not in SPLITS:
            problems.report(where, f"'split' must be one of {', '.join(SPLITS)}, got {split!r}")
            return None
        metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else None
        value = value["turns"]
    if not isinstance(value, list):
        problems.report(where, f"expected a list of turns or an object with 'turns', got {type(value).__name__}")
        return None
    turns = _turns(value, where, problems)
    if turns is None:
        return None
    return Dialogue(dialogue_id or content_id(t.text for t in turns), turns, metadata, split)


def read_jsonl(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """JSONL: one dialogue per line (see the module docstring). Blank lines are skipped."""
    for number, value in json_lines(path, options, problems):
        where = f"{path}:{number}"
        dialogue = _record(value, where, problems)
        if dialogue is not None:
            yield dialogue


def _sniff_jsonl(path: Path) -> bool:
    """A file whose first line is a JSON list, or an object with a 'turns' key."""
    value = head_json(path)
    return isinstance(value, list) or (isinstance(value, dict) and "turns" in value)


TXT = Format(
    "txt",
    "plain text: one utterance per line, a blank line between dialogues",
    read_text,
    sniff=lambda path: path.is_file() and path.suffix.lower() == ".txt",
)
JSONL = Format("jsonl", "JSON lines: one dialogue per line (this project's format)", read_jsonl, sniff=_sniff_jsonl)
