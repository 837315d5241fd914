"""Text renderings: stored conversations (sessions, /history, /branches, exports), replay reports, the eval table.

No TensorFlow and no SQL here: everything is read through ConversationStore (the REPL's through DialogueManager).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from chatbot.decoding import describe
from chatbot.errors import StorageError
from chatbot.storage import Branch, Conversation, ConversationStore, ConversationSummary, ModelRecord, Transcript, Turn, decoding_of

EXPORT_FORMATS = ("jsonl", "md", "txt")


def _time(value: dt.datetime, with_date: bool = False) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def session_lines(summaries: list[ConversationSummary], search: str | None = None) -> list[str]:
    if not summaries:
        return [f"no conversation mentions {search!r}" if search else "no conversations yet; start one with `chatbot chat`"]
    lines = [f"{'id':>5}  {'started (UTC)':<19}  {'last turn (UTC)':<19}  {'turns':>5}  {'model':<20}  title"]
    for s in summaries:
        last = _time(s.last_turn_at, True) if s.last_turn_at else "-"
        lines.append(
            f"{s.id:>5}  {_time(s.created_at, True):<19}  {last:<19}  {s.num_turns:>5}  {(s.model_name or '-'):<20}  {s.title or ''}"
        )
    return lines


def model_names(models: dict[int, ModelRecord]) -> dict[int, str]:
    """``NAME (checksum prefix)`` of every model, by id."""
    return {model_id: f"{record.name} ({record.checksum[:8]})" for model_id, record in models.items()}


def turn_line(turn: Turn, names: dict[int, str] | None = None) -> str:
    """``4. [12:00:01] bot: text  (model NAME · top-p 0.9 · temperature 0.8 · ≤40 tokens · seed 5 · 18 ms)``."""
    line = f"{turn.position + 1}. [{_time(turn.created_at)}] {turn.speaker}: {turn.text}"
    if turn.speaker == "bot" and (turn.model_id is not None or turn.decoding):  # (imported turns may have neither)
        model = (names or {}).get(turn.model_id, f"#{turn.model_id}") if turn.model_id is not None else "#None"
        latency = f" · {turn.latency_ms:.0f} ms" if turn.latency_ms is not None else ""
        line += f"  (model {model} · {describe(decoding_of(turn), turn.seed)}{latency})"
    return line


def branch_lines(found: list[Branch]) -> list[str]:
    """/branches: one line per branch, the active one starred."""
    lines = []
    for branch in found:
        start = 0 if branch.fork is None else branch.fork
        differs = "the active path" if branch.active else f"differs from turn {start + 1}: {_short(branch.path[start].text)}"
        last = branch.path[-1]
        lines.append(
            f"{'*' if branch.active else ' '} {branch.number}. {len(branch.path)} turns · {differs} · ends {last.speaker}: {_short(last.text)}"
        )
    return lines


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def transcript_lines(transcript: Transcript) -> list[str]:
    """Header and one line per turn of the active path; where a turn has alternatives (from /retry
    or /edit) a line says which branches hold them. When it was read with `all_branches`, every other branch
    follows, from the turn where it leaves the active path.

    Args:
        transcript: what `ConversationStore.transcript` (or `DialogueManager.transcript`) read.
    """
    conversation, turns, alternatives, found = transcript.conversation, transcript.turns, transcript.alternatives, transcript.branches
    all_branches = transcript.all_branches
    names = model_names(transcript.models)
    header = (
        f"conversation {conversation.id} · {conversation.title or '(untitled)'} · "
        f"started {_time(conversation.created_at, True)} UTC · {len(turns)} turns"
    )
    if len(found) > 1:
        header += f" · {len(found)} branches"
    lines = [header]
    holding: dict[int, list[int]] = {}  # turn id → numbers of the branches through it
    for branch in found:
        for turn in branch.path:
            holding.setdefault(turn.id, []).append(branch.number)
    for turn in turns:
        lines.append(turn_line(turn, names))
        others = alternatives.get(turn.id, [])
        if others:
            numbers = sorted({n for other in others for n in holding.get(other.id, [])})
            where = ", ".join(map(str, numbers))
            hint = "shown below" if all_branches else "`chatbot replay --all-branches` or /branches shows them"
            plural = "s" if len(others) > 1 else ""
            lines.append(f"   ↳ {len(others)} alternative{plural} here, on branch{'es' if len(numbers) > 1 else ''} {where} ({hint})")
    if all_branches:
        for branch in found:
            if branch.fork is None:  # the active branch, shown above
                continue
            lines.append("")
            lines.append(f"branch {branch.number} · leaves the active path at turn {branch.fork + 1} · {len(branch.path)} turns")
            lines.extend(f"  {turn_line(turn, names)}" for turn in branch.path[branch.fork :])
    return lines


# --- exports ------------------------------------------------------------


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
                f"*started {_time(conversation.created_at, True)} UTC · {len(path)} turns · model {used}*",
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


# --- replay reports (`chatbot replay --format`) -----------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def comparison_markdown(report: dict) -> str:
    """The comparison as Markdown: a summary table, then one table per conversation."""
    summary = report["summary"]
    lines = [
        f"# Replay comparison: stored replies vs {report['against']}",
        "",
        f"Decoding: {describe(report['decoding'])} · {report['created_at']}",
        "",
        "| replies | mean length stored (words) | mean length new | distinct-2 stored | distinct-2 new | identical |",
        "|---|---|---|---|---|---|",
        f"| {summary['replies']} | {summary['stored']['mean_length_words']:.1f} | {summary['new']['mean_length_words']:.1f} | "
        f"{summary['stored']['distinct_2']:.3f} | {summary['new']['distinct_2']:.3f} | {summary['identical_share']:.1%} |",
    ]
    for conversation in report["conversations"]:
        lines += ["", f"## Conversation {conversation['id']}: {_cell(conversation['title'] or '(untitled)')}", ""]
        lines += ["| turn | last message | stored reply | new reply | same |", "|---|---|---|---|---|"]
        for turn in conversation["turns"]:
            lines.append(
                f"| {turn['turn']} | {_cell(turn['context'][-1])} | {_cell(turn['stored']['text'])} | "
                f"{_cell(turn['new']['text'])} | {'yes' if turn['identical'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def write_report(report: dict, format: str, output: Path) -> None:
    """Write the comparison as `format` (md or json) to `output`, readable by its owner only.

    Raises:
        StorageError: the file cannot be written.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    text = comparison_markdown(report) if format == "md" else json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    with private_output(output) as handle:
        handle.write(text)


