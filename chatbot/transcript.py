"""Text renderings of stored conversations: `chatbot sessions`, `chatbot replay`, REPL /history."""

from __future__ import annotations

import datetime as dt
import sys

from chatbot.decoding import describe
from chatbot.manager import decoding_of
from chatbot.store import ConversationStore, ConversationSummary, Turn, open_store


def _time(value: dt.datetime, with_date: bool = False) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def session_lines(summaries: list[ConversationSummary]) -> list[str]:
    if not summaries:
        return ["no conversations yet; start one with `chatbot chat`"]
    lines = [f"{'id':>5}  {'started (UTC)':<19}  {'turns':>5}  {'model':<20}  title"]
    for s in summaries:
        lines.append(f"{s.id:>5}  {_time(s.created_at, True):<19}  {s.num_turns:>5}  {(s.model_name or '-'):<20}  {s.title or ''}")
    return lines


def turn_line(turn: Turn, model_names: dict[int, str] | None = None) -> str:
    """``[12:00:01] bot: text  (model NAME · top-p 0.9, temperature 0.8, ≤40 tokens, seed 5 · 18 ms)``."""
    line = f"[{_time(turn.created_at)}] {turn.speaker}: {turn.text}"
    if turn.speaker == "bot":
        model = (model_names or {}).get(turn.model_id, f"#{turn.model_id}")
        latency = f" · {turn.latency_ms:.0f} ms" if turn.latency_ms is not None else ""
        line += f"  (model {model} · {describe(decoding_of(turn), turn.seed)}{latency})"
    return line


def transcript_lines(store: ConversationStore, conversation_id: int) -> list[str]:
    """Header and one line per turn of the active path; a turn that replaced others (/retry)
    is followed by them, marked as alternatives. Raises ConversationNotFoundError."""
    conversation = store.get_conversation(conversation_id)
    turns = store.turns(conversation_id)
    alternatives = store.alternatives_on_path(conversation_id)
    every = turns + [a for group in alternatives.values() for a in group]
    names = {}
    for model_id in {t.model_id for t in every if t.model_id is not None} | {conversation.model_id}:
        record = store.get_model(model_id) if model_id is not None else None
        if record is not None:
            names[model_id] = f"{record.name} ({record.checksum[:8]})"
    header = (
        f"conversation {conversation.id} · {conversation.title or '(untitled)'} · "
        f"started {_time(conversation.created_at, True)} UTC · {len(turns)} turns"
    )
    lines = [header]
    for turn in turns:
        lines.append(turn_line(turn, names))
        for other in alternatives.get(turn.id, []):
            lines.append(f"    alternative (not on the path): {turn_line(other, names)}")
    return lines


def print_sessions(args) -> int:
    store = open_store(args.db)
    print("\n".join(session_lines(store.list_conversations(args.limit))))
    return 0


def print_replay(args) -> int:
    store = open_store(args.db)
    sys.stdout.write("\n".join(transcript_lines(store, args.id)) + "\n")
    return 0


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def print_eval_table(rows: list[dict]) -> None:
    """One row per model: perplexity, reply metrics, training time and throughput (rich table)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows[0]['corpus']} · {rows[0]['split']} split (≤: VHRED's ELBO bound)")
    for header in ("model", "perplexity", "distinct-1", "distinct-2", "tokens/reply", "entropy bits", "generic", "BLEU", "train min", "train tok/s"):
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=True)
    for row in rows:
        ppl = row["perplexity"]
        generation = row.get("generation") or {}
        training = row.get("training") or {}
        bound = "≤ " if ppl["kind"] != "exact" else ""
        table.add_row(
            row["architecture"],
            f"{bound}{ppl['value']:,.1f}",
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
    console.width = max(console.width, 150)  # a pipe reports 80 columns; keep one line per model
    console.print(table)
