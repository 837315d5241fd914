"""`chatbot corpus convert`: any readable corpus written as JSONL, plain text or ParlAI dialog format.

Writers stream: one dialogue in, its lines out, so converting Ubuntu's million
dialogues holds one at a time. The output file appears only when complete (written
beside it under a temporary name, then renamed).

What each format keeps: ``jsonl`` everything (id, official split, speakers, dialogue
and turn metadata; ``chatbot train`` reads it back to the same dialogues); ``parlai``
the texts, two turns per line, one episode per dialogue; ``txt`` the texts only
(speakers are assumed to alternate when it is read back).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue
from chatbot.errors import CorpusError


def jsonl_lines(dialogue: Dialogue) -> Iterator[str]:
    """``{"id", "split"?, "metadata"?, "turns": [{"speaker", "text", "metadata"?}]}`` on one line."""
    record: dict[str, object] = {"id": dialogue.id}
    if dialogue.official_split:
        record["split"] = dialogue.official_split
    if dialogue.metadata:
        record["metadata"] = dialogue.metadata
    record["turns"] = [
        {"speaker": turn.speaker, "text": turn.text, **({"metadata": turn.metadata} if turn.metadata else {})} for turn in dialogue.turns
    ]
    yield json.dumps(record, ensure_ascii=False) + "\n"


def text_lines(dialogue: Dialogue) -> Iterator[str]:
    """One utterance per line, then the blank line that ends the dialogue."""
    yield from (f"{turn.text}\n" for turn in dialogue.turns)
    yield "\n"


def _parlai_escape(text: str) -> str:
    return text.replace("\t", "\\t").replace("\n", "\\n")


def parlai_lines(dialogue: Dialogue) -> Iterator[str]:
    """ParlAI's dialog format: ``text:TURN<TAB>labels:NEXT TURN`` per pair of turns, the last with ``episode_done:True``.

    An odd last turn becomes a ``text:`` line without labels.
    """
    turns = [_parlai_escape(turn.text) for turn in dialogue.turns]
    pairs = [turns[i : i + 2] for i in range(0, len(turns), 2)]
    for index, pair in enumerate(pairs):
        fields = [f"text:{pair[0]}"] + ([f"labels:{pair[1]}"] if len(pair) > 1 else [])
        if index == len(pairs) - 1:
            fields.append("episode_done:True")
        yield "\t".join(fields) + "\n"


WRITERS: dict[str, Callable[[Dialogue], Iterator[str]]] = {"jsonl": jsonl_lines, "txt": text_lines, "parlai": parlai_lines}


def write_corpus(dialogues: Iterable[Dialogue], format: str, out: Path) -> int:
    """Write `dialogues` to `out` in `format` (one of `WRITERS`); returns how many were written.

    Raises:
        CorpusError: unknown format, `out` cannot be written, or a reader error from `dialogues`
            (nothing is left at `out` then).
    """
    if format not in WRITERS:
        raise CorpusError(f"cannot write corpus format {format!r}; choose one of: {', '.join(WRITERS)}")
    lines = WRITERS[format]
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as handle:
            for dialogue in dialogues:
                handle.writelines(lines(dialogue))
                count += 1
        os.replace(partial, out)
    except OSError as exc:
        raise CorpusError(f"{out}: cannot write the converted corpus: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return count