# --- `chatbot eval` table ------------------------------------------------------


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def print_eval_table(rows: list[dict]) -> None:
    """One row per model: perplexity, the context probe (perplexity with contexts shuffled across
    dialogues and its gain in nats per token), reply metrics, training time and throughput (rich table)."""
    from rich.console import Console
    from rich.table import Table

    has_bound = any(str(row["perplexity"].get("kind", "")).startswith("upper") for row in rows)
    table = Table(title=f"{rows[0]['corpus']} · {rows[0]['split']} split" + (" (≤: VHRED's ELBO bound)" if has_bound else ""))
    for header in (
        "model",
        "perplexity",
        "shuffled ctx",
        "ctx gain nats",
        "KL/reply",
        "distinct-1",
        "distinct-2",
        "tokens/reply",
        "entropy bits",
        "generic",
        "BLEU",
        "train min",
        "train tok/s",
    ):
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=True)
    for row in rows:
        ppl = row["perplexity"]
        generation = row.get("generation") or {}
        training = row.get("training") or {}
        context = row.get("context") or {}
        bound = "≤ " if ppl["kind"] != "exact" else ""
        table.add_row(
            row["architecture"],
            f"{bound}{ppl['value']:,.1f}",
            f"{bound}{context['shuffled']:,.1f}" if context else "–",
            _number(context.get("gain_over_shuffled_nats"), 3),
            _number(ppl.get("kl_nats_per_reply"), 2),
            _number(generation.get("distinct_1")),
            _number(generation.get("distinct_2")),
            _number(generation.get("mean_length_tokens"), 1),
            _number(generation.get("word_entropy_bits"), 2),
            _number(generation.get("generic_reply_rate")),
            _number(generation.get("bleu"), 2),
            _number(training["seconds"] / 60, 1) if training.get("seconds") else "–",
            _number(training.get("target_tokens_per_second"), 0),
        )
    console = Console()
    console.width = max(console.width, 200)  # a pipe reports 80 columns; keep one line per model
    console.print(table)
