"""Reports of the evaluation wing: `chatbot replay --format md|json` comparisons and the `chatbot eval` table."""

from __future__ import annotations

import json
from pathlib import Path

from chatbot.dialogue.export import private_output
from chatbot.inference.decoding import describe


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
    """One row per model, named by its label and architecture (`hred-chitchat (hred)`): perplexity, the
    context probe (perplexity with contexts shuffled across dialogues and its gain in nats per token),
    reply metrics, training time and throughput (rich table)."""
    from rich.console import Console
    from rich.table import Table

    from chatbot.evaluation.evaluate import row_title

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
            row_title(row),
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
