"""Many chats writing to one conversation database at once: turns per second, commit latency, errors, what survives.

N processes (for each N in --processes) run conversations for --seconds through the real
`chatbot.dialogue.manager.DialogueManager`, as N chat sessions would: each starts conversations and
runs exchanges through `DialogueManager.answer`, the one reply path of every front end (wait
for the conversation's turn, store the message, generate, store the reply); every fifth
exchange it also has one in a conversation shared by all processes (N REPLs or requests on
one conversation, answered one at a time). The replies come from the scripted model of
`chatbot.inference.scripted` (row `sum of the context's piece ids mod 5` of its fixed table),
its rule applied in NumPy so that the chat processes load no TensorFlow: the time is the
manager's and the database's, not a model's. An exchange's
latency is the wall time of one `answer` call (a ticket, two commits, and the wait for a
busy shared conversation). Every process records each turn it saw committed; afterwards
every conversation must hold exactly those turns in that order (the shared one: all of
them, each process's in its order, every reply right after its message), at positions
0..n-1 with no gap or duplicate, every reply what the scripted model answers to the history
before it (`expected_reply`), and SQLite's `PRAGMA integrity_check` must say ok.

    python benchmarks/store_concurrency.py [--db URL] [--processes 1,4,16] [--seconds 10] [--json PATH]

--db: any SQLAlchemy URL (default: a new SQLite file in a temporary folder; for PostgreSQL an
empty database, e.g. from `bin/postgres-server start`). All runs write into it; each run checks
its own conversations. Prints the machine, one row per process count and the checks; exits 1
if a check fails or a write failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run

MESSAGES = ("hi, how are you doing today?", "do you like music or books?", "tell me something about yourself.", "i am doing well, and you?")
EXCHANGES_PER_CONVERSATION = 5
SHARED_EVERY = 5  # exchanges between two messages to the shared conversation


@dataclasses.dataclass(frozen=True)
class ScriptedCandidate:  # the fields of chatbot.inference.generation.Candidate that the manager reads
    token_ids: tuple[int, ...]
    log_probability: float = 0.0
    score: float = 0.0
    ended: bool = True
    compiled: bool = False


@dataclasses.dataclass(frozen=True)
class Scripted:
    """What a chat process needs of `chatbot.inference.scripted.scripted_checkpoint`, without TensorFlow:
    its tokenizer, model config and id, its ScriptedModel's reply table (token ids, no EOS), and the
    turns a reply's generator reads (the responder hands it more: earlier replies for n-gram blocking)."""

    tokenizer_proto: bytes
    model_config: object
    model_id: str
    replies: tuple[tuple[int, ...], ...]
    context_turns: int


def scripted(checkpoint) -> Scripted:
    """The Scripted of a `scripted_checkpoint`."""
    from chatbot.inference.responder import default_context_turns
    from chatbot.text.tokenizer import EOS_ID

    table = checkpoint.model.table.numpy()  # (R, P): each reply, then EOS to the table's width
    replies = tuple(tuple(int(t) for t in row[: list(row).index(EOS_ID)]) for row in table)
    turns = default_context_turns(checkpoint)
    return Scripted(checkpoint.tokenizer.model_proto, checkpoint.model_config, checkpoint.model_id, replies, turns)


class ScriptedGenerator:
    """A ReplyGenerator answering what ScriptedModel answers: row `sum of the piece ids of the context's
    last `context_turns` turns (what the real generator's encoder reads) mod R`."""

    def __init__(self, replies: tuple[tuple[int, ...], ...], context_turns: int):
        self.replies = replies
        self.context_turns = context_turns

    def candidates(self, context_tokens, decoding, seed, eager=False):
        from chatbot.text.tokenizer import EOS_ID

        read = context_tokens[:, -self.context_turns :]
        total = int(read[read > EOS_ID].sum())
        return [ScriptedCandidate(self.replies[total % len(self.replies)])] * decoding.num_return_sequences


