"""Many writers on one SQLite conversation database: throughput, failures and what survives.

N processes write for S seconds into one database through ConversationStore, as N chats would:
each starts conversations and appends user/bot turns to them, and every process also appends to
one shared conversation (two REPLs on one conversation, N times over). Each process records
every turn it saw committed. Afterwards the database must hold exactly those turns, every active
path must have positions 0..n-1 with no gap or duplicate, and `PRAGMA integrity_check` must say ok.

    python benchmarks/store_concurrency.py [--processes 8] [--seconds 60] [--db PATH]

Prints one line per process, the totals and the checks; exits 1 if a check fails.
What two writers on one conversation get: both turns are kept, in commit order (each append
locks the conversation and goes after its current last turn), so each chat's next context
includes the other's turns.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHARED = 1  # the conversation every process appends to


def writer(url: str, seconds: float, index: int, results) -> None:
    from chatbot.errors import StorageError
    from chatbot.storage import ConversationStore

    store = ConversationStore(url)
    committed: list[int] = []
    failures: Counter = Counter()
    deadline = time.monotonic() + seconds
    conversation = None
    step = 0
    while time.monotonic() < deadline:
        try:
            if conversation is None or step % 10 == 0:
                conversation = store.create_conversation().id
            speaker = "user" if step % 2 == 0 else "bot"
            committed.append(store.add_turn(conversation, speaker, f"process {index} step {step}").id)
            if step % 5 == 0:
                committed.append(store.add_turn(SHARED, "user", f"process {index} shared {step}").id)
        except StorageError as exc:
            failures[str(exc).split(": ", 1)[-1][:60]] += 1
        step += 1
    store.close()
    results.put((index, committed, dict(failures)))


def check(path: Path, committed: set[int]) -> list[str]:
    problems = []
    with sqlite3.connect(path) as connection:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            problems.append(f"integrity_check: {verdict}")
        stored = {row[0] for row in connection.execute("SELECT id FROM turns")}
        if stored != committed:
            problems.append(f"{len(committed - stored)} committed turns missing, {len(stored - committed)} unexpected")
        paths: dict[int, list[int]] = {}
        for conversation, position in connection.execute("SELECT conversation_id, position FROM turns WHERE active ORDER BY 1, 2"):
            paths.setdefault(conversation, []).append(position)
        broken = [c for c, positions in paths.items() if positions != list(range(len(positions)))]
        if broken:
            problems.append(f"{len(broken)} conversations with gaps or duplicate positions, e.g. {broken[:3]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--db", help="database file (default: a new one in a temporary folder)")
    args = parser.parse_args()

    from chatbot.storage import ConversationStore

    folder = None if args.db else tempfile.TemporaryDirectory(prefix="chatbot-concurrency-")
    path = Path(args.db) if args.db else Path(folder.name) / "chat.db"  # type: ignore[union-attr]
    url = f"sqlite:///{path}"
    store = ConversationStore(url)
    shared = store.create_conversation()
    assert shared.id == SHARED, "use a new database"
    store.close()

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=writer, args=(url, args.seconds, i, results)) for i in range(args.processes)]
    started = time.monotonic()
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    wall = time.monotonic() - started

    print(
        f"store concurrency: {args.processes} processes × {args.seconds:g} s, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    )
    committed: set[int] = set()
    failures: Counter = Counter()
    for index, turns, failed in sorted(outcomes):
        committed.update(turns)
        failures.update(failed)
        print(f"  process {index}: {len(turns):6d} turns committed, {sum(failed.values())} failures")
    print(f"total: {len(committed)} turns in {wall:.1f} s = {len(committed) / wall:.0f} turns/s; failures: {dict(failures) or 0}")
    problems = check(path, committed)
    print("checks: " + ("every committed turn stored, positions gap-free, integrity ok" if not problems else "; ".join(problems)))
    if folder is not None:
        folder.cleanup()
    return 1 if problems or failures else 0


if __name__ == "__main__":
    sys.exit(main())
