"""Text renderings of stored conversations for the terminal: sessions, /history, /branches, transcripts.

No TensorFlow and no SQL here: everything is read through ConversationStore (the REPL's through DialogueManager).
"""

from __future__ import annotations

from chatbot.dialogue.export import clock_time, model_names
from chatbot.inference.decoding import describe
from chatbot.storage import Branch, ConversationSummary, Transcript, Turn, decoding_of


def session_lines(summaries: list[ConversationSummary], search: str | None = None) -> list[str]:
    if not summaries:
        return [f"no conversation mentions {search!r}" if search else "no conversations yet; start one with `chatbot chat`"]
    lines = [f"{'id':>5}  {'started (UTC)':<19}  {'last turn (UTC)':<19}  {'turns':>5}  {'model':<20}  title"]
    for s in summaries:
        last = clock_time(s.last_turn_at, True) if s.last_turn_at else "-"
        lines.append(
            f"{s.id:>5}  {clock_time(s.created_at, True):<19}  {last:<19}  {s.num_turns:>5}  {(s.model_name or '-'):<20}  {s.title or ''}"
        )
    return lines


def turn_line(turn: Turn, names: dict[int, str] | None = None) -> str:
    """``4. [12:00:01] bot: text  (model NAME · top-p 0.9 · temperature 0.8 · ≤40 tokens · seed 5 · 18 ms)``."""
    line = f"{turn.position + 1}. [{clock_time(turn.created_at)}] {turn.speaker}: {turn.text}"
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
        f"started {clock_time(conversation.created_at, True)} UTC · {len(turns)} turns"
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