def session(url: str, model: Scripted, seconds: float, index: int, shared: int, ready, start, results) -> None:
    """One chat process: converse until `seconds` after `start`; put (index, {conversation: [turn ids]}, latencies, errors)."""
    from chatbot.config import TrainConfig
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.errors import ChatbotError
    from chatbot.inference.checkpoint import Checkpoint
    from chatbot.inference.decoding import DecodingConfig
    from chatbot.storage import ConversationStore
    from chatbot.text.tokenizer import Tokenizer

    checkpoint = Checkpoint(Path("scripted"), None, Tokenizer(model.tokenizer_proto), model.model_config, TrainConfig(), model.model_id)
    manager = DialogueManager(ConversationStore(url), checkpoint, generator=ScriptedGenerator(model.replies, model.context_turns))
    decoding = DecodingConfig(sampler="greedy")
    committed: dict[int, list[int]] = {}
    latencies: list[float] = []
    errors: Counter = Counter()

    def timed(call, *args):
        started = time.perf_counter()
        exchange = call(*args)
        latencies.append((time.perf_counter() - started) * 1000.0)
        return exchange

    ready.put(index)
    start.wait()
    deadline = time.monotonic() + seconds
    step = 0
    conversation = 0
    while time.monotonic() < deadline:
        try:
            if step % EXCHANGES_PER_CONVERSATION == 0:
                conversation = manager.start().id
                committed[conversation] = []
            text = f"{MESSAGES[step % len(MESSAGES)]} ({index}/{step})"
            exchange = timed(manager.answer, conversation, text, decoding, step)
            committed[conversation] += [exchange.user_turn.id, exchange.reply.id]
            if step % SHARED_EVERY == 0:
                exchange = timed(manager.answer, shared, f"process {index} step {step}", decoding, step)
                committed.setdefault(shared, []).extend([exchange.user_turn.id, exchange.reply.id])
        except ChatbotError as exc:
            errors[str(exc).split(": ", 1)[-1][:80]] += 1
        step += 1
    manager.close()
    results.put((index, committed, latencies, dict(errors)))


def reporting_session(*args) -> None:
    """`session`, with a failure sent to the parent (this process's stderr is the parent's silenced fd 2)."""
    ready, results = args[5], args[7]
    try:
        session(*args)
    except BaseException:
        failure = f"chat process {args[3]} failed:\n{traceback.format_exc()}"
        ready.put(failure)
        results.put(failure)
        raise


def received(queue, timeout: float):
    """The next item from a chat process; a failure it reported ends the run with its traceback."""
    item = queue.get(timeout=timeout)
    if isinstance(item, str):
        raise SystemExit(item)
    return item


def check(url: str, committed: dict[int, list[list[int]]], shared: int, checkpoint) -> list[str]:
    """What is wrong with the stored turns of these conversations (each: one id list per process that wrote
    to it); `checkpoint`: the `scripted_checkpoint` whose answers the replies must be."""
    from chatbot.inference.scripted import expected_reply
    from chatbot.storage import ConversationStore

    store = ConversationStore(url)
    problems = []
    for conversation, per_process in committed.items():
        turns = store.turns(conversation)
        ids = [t.id for t in turns]
        texts = [t.text for t in turns]
        wrong = [t.id for i, t in enumerate(turns) if t.speaker == "bot" and t.text != expected_reply(checkpoint, texts[:i])]
        if wrong:
            problems.append(f"conversation {conversation}: replies {wrong[:5]} are not what the scripted model answers")
        if [t.position for t in turns] != list(range(len(turns))):
            problems.append(f"conversation {conversation}: positions {[t.position for t in turns][:10]}… not 0..n-1")
        if conversation != shared and ids != per_process[0]:
            problems.append(f"conversation {conversation}: stored {ids[:6]}…, committed {per_process[0][:6]}…")
        if conversation == shared:
            if sorted(ids) != sorted(i for one in per_process for i in one):
                problems.append(f"shared conversation: {len(ids)} turns stored, {sum(map(len, per_process))} committed")
            for one in per_process:
                wanted = set(one)
                if [i for i in ids if i in wanted] != one:
                    problems.append("shared conversation: a process's turns are out of its order")
                for message, reply in zip(one[::2], one[1::2], strict=True):
                    if message in ids and ids.index(message) + 1 != ids.index(reply):
                        problems.append(f"shared conversation: reply {reply} does not follow its message {message}")
                        break
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as connection:
            verdict = connection.exec_driver_sql("PRAGMA integrity_check").scalar()
        if verdict != "ok":
            problems.append(f"integrity_check: {verdict}")
    store.close()
    return problems


