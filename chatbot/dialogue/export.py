"""Conversations as files: JSONL corpus records, Markdown and text, written owner-only.

`chatbot sessions export`, the REPL's /export and the HTTP API's ``GET …/export`` write through here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable

from chatbot.errors import StorageError
from chatbot.inference.decoding import describe
from chatbot.storage import Conversation, ConversationStore, ModelRecord, Turn, decoding_of

EXPORT_FORMATS = ("jsonl", "md", "txt")


def clock_time(value: dt.datetime, with_date: bool = False) -> str:
    """A stored (UTC) time as listings show it: ``12:00:01``, or with `with_date` ``2026-12-07 12:00:01``."""
    return value.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def model_names(models: dict[int, ModelRecord]) -> dict[int, str]:
    """``NAME (checksum prefix)`` of every model, by id."""
    return {model_id: f"{record.name} ({record.checksum[:8]})" for model_id, record in models.items()}


def export_record(conversation: Conversation, path: list[Turn], models: dict[int, ModelRecord]) -> dict:
    """One conversation's active path as a JSONL corpus record (`chatbot train --corpus FILE.jsonl` reads it).

    ``{"id": "session-N", "title", "created_at", "turns": [{"speaker": "user"|"bot", "text", "created_at", ...}]}``;
    bot turns add the model (name and checksum), decoding settings, seed and latency in milliseconds.
    """
    turns = []
    for turn in path:
        record: dict[str, object] = {"speaker": turn.speaker, "text": turn.text, "created_at": turn.created_at.isoformat()}
        if turn.speaker == "bot":
            model = models.get(turn.model_id) if turn.model_id is not None else None
            record.update(
                model=model.name if model else None,
                model_checksum=model.checksum if model else None,
                decoding=decoding_of(turn),
                seed=turn.seed,
                latency_ms=turn.latency_ms,
            )
        turns.append(record)
    return {
        "id": f"session-{conversation.id}",
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "turns": turns,
    }


def export_text(conversations: Iterable[tuple[Conversation, list[Turn]]], format: str, models: dict[int, ModelRecord]) -> Iterable[str]:
    """Chunks of text of the export in `format` (one of EXPORT_FORMATS).

    jsonl: one `export_record` per line. txt: the plain-text corpus format (one utterance per line,
    a blank line between conversations). md: a readable transcript per conversation.
    Conversations with no turns are left out.
    """
    first = True
    for conversation, path in conversations:
        if not path:
            continue
        if format == "jsonl":
            yield json.dumps(export_record(conversation, path, models), ensure_ascii=False) + "\n"
        elif format == "txt":
            yield ("" if first else "\n") + "".join(f"{turn.text}\n" for turn in path)
        else:
            title = conversation.title or "(untitled)"
            names = model_names({turn.model_id: models[turn.model_id] for turn in path if turn.model_id in models})
            used = ", ".join(sorted(set(names.values()))) or "none"
            lines = [
                f"{'' if first else chr(10)}## {conversation.id}. {title}",
                "",
                f"*started {clock_time(conversation.created_at, True)} UTC · {len(path)} turns · model {used}*",
                "",
            ]
            for turn in path:
                lines.append(f"**{turn.speaker}:** {turn.text}" + ("  " if turn.speaker == "bot" else ""))
                if turn.speaker == "bot":
                    lines.append(f"<sub>{describe(decoding_of(turn), turn.seed)}</sub>")
                lines.append("")
            yield "\n".join(lines)
        first = False


def private_output(path: str | os.PathLike):
    """Open `path` for writing text, created readable by its owner only (exports hold private conversations).

    Raises:
        StorageError: the file cannot be created.
    """
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write: {exc.strerror}") from exc
    return os.fdopen(descriptor, "w", encoding="utf-8")


def write_export(store: ConversationStore, conversation_ids: list[int] | None, format: str, output: str | None) -> int:
    """Write conversations (None: all) in `format` to `output` (None: stdout); returns how many were written.

    Raises:
        ConversationNotFoundError: an id is unknown (nothing is written).
        StorageError: the output cannot be written.
    """
    paths = list(store.active_paths(conversation_ids))
    models = store.models()
    handle = private_output(output) if output else sys.stdout
    try:
        for chunk in export_text(paths, format, models):
            handle.write(chunk)
    finally:
        if output:
            handle.close()
    return sum(1 for _, path in paths if path)
