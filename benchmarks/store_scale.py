"""Conversation store at scale: `chatbot sessions list` and `chatbot replay ID` with 100,000 stored turns.

Goals (median wall time of the real command, as a person at a terminal runs it):

  sessions list   `chatbot sessions list` answers in under 200 ms;
  replay          `chatbot replay ID` (no regeneration) prints a 5,000-turn conversation in under 1 s.

Run:  .venv/bin/python benchmarks/store_scale.py [--runs 5] [--turns 100000] [--big-turns 5000]
                                                 [--turns-per-conversation 100] [--output FILE.json]

How: a fresh SQLite database in a temporary folder is created by
`chatbot.storage.ConversationStore` (so it has the real schema, migrations and
indexes) and filled in one transaction with SQLAlchemy Core bulk inserts: one
model, one conversation of --big-turns turns (id 1) and conversations of
--turns-per-conversation turns up to --turns active turns in all. Turns alternate
user/bot, hold 5-20 words from a seeded word list, and form a chain (parent_id =
the previous turn, position 0..n-1, active); bot turns carry the model, decoding
JSON, seed and latency. The big conversation and --branched other conversations
also get --alternatives inactive siblings each (a /retry's replaced replies), so
the replay's branch-marking path runs; those rows come on top of --turns.

Then, after one untimed warm-up run of each command, it times --runs runs each,
wall clock from spawn until exit, stdout read fully through a pipe (so printing
is included):

  python -m chatbot sessions list --db URL   (checked: exit 0, a line per listed conversation)
  python -m chatbot replay 1 --db URL        (checked: exit 0, at least --big-turns lines)

and, to show where that time goes, in the same run:

  python -c pass                      bare interpreter start
  python -c "import chatbot.cli.parser"      what the parser needs
  python -c "import chatbot.chat.views"   what both commands import before touching the database
  store.list_conversations(50)        in-process, store already open
  store.turns(1), store.alternatives_on_path(1)    in-process, each on its own
  store.tree(1)                       in-process, where the store has it (replay reads it too
                                      when the path has alternatives)

It prints median and min milliseconds per row, the goals and whether the median
meets them, and writes JSON (machine, layout, database size, fill time, runs) to
--output (default benchmarks/results/store_scale.json). Stdlib and SQLAlchemy only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run

from chatbot.storage import TITLE_LENGTH, Conversation, ConversationStore, ModelRecord, Turn

ROOT = _common.REPO

GOALS_MS = {"sessions list": 200.0, "replay": 1000.0}
WORDS = (
    "i you we they it the a an and but so because what how why where when is are was were do did have has "
    "can could would will should not really very just maybe sure okay yes no hello hi thanks please sorry "
    "good great fine bad weather today tomorrow weekend movie music book game coffee tea dinner lunch work "
    "school friend family dog cat trip city beach park morning night time week year idea plan question "
    "think know like love want need feel see hear say tell go come make take try watch read play eat drink"
).split()
DECODING = json.dumps({"sampler": "top_p", "temperature": 0.8, "top_p": 0.9, "max_reply_tokens": 40})


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(5, 20))]
    return " ".join(words).capitalize() + rng.choice((".", "?", "!", "."))


def title_of(text: str) -> str:
    """As ConversationStore.add_turn titles a conversation: the first user message, cut to TITLE_LENGTH."""
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def fill(store: ConversationStore, args) -> dict:
    """Bulk-insert the layout described in the module docstring; returns its counts."""
    rng = random.Random(args.seed)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    sizes = [args.big_turns]
    left = args.turns - args.big_turns
    while left > 0:
        sizes.append(min(args.turns_per_conversation, left))
        left -= sizes[-1]
    branched = {1} | set(rng.sample(range(2, len(sizes) + 1), min(args.branched, len(sizes) - 1)))

    model = {
        "id": 1,
        "checksum": f"{rng.getrandbits(64):016x}",
        "name": "hred-chitchat",
        "path": "storage/models/hred-chitchat",
        "config": "{}",
        "created_at": start,
    }
    conversations, turns, alternatives = [], [], []
    turn_id = 0
    clock = start
    for conversation_id, size in enumerate(sizes, start=1):
        clock += dt.timedelta(minutes=rng.randint(5, 600))
        conversation_start = clock
        chain = []
        for position in range(size):
            turn_id += 1
            clock += dt.timedelta(seconds=rng.randint(2, 40))
            bot = position % 2 == 1
            row = {
                "id": turn_id,
                "conversation_id": conversation_id,
                "parent_id": turn_id - 1 if position else None,
                "position": position,
                "active": True,
                "speaker": "bot" if bot else "user",
                "text": sentence(rng),
                "created_at": clock,
                "model_id": 1 if bot else None,
                "decoding": DECODING if bot else None,
                "seed": rng.randrange(2**31) if bot else None,
                "latency_ms": round(rng.uniform(15, 90), 1) if bot else None,
            }
            chain.append(row)
        turns.extend(chain)
        conversations.append({"id": conversation_id, "title": title_of(chain[0]["text"]), "created_at": conversation_start, "model_id": 1})
        if conversation_id in branched:
            bot_turns = [row for row in chain if row["speaker"] == "bot"]
            for replaced in rng.sample(bot_turns, min(args.alternatives, len(bot_turns))):
                alternatives.append({**replaced, "active": False, "text": sentence(rng), "seed": rng.randrange(2**31)})
    for row in alternatives:  # ids after every active turn
        turn_id += 1
        row["id"] = turn_id

    with store.engine.begin() as connection:
        connection.execute(ModelRecord.__table__.insert(), [model])
        connection.execute(Conversation.__table__.insert(), conversations)
        connection.execute(Turn.__table__.insert(), turns)
        if alternatives:
            connection.execute(Turn.__table__.insert(), alternatives)
    with store.engine.connect() as connection:  # fold the WAL into the file: its size is then the database's
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    big_alternatives = sum(1 for row in alternatives if row["conversation_id"] == 1)
    return {
        "conversations": len(conversations),
        "active_turns": len(turns),
        "alternative_turns": len(alternatives),
        "stored_turns": len(turns) + len(alternatives),
        "big_conversation_id": 1,
        "big_conversation_turns": args.big_turns,
        "big_conversation_alternatives": big_alternatives,
    }


def run_command(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    """Wall milliseconds from spawn to exit, with stdout and stderr read fully through pipes."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return (time.perf_counter() - start) * 1000.0, done