def run(url: str, checkpoint, processes: int, seconds: float) -> dict:
    from chatbot.storage import ConversationStore

    store = ConversationStore(url)
    shared = store.create_conversation().id
    store.close()
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    model = scripted(checkpoint)
    workers = [  # daemons: a run that stops on one process's failure does not wait for the others
        context.Process(target=reporting_session, args=(url, model, seconds, i, shared, ready, start, results), daemon=True)
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        received(ready, 300)
    started = time.monotonic()
    start.set()
    outcomes = [received(results, seconds + 300) for _ in workers]
    wall = time.monotonic() - started
    for worker in workers:
        worker.join()
    committed: dict[int, list[list[int]]] = {}
    latencies: list[float] = []
    errors: Counter = Counter()
    for _, turns, latency, failed in sorted(outcomes, key=lambda o: o[0]):
        for conversation, ids in turns.items():
            committed.setdefault(conversation, []).append(ids)
        latencies.extend(latency)
        errors.update(failed)
    problems = check(url, committed, shared, checkpoint)
    total = sum(len(ids) for lists in committed.values() for ids in lists)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99 if latencies else [0.0] * 99
    return {
        "processes": processes,
        "seconds": round(wall, 2),
        "turns": total,
        "turns_per_second": round(total / wall, 1),
        "exchange_ms_p50": round(cuts[49], 2),
        "exchange_ms_p99": round(cuts[98], 2),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "conversations": len(committed),
        "problems": problems,
    }


def describe(url: str) -> dict:
    from sqlalchemy import text

    from chatbot.storage import ConversationStore

    store = ConversationStore(url)
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            database = f"SQLite {sqlite3.sqlite_version} (WAL, BEGIN IMMEDIATE)"
        else:
            database = str(connection.execute(text("SELECT version()")).scalar()).split(" on ")[0] + " (row lock per conversation)"
    where = store.where
    store.close()
    return {
        "database": database,
        "url": where,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLAlchemy URL (default: a new SQLite file in a temporary folder)")
    parser.add_argument("--processes", default="1,4,16", help="comma-separated process counts, one run each (default 1,4,16)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    counts = [int(part) for part in str(args.processes).split(",") if part.strip()]
    folder = None if args.db else tempfile.TemporaryDirectory(prefix="chatbot-concurrency-")
    url = args.db or f"sqlite:///{Path(folder.name) / 'chat.db'}"  # type: ignore[union-attr]
    from chatbot.inference.scripted import scripted_checkpoint  # TensorFlow: here only, not in the chat processes

    checkpoint = scripted_checkpoint(Path("scripted"))
    about = describe(url)
    print(f"store concurrency: {about['database']}; {about['machine']}")
    print(f"  each process: chats through DialogueManager (scripted model), {args.seconds:g} s per run")
    print(f"  {'processes':>9} {'turns':>7} {'turns/s':>8} {'exchange p50 ms':>16} {'exchange p99 ms':>16} {'errors':>7}  check")
    runs = []
    for count in counts:
        result = run(url, checkpoint, count, args.seconds)
        runs.append(result)
        verdict = "ok" if not result["problems"] else "; ".join(result["problems"][:3])
        print(
            f"  {count:>9} {result['turns']:>7} {result['turns_per_second']:>8.0f} {result['exchange_ms_p50']:>16.2f} "
            f"{result['exchange_ms_p99']:>16.2f} {result['errors']:>7}  {verdict}"
        )
        if result["error_kinds"]:
            print(f"            errors: {result['error_kinds']}")
    failures = sum(r["errors"] for r in runs)
    problems = [p for r in runs for p in r["problems"]]
    integrity = ", integrity ok" if url.startswith("sqlite") else ""
    print(f"total: {sum(r['turns'] for r in runs)} turns; failures: {failures}")
    passed = f"every committed turn stored, positions gap-free{integrity}; every reply the scripted model's"
    print("checks: " + (passed if not problems else "; ".join(problems[:5])))
    if args.json:
        Path(args.json).write_text(json.dumps({**about, "seconds_per_run": args.seconds, "runs": runs}, indent=2) + "\n")
    if folder is not None:
        folder.cleanup()
    return 1 if problems or failures else 0


if __name__ == "__main__":
    _common.run(main)
