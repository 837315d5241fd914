"""PersonaChat (Zhang et al. 2018): ParlAI FB-dialog text files such as ``train_self_original.txt``.

Numbered lines; the number restarts at 1 for each dialogue. ``N your persona: ...`` and
``N partner's persona: ...`` lines give the dialogue's metadata
``{"your_persona": [...], "partner_persona": [...]}``; every other line is
``N utterance<TAB>reply<TAB>reward<TAB>cand1|cand2|...`` (reply and candidates may be
absent): the partner's utterance, then your reply, whose metadata keeps the candidates
``{"candidates": [...]}``. Speakers are ``partner`` and ``self``; a ``__SILENCE__``
utterance (you speak first) is no turn. The official split comes from the file name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, Utterance, content_id, merge_runs
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_lines, is_text, split_from_name, text_lines
from chatbot.text.normalize import normalize_text

SPEAKERS = ("partner", "self")
SILENCE = "__SILENCE__"
_LINE = re.compile(r"(\d+) (.*)", re.DOTALL)
_PERSONA = re.compile(r"(your|partner's) persona:(.*)", re.DOTALL)


class _Dialogue:
    """One dialogue being read."""

    def __init__(self) -> None:
        self.turns: list[Utterance] = []
        self.personas: dict[str, list[str]] = {"your_persona": [], "partner_persona": []}

    def finish(self, split: str | None) -> Dialogue | None:
        turns = merge_runs(self.turns)
        if len(turns) < 2:
            return None
        return Dialogue("personachat:" + content_id(t.text for t in turns), turns, self.personas, split)


def _turns(rest: str, where: str, problems: Problems) -> list[Utterance] | None:
    """The turns of one dialogue line, or None after reporting what is wrong with it."""
    parts = rest.split("\t")
    texts = [normalize_text(part) for part in parts[:2]]
    if not any(texts) or texts == [SILENCE]:
        problems.report(where, "a dialogue line with no utterance; write N utterance<TAB>reply")
        return None
    if not all(is_text(text) for text in texts):
        problems.report(where, "control characters in the line (binary data?); remove them")
        return None
    candidates = [c for c in (normalize_text(c) for c in parts[3].split("|")) if c] if len(parts) > 3 else []
    turns = [Utterance(SPEAKERS[0], texts[0])] if texts[0] and texts[0] != SILENCE else []
    if len(texts) > 1 and texts[1]:
        turns.append(Utterance(SPEAKERS[1], texts[1], {"candidates": candidates} if candidates else None))
    return turns


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """The dialogues of a PersonaChat (FB-dialog) text file."""
    split = split_from_name(path.stem)
    current = _Dialogue()
    for number, line in itertools.chain(text_lines(path, options), [(0, None)]):
        if line is None:
            if dialogue := current.finish(split):
                yield dialogue
            break
        if not line.strip():
            continue
        where = f"{path}:{number}"
        match = _LINE.fullmatch(line.lstrip())
        if not match:
            problems.report(
                where, "expected a line number, a space and the text (N utterance<TAB>reply); number the lines from 1 in each dialogue"
            )
            continue
        if int(match.group(1)) == 1:
            if dialogue := current.finish(split):
                yield dialogue
            current = _Dialogue()
        rest = match.group(2)
        if persona := _PERSONA.match(rest):
            text = normalize_text(persona.group(2))
            if not is_text(text):
                problems.report(where, "control characters in a persona line (binary data?); remove them")
            elif text:
                current.personas["your_persona" if persona.group(1) == "your" else "partner_persona"].append(text)
            continue
        if (turns := _turns(rest, where, problems)) is not None:
            current.turns.extend(turns)


def sniff(path: Path) -> bool:
    """First line ``1 your persona:`` (or ``1 partner's persona:``), or lines numbered 1, 2, … holding a tab."""
    lines = head_lines(path, 10)
    if not lines:
        return False
    if re.match(r"1 (your|partner's) persona:", lines[0]):
        return True
    previous = 0
    for line in lines:
        match = _LINE.fullmatch(line)
        if not match or "\t" not in line or int(match.group(1)) not in (1, previous + 1):
            return False
        previous = int(match.group(1))
    return lines[0].startswith("1 ")


FORMAT = Format("personachat", "PersonaChat (numbered lines, your persona:, utterance<TAB>reply)", read, sniff)
