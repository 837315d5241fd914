"""ParlAI dialog format: tab-separated ``key:value`` lines, an episode ending at ``episode_done:True``.

https://parl.ai/docs/tutorial_task.html: one example per line. A line such as
``text:hello\\nhow are you?<TAB>labels:fine, thanks<TAB>label_candidates:fine|bad<TAB>episode_done:True``
gives two turns: its ``text`` (one turn, even when it holds several lines) and then its
first ``labels`` (or ``eval_labels``). Inside values ``\\n``, ``\\t``, ``\\\\`` and ``\\|`` are
escaped (ParlAI's ``__PIPE__`` reads as ``|`` too); lists split on unescaped ``|``.
``label_candidates`` go into the reply turn's metadata ``{"candidates": [...]}``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, Utterance, content_id, merge_runs
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_lines, is_text, text_lines
from chatbot.corpus.plain import ALTERNATING
from chatbot.text.normalize import normalize_text

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "|": "|"}
_REPLIES = ("labels", "eval_labels")


def unescape(value: str, separator: str | None = None) -> list[str]:
    """The pieces of a ParlAI value split on unescaped `separator` (None: one piece), escapes resolved."""
    pieces, current, chars = [], [], iter(value)
    for ch in chars:
        if ch == "\\":
            following = next(chars, "")
            current.append(_ESCAPES.get(following, "\\" + following))
        elif ch == separator:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return [piece.replace("__PIPE__", "|") for piece in pieces]


def fields(line: str) -> tuple[dict[str, str], str | None]:
    """The ``key:value`` fields of a line (values still escaped), and what is wrong with the line (None: nothing)."""
    found: dict[str, str] = {}
    wrong = None
    for index, field in enumerate(line.split("\t"), start=1):
        if not field:
            continue
        key, colon, value = field.partition(":")
        if not colon or not key:
            wrong = (
                wrong or f"field {index} ({field[:30]!r}) is not key:value; separate fields with tabs and write tabs inside values as \\t"
            )
            continue
        found.setdefault(key, value)
    if wrong is None and "text" not in found:
        wrong = "no text: field; every line needs text:... (an empty turn is text:)"
    return found, wrong


def _text(value: str, where: str, problems: Problems) -> str | None:
    """An unescaped value's text, normalized ("" when empty), or None after reporting control characters."""
    text = normalize_text(value)
    if not is_text(text):
        problems.report(where, "a text holds control characters (binary data?); remove them")
        return None
    return text


def _line_turns(found: dict[str, str], where: str, problems: Problems) -> list[Utterance] | None:
    """The text turn and the reply turn of one line (empty ones left out), or None after a report."""
    text = _text(unescape(found["text"])[0], where, problems)
    if text is None:
        return None
    turns = [Utterance(ALTERNATING[0], text)] if text else []
    key = next((k for k in _REPLIES if k in found), None)
    if key is not None:
        reply = _text(unescape(found[key], "|")[0], where, problems)
        if reply is None:
            return None
        candidates = [c for c in (normalize_text(c) for c in unescape(found.get("label_candidates", ""), "|")) if c]
        if reply:
            turns.append(Utterance(ALTERNATING[1], reply, {"candidates": candidates} if candidates else None))
    return turns


def _episode(turns: list[Utterance], metadata: dict | None) -> Dialogue | None:
    merged = merge_runs(turns)
    if len(merged) < 2:
        return None
    return Dialogue("parlai:" + content_id(t.text for t in merged), merged, metadata)


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """The episodes of a ParlAI dialog file; an unterminated last episode is still read."""
    turns: list[Utterance] = []
    metadata: dict | None = None
    for number, line in itertools.chain(text_lines(path, options), [(0, None)]):
        if line is not None and not line.strip():
            continue
        done = line is None
        if line is not None:
            where = f"{path}:{number}"
            found, wrong = fields(line)
            done = found.get("episode_done", "").strip().lower() in ("true", "1")
            if wrong:
                problems.report(where, wrong)
            elif (line_turns := _line_turns(found, where, problems)) is not None:
                if not turns and "id" in found:
                    metadata = {"id": normalize_text(unescape(found["id"])[0])}
                turns.extend(line_turns)
        if done:
            if dialogue := _episode(turns, metadata):
                yield dialogue
            turns, metadata = [], None


def sniff(path: Path) -> bool:
    """A file whose first line has a ``text:`` field (first, or after ``id:``) and ``labels:``, ``eval_labels:`` or ``episode_done:``."""
    lines = head_lines(path, 1)
    if not lines:
        return False
    found, wrong = fields(lines[0])
    first = lines[0].split(":", 1)[0]
    return wrong is None and first in ("text", "id") and any(k in found for k in (*_REPLIES, "episode_done"))


FORMAT = Format("parlai", "ParlAI dialog text (tab-separated text:/labels: fields, episode_done:True)", read, sniff)
