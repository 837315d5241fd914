"""Replaying stored conversations through a model: exact regeneration and side-by-side comparison.

Nothing here writes to the database: a replay of a read-only database works,
and a failed replay changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.errors import CheckpointError
from chatbot.inference.decoding import DECODER_VERSION, DecodingConfig
from chatbot.storage import Conversation, ConversationStore, ModelRecord, Turn, decoding_of

if TYPE_CHECKING:
    from chatbot.inference.responder import Responder  # imported when used: it pulls in the model code

REPORT_FORMATS = ("md", "json")


def stored_decoder_version(settings: dict) -> int:
    """The decoder version a stored reply was made with (turns stored before versions were recorded:
    1 when their settings name no sampler, else 2)."""
    return int(settings.get("decoder_version", 2 if "sampler" in settings else 1))


class ModelCache:
    """Loads each stored model once, after checking its files still have the checksum stored with the replies.

    Args:
        log: receives one line per model loaded.
        loaded: models already in memory, by checksum: (checkpoint, generator) (a server's own model,
            whose replies must run on its inference thread).
        load_others: load stored models that are not in `loaded` (False: report them instead).
    """

    def __init__(self, log: Callable[[str], None] = lambda line: None, loaded: dict | None = None, load_others: bool = True):
        self.log = log
        self._checkpoints: dict[int, object] = {}  # model id → Checkpoint, or the problem as a string
        self._responders: dict[tuple[int, int], object] = {}
        self._loaded = dict(loaded or {})
        self._load_others = load_others

    def checkpoint(self, record: ModelRecord):
        """The loaded checkpoint, or a string saying why the stored model cannot be used."""
        if record.id not in self._checkpoints:
            if record.checksum in self._loaded:
                self._checkpoints[record.id] = self._loaded[record.checksum][0]
            elif not self._load_others:
                self._checkpoints[record.id] = (
                    f"made by model {record.name} ({record.checksum}), which is not the one served here; "
                    "`chatbot replay --regenerate ID` regenerates it"
                )
            else:
                self._checkpoints[record.id] = self._load(record)
        return self._checkpoints[record.id]

    def _load(self, record: ModelRecord):
        from chatbot.inference.checkpoint import load_checkpoint, model_checksum

        where = f"model {record.name} ({record.checksum}) at {record.path}"
        try:
            checksum = model_checksum(Path(record.path))
        except OSError:
            return f"{where} is missing; restore it there (or compare against another with --model DIR)"
        if checksum != record.checksum:
            return f"{where} has changed since (its checksum is now {checksum}); restore the original to regenerate"
        try:
            checkpoint = load_checkpoint(record.path)
        except CheckpointError as exc:
            return f"{where} cannot be loaded: {exc}"
        self.log(f"loaded {where}")
        return checkpoint

    def responder(self, checkpoint, context_turns: int):
        """A Responder for `checkpoint` with this context window (built once per pair)."""
        from chatbot.inference.responder import Responder

        key = (id(checkpoint), context_turns)
        if key not in self._responders:
            generator = self._loaded.get(checkpoint.model_id, (None, None))[1]
            if generator is not None and context_turns > generator.context_shape[0]:
                generator = None  # a wider window than the loaded generator's: a generator of its own
            self._responders[key] = Responder(checkpoint, context_turns, generator)
        return self._responders[key]


@dataclasses.dataclass(frozen=True)
class Regenerated:
    """One stored bot turn, re-run.

    Attributes:
        turn: the stored turn.
        text: the regenerated reply; None when it could not be regenerated.
        problem: why not (the model is missing or changed, no settings stored, ...), or a note.
    """

    turn: Turn
    text: str | None
    problem: str | None = None

    @property
    def identical(self) -> bool:
        """The same reply; whitespace runs count as one space (older stored replies kept the decoder's spacing)."""
        return self.text is not None and self.text.split() == self.turn.text.split()


def regenerate(
    store: ConversationStore, conversation_id: int, models: ModelCache | None = None, all_branches: bool = False
) -> list[Regenerated]:
    """Re-run every bot turn on the active path (or, with `all_branches`, in the whole tree) with its
    stored model, settings, seed and history.

    Each reply sees the turns before it on its own branch (the last `context_turns` of them)
    and is generated with the candidate count, pick, seed and decoder settings stored with it.

    Raises:
        ConversationNotFoundError: unknown conversation.
    """
    store.get_conversation(conversation_id)
    turns = store.tree(conversation_id) if all_branches else store.turns(conversation_id)
    by_id = {turn.id: turn for turn in turns}
    records = store.models()
    models = models or ModelCache()
    results: list[Regenerated] = []
    for turn in turns:
        if turn.speaker != "bot":
            continue
        history: list[str] = []
        parent = by_id.get(turn.parent_id) if turn.parent_id is not None else None
        while parent is not None:
            history.append(parent.text)
            parent = by_id.get(parent.parent_id) if parent.parent_id is not None else None
        history.reverse()
        settings = decoding_of(turn)
        record = records.get(turn.model_id) if turn.model_id is not None else None
        if record is None or turn.seed is None or not settings:
            results.append(Regenerated(turn, None, "no model, seed or settings stored with this reply"))
            continue
        checkpoint = models.checkpoint(record)
        if isinstance(checkpoint, str):
            results.append(Regenerated(turn, None, checkpoint))
            continue
        version = stored_decoder_version(settings)
        note = None
        if version != DECODER_VERSION:
            note = f"made by decoder version {version}; this chatbot has version {DECODER_VERSION}, so it may differ"
        context_turns = int(settings.get("context_turns") or checkpoint.model_config.max_turns - 1)
        responder = models.responder(checkpoint, context_turns)
        decoding = DecodingConfig.from_dict(settings)
        chosen = int(settings.get("chosen", 0))

        texts = responder.candidates(history, decoding, turn.seed).texts
        text = texts[min(chosen, len(texts) - 1)]
        # One run regenerates a reply made on either path: they give the same tokens (tests/test_seed_paths.py).
        # Before issue 27's fix the eager path, which answers while a setting's graphs compile, drew other random
        # numbers, so a sampled reply stored with `compiled: false` (or, older, with no path) may not come back.
        sampled = decoding.sampler not in ("greedy", "beam")
        if note is None and sampled and settings.get("compiled") is not True and text.split() != turn.text.split():
            made = "made on the eager path" if settings.get("compiled") is False else "made before replies stored their path"
            note = f"{made}; before issue 27's fix the eager path drew other random numbers than the compiled one"
        results.append(Regenerated(turn, text, note))
    return results


def regeneration_lines(conversation: Conversation, results: list[Regenerated]) -> list[str]:
    """One line per bot turn (two when the reply differs) and a summary line."""
    lines = [f"conversation {conversation.id} · {conversation.title or '(untitled)'} · regenerating {len(results)} bot turns"]
    for result in results:
        number = f"{result.turn.position + 1}{'' if result.turn.active else ' (off the active path)'}"
        if result.text is None:
            lines.append(f"{number}. CANNOT REGENERATE  {result.problem}")
            continue
        note = f"  ({result.problem})" if result.problem else ""
        if result.identical:
            lines.append(f"{number}. identical  bot: {result.turn.text}{note}")
        else:
            lines.append(f"{number}. DIFFERS    stored: {result.turn.text}{note}")
            lines.append(f"{' ' * len(number)}             now:    {result.text}")
    same = sum(r.identical for r in results)
    missing = sum(r.text is None for r in results)
    summary = f"{same} of {len(results)} replies identical"
    if missing:
        summary += f", {missing} could not be regenerated"
    lines.append(summary)
    return lines


# --- comparison against another model or settings -------------------------


@dataclasses.dataclass(frozen=True)
class Compared:
    """A stored bot turn beside the reply the other model or settings give to the same history."""

    conversation_id: int
    turn: Turn
    history: list[str]  # the stored texts before the reply, oldest first
    text: str
    seed: int

    @property
    def identical(self) -> bool:
        return self.text == self.turn.text


def compare(
    store: ConversationStore,
    conversation_ids: list[int] | None,
    responder_for: Callable[[Conversation], Responder],
    decoding: DecodingConfig,
    seed: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[tuple[Conversation, list[Compared]]]:
    """Answer every stored history of the conversations (None: all) with `decoding` and the
    Responder `responder_for` gives for each conversation (raising ChatbotError when it has none).

    Each reply uses the stored turn's seed unless `seed` is given, so a change of
    settings alone is compared on equal terms.

    Raises:
        ConversationNotFoundError: an id is unknown (checked before any generation).
    """
    paths = list(store.active_paths(conversation_ids))
    results = []
    for conversation, path in paths:
        responder = None
        rows = []
        for index, turn in enumerate(path):
            if turn.speaker != "bot" or index == 0:
                continue
            history = [t.text for t in path[:index]]
            turn_seed = seed if seed is not None else (turn.seed or 0)
            responder = responder or responder_for(conversation)
            candidates = responder.candidates(history, decoding, turn_seed)
            rows.append(Compared(conversation.id, turn, history, candidates.texts[0], turn_seed))
        log(f"conversation {conversation.id}: {len(rows)} replies compared")
        results.append((conversation, rows))
    return results


def comparison_summary(results: list[tuple[Conversation, list[Compared]]]) -> dict:
    """Mean reply length (words), distinct-2 of the stored and the new replies, and the share identical."""
    from chatbot.evaluation.metrics import distinct_n, mean_length, words

    rows = [row for _, compared in results for row in compared]
    stored = [words(row.turn.text) for row in rows]
    new = [words(row.text) for row in rows]
    return {
        "conversations": len(results),
        "replies": len(rows),
        "stored": {"mean_length_words": mean_length(stored) if rows else 0.0, "distinct_2": distinct_n(stored, 2)},
        "new": {"mean_length_words": mean_length(new) if rows else 0.0, "distinct_2": distinct_n(new, 2)},
        "identical_share": sum(row.identical for row in rows) / len(rows) if rows else 0.0,
    }


def summary_lines(summary: dict) -> list[str]:
    return [
        f"{summary['replies']} replies in {summary['conversations']} conversations · identical {summary['identical_share']:.1%}",
        f"  stored: mean length {summary['stored']['mean_length_words']:.1f} words · distinct-2 {summary['stored']['distinct_2']:.3f}",
        f"  new:    mean length {summary['new']['mean_length_words']:.1f} words · distinct-2 {summary['new']['distinct_2']:.3f}",
    ]


def comparison_lines(results: list[tuple[Conversation, list[Compared]]], label: str) -> list[str]:
    """Turn by turn: the user's last message, the stored reply and the new one."""
    lines = [f"comparing stored replies with {label}"]
    for conversation, rows in results:
        lines.append("")
        lines.append(f"conversation {conversation.id} · {conversation.title or '(untitled)'}")
        for row in rows:
            mark = "=" if row.identical else "≠"
            lines.append(f"{row.turn.position + 1}. you:    {row.history[-1]}")
            lines.append(f"   stored: {row.turn.text}")
            lines.append(f"   new {mark}  {row.text}")
    return lines


def comparison_report(results, label: str, decoding: DecodingConfig, models: dict[int, ModelRecord]) -> dict:
    """The comparison as JSON-ready data (what `--format json` writes)."""
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "against": label,
        "decoding": decoding.to_dict(),
        "summary": comparison_summary(results),
        "conversations": [
            {
                "id": conversation.id,
                "title": conversation.title,
                "turns": [
                    {
                        "turn": row.turn.position + 1,
                        "context": row.history,
                        "stored": {
                            "text": row.turn.text,
                            "model": getattr(models.get(row.turn.model_id), "name", None),
                            "decoding": decoding_of(row.turn),
                            "seed": row.turn.seed,
                        },
                        "new": {"text": row.text, "seed": row.seed},
                        "identical": row.identical,
                    }
                    for row in rows
                ],
            }
            for conversation, rows in results
        ],
    }


# --- `chatbot replay` ------------------------------------------------------