def time_command(argv, env, runs, timeout, check=None) -> list[float]:
    """`runs` timings after one untimed warm-up; every run must exit 0 and pass `check(stdout)`."""
    times = []
    for i in range(runs + 1):
        ms, done = run_command(argv, env, timeout)
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(argv[2:])} exited {done.returncode}:\n{done.stderr[-2000:]}")
        if check is not None:
            problem = check(done.stdout)
            if problem:
                raise SystemExit(f"error: {' '.join(argv[2:])}: {problem}")
        if i:
            times.append(ms)
    return times


def time_call(function, runs: int) -> list[float]:
    function()  # warm-up: compiles the statement and fills SQLAlchemy's caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    parser.add_argument("--turns", type=int, default=100_000, help="active turns stored in all (default 100000)")
    parser.add_argument("--big-turns", type=int, default=5_000, help="turns of the conversation replayed (default 5000)")
    parser.add_argument("--turns-per-conversation", type=int, default=100, help="turns of every other conversation (default 100)")
    parser.add_argument("--branched", type=int, default=10, help="other conversations given alternatives (default 10)")
    parser.add_argument("--alternatives", type=int, default=2, help="inactive alternative replies per branched conversation (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated texts (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per command run (default 120)")
    parser.add_argument("--keep", metavar="DIR", help="build the database in DIR and keep it (default: a temporary folder)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "store_scale.json"), help="JSON results file")
    args = parser.parse_args()
    if not 0 < args.big_turns <= args.turns:
        parser.error("need 0 < --big-turns <= --turns")

    with tempfile.TemporaryDirectory(prefix="chatbot-store-scale-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "store_scale.db"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        env = {**os.environ, "CHATBOT_HOME": str(folder), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

        store = ConversationStore(url)
        started = time.perf_counter()
        layout = fill(store, args)
        fill_s = time.perf_counter() - started
        store.close()
        size_mb = sum(p.stat().st_size for p in folder.glob(path.name + "*")) / 1e6
        big = layout["big_conversation_id"]
        print(
            f"filled {path}: {layout['stored_turns']:,} turns ({layout['alternative_turns']} inactive alternatives) "
            f"in {layout['conversations']:,} conversations, {size_mb:.1f} MB, in {fill_s:.2f} s",
            flush=True,
        )

        python = [sys.executable]
        rows: dict[str, list[float]] = {}
        rows["python -c pass"] = time_command(python + ["-c", "pass"], env, args.runs, args.timeout)
        rows["import chatbot.cli.parser"] = time_command(python + ["-c", "import chatbot.cli.parser"], env, args.runs, args.timeout)
        rows["import chatbot.chat.views"] = time_command(python + ["-c", "import chatbot.chat.views"], env, args.runs, args.timeout)

        store = ConversationStore(url)
        rows["store.list_conversations(50)"] = time_call(lambda: store.list_conversations(50), args.runs)
        rows[f"store.turns({big})"] = time_call(lambda: store.turns(big), args.runs)
        rows[f"store.alternatives_on_path({big})"] = time_call(lambda: store.alternatives_on_path(big), args.runs)
        rows[f"store.tree({big})"] = time_call(lambda: store.tree(big), args.runs)  # replay reads it when the path has alternatives
        store.close()

        sessions_form = ["sessions", "list"]
        listed = min(50, layout["conversations"]) + 1

        def check_sessions(out: str) -> str | None:
            lines = out.count("\n")
            return None if lines >= listed else f"printed {lines} lines, expected at least {listed}"

        replay_lines = []

        def check_replay(out: str) -> str | None:
            lines = out.count("\n")
            replay_lines.append(lines)
            return None if lines >= args.big_turns else f"printed {lines} lines, expected at least {args.big_turns}"

        sessions_label = "chatbot " + " ".join(sessions_form)
        rows[sessions_label] = time_command(
            python + ["-m", "chatbot", *sessions_form, "--db", url], env, args.runs, args.timeout, check_sessions
        )
        rows[f"chatbot replay {big}"] = time_command(
            python + ["-m", "chatbot", "replay", str(big), "--db", url], env, args.runs, args.timeout, check_replay
        )

    goals = {sessions_label: GOALS_MS["sessions list"], f"chatbot replay {big}": GOALS_MS["replay"]}
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlalchemy": __import__("sqlalchemy").__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    summary = {
        label: {
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "goal_ms": goals.get(label),
            "met": (statistics.median(times) < goals[label]) if label in goals else None,
        }
        for label, times in rows.items()
    }

    print(
        f"\n{layout['stored_turns']:,} turns stored, {layout['conversations']:,} conversations, {size_mb:.1f} MB "
        f"(filled in {fill_s:.2f} s); {args.runs} runs each; machine: {machine['processor']}, {machine['cpus']} cpus, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}"
    )
    print(f"{'what':<40} {'median ms':>10} {'min ms':>8} {'goal ms':>8}  met?")
    for label, s in summary.items():
        goal = f"{s['goal_ms']:.0f}" if s["goal_ms"] is not None else "-"
        met = "-" if s["met"] is None else ("yes" if s["met"] else "NO")
        print(f"{label:<40} {s['median_ms']:>10.1f} {s['min_ms']:>8.1f} {goal:>8}  {met}")
    print(
        f"replay printed {replay_lines[-1]:,} lines (header, {args.big_turns:,} turns, "
        f"{layout['big_conversation_alternatives']} alternatives)"
    )

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as f:
        json.dump(
            {
                "machine": machine,
                "layout": {**layout, "turns_per_conversation": args.turns_per_conversation, "seed": args.seed},
                "database_mb": round(size_mb, 2),
                "fill_s": round(fill_s, 3),
                "sessions_command": sessions_label,
                "replay_lines": replay_lines[-1],
                "runs": args.runs,
                "timings_ms": {label: [round(t, 2) for t in times] for label, times in rows.items()},
                "summary": summary,
            },
            f,
            indent=2,
            ensure_ascii=False,
        )
        f.write("\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    _common.run(main)  # the timed commands' output is captured
