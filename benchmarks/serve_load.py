"""Load on a real `chatbot serve`: replies per second, time to first byte, end-to-end latency, errors, and
whether every turn was stored once and in order; beside it the null-model ceiling and the in-process reply.

For each model (the shipped one, and `scripted`: the HTTP and database path with no model cost) and each
database (SQLite in a temporary folder; PostgreSQL when --postgres URL is given, e.g. a durable throwaway
server from `bin/postgres-server start --durable`), the script starts `chatbot serve` on 127.0.0.1 and runs:

- `in-process`: `DialogueManager.answer` called in this process, one reply at a time (the reply path
  without HTTP), for the p50 a served reply is compared with;
- `stream`: one client whose requests stream, for time to first byte against the whole reply;
- one worker with micro-batching (the default) at each of --clients concurrent clients;
- one worker with batching off (`--batch-window-ms 0`) at --compare-clients clients;
- two workers (`--workers 2`) at --compare-clients clients, for --long-seconds.

A client is an asyncio task with its own conversations, each five exchanges long, spoken the way the
`openai` client speaks: POST /v1/chat/completions with the whole history every time (the server finds
the stored conversation by it). Every request has a seed. Afterwards each conversation in the database
must hold exactly the messages the client sent and the replies it received, in order, once.

    python benchmarks/serve_load.py [--seconds 20] [--long-seconds 60] [--clients 1,4,16,64]
        [--models default,scripted] [--postgres URL] [--json PATH]

Prints the machine and one row per run; exits 1 if a check fails. The runs are bounded: each stops
by itself after its seconds (and a request after 120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run
import httpx

REPO = _common.REPO
MESSAGES = (
    "hi, how are you doing today?",
    "do you like music or books?",
    "tell me something about yourself.",
    "what do you do for fun?",
    "i see, and why is that?",
)
EXCHANGES = 5  # per conversation


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Client:
    """One simulated user: conversations of EXCHANGES exchanges through the Chat Completions API."""

    def __init__(self, index: int, http: httpx.AsyncClient, model: str, stream: bool):
        self.index, self.http, self.model, self.stream = index, http, model, stream
        self.tag = f"{os.getpid() % 1000}-{time.monotonic_ns() % 100_000}"  # every run's messages differ from the last run's
        self.conversations: dict[int, list[str]] = {}  # conversation id → texts sent and received, in order
        self.latencies: list[float] = []  # seconds, request to the whole reply
        self.first_bytes: list[float] = []  # seconds, request to the first byte of the response
        self.errors: list[str] = []

    async def run(self, deadline: float) -> None:
        step = 0
        while time.monotonic() < deadline:
            history: list[dict] = []
            texts: list[str] = []
            conversation = None
            for exchange in range(EXCHANGES):
                if time.monotonic() >= deadline:
                    break
                text = f"{MESSAGES[exchange % len(MESSAGES)]} ({self.tag}.{self.index}.{step})"
                history.append({"role": "user", "content": text})
                body = {"model": self.model, "messages": history, "seed": self.index * 100_000 + step, "stream": self.stream}
                step += 1
                try:
                    reply, conversation_id = await self.ask(body)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    break
                if conversation is not None and conversation_id != conversation:
                    self.errors.append(f"conversation changed from {conversation} to {conversation_id}")
                    break
                conversation = conversation_id
                history.append({"role": "assistant", "content": reply})
                texts += [text, reply]
                self.conversations[conversation] = list(texts)

    async def ask(self, body: dict) -> tuple[str, int]:
        started = time.perf_counter()
        if not self.stream:
            response = await self.http.post("/v1/chat/completions", json=body)
            self.first_bytes.append(time.perf_counter() - started)  # httpx has read the whole (small) body
            if response.status_code != 200:
                raise ValueError(f"{response.status_code} {response.text[:100]}")
            completion = response.json()
            self.latencies.append(time.perf_counter() - started)
            return completion["choices"][0]["message"]["content"], completion["conversation_id"]
        parts: list[str] = []
        conversation = None
        async with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise ValueError(f"{response.status_code} {(await response.aread())[:100]!r}")
            first = True
            async for line in response.aiter_lines():
                if first:
                    self.first_bytes.append(time.perf_counter() - started)
                    first = False
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                conversation = chunk["conversation_id"]
                parts += [choice["delta"].get("content") or "" for choice in chunk["choices"]]
        self.latencies.append(time.perf_counter() - started)
        return "".join(parts), int(conversation)


async def drive(url: str, model: str, clients: int, seconds: float, stream: bool = False) -> list[Client]:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        users = [Client(index, http, model, stream) for index in range(clients)]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(user.run(deadline) for user in users))
    return users


def check(db: str, users: list[Client]) -> list[str]:
    """What is wrong with the stored conversations: each must hold exactly what its client sent and got, in order."""
    from chatbot.storage import ConversationStore

    store = ConversationStore(db)
    problems = []
    for user in users:
        for conversation, texts in user.conversations.items():
            turns = store.turns(conversation)
            stored = [t.text for t in turns]
            if stored != texts:
                problems.append(
                    f"conversation {conversation}: stored {len(stored)} turns, expected {len(texts)} ({stored[:2]} vs {texts[:2]})"
                )
            elif [t.position for t in turns] != list(range(len(turns))) or len(store.tree(conversation)) != len(turns):
                problems.append(f"conversation {conversation}: a turn stored twice or out of place")
    store.close()
    return problems


def start_server(model: str, db: str, home: Path, *args: str, workers: int = 1) -> tuple[subprocess.Popen, str, float]:
    """Start `chatbot serve` and wait until `workers` distinct worker processes have said 200 on /health."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "CHATBOT_HOME": str(home), "PYTHONPATH": str(REPO)}
    chosen = [] if model == "default" else ["--model", model]  # default: the model `chatbot serve` finds by itself
    command = [sys.executable, "-m", "chatbot", "serve", *chosen, "--db", db, "--port", str(port), *args]
    started = time.monotonic()
    # The server's own lines go to a file (a pipe nobody reads while the load runs could fill and stall it).
    log = home / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=output, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    ready: set[int] = set()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"chatbot serve exited {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                ready.add(response.json()["worker"])
                if len(ready) >= workers:
                    break
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > 300:
            process.kill()
            raise RuntimeError("chatbot serve was not healthy after 300 s")
        time.sleep(0.05)
    return process, url, time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) of process `pid` and its children so far, from /proc."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for each in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def stop_server(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


def warm(url: str, model: str, clients: int, workers: int) -> None:
    """A batch size compiles in the background when its first batch comes, and until then its requests
    are decoded one by one: short bursts, each followed by waiting until no worker says it is compiling,
    until a burst starts no compile."""
    for _ in range(4):
        asyncio.run(drive(url, model, clients, 3.0))
        deadline = time.monotonic() + 600
        idle: set[int] = set()
        compiled = False
        while len(idle) < workers and time.monotonic() < deadline:
            health = httpx.get(f"{url}/health", timeout=10).json()
            if health.get("compiling"):
                compiled = True
                idle.discard(health["worker"])
                time.sleep(0.5)
            else:
                idle.add(health["worker"])
        if not compiled:
            return


def in_process(model: str, db: str, replies: int = 40) -> dict:
    """`DialogueManager.answer` in this process, one reply at a time: p50 and p99 in milliseconds."""
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.inference.checkpoint import find_default_model, load_checkpoint
    from chatbot.inference.decoding import DecodingConfig
    from chatbot.inference.generation import ReplyGenerator
    from chatbot.storage import open_store

    if model == "scripted":
        from chatbot.inference.scripted import scripted_checkpoint

        checkpoint = scripted_checkpoint(Path("scripted"))
    else:
        checkpoint = load_checkpoint(find_default_model() if model == "default" else model)
    turns = checkpoint.model_config.max_turns - 1
    generator = ReplyGenerator(checkpoint.model, (turns, checkpoint.model_config.max_utterance_length))
    generator.warm_up(DecodingConfig())
    manager = DialogueManager(open_store(db), checkpoint, turns, generator)
    times = []
    conversation = None
    for index in range(replies):
        if index % EXCHANGES == 0:
            conversation = manager.start().id
        started = time.perf_counter()
        manager.answer(conversation, f"{MESSAGES[index % len(MESSAGES)]} (in process {index})", DecodingConfig(), seed=index)
        times.append((time.perf_counter() - started) * 1000)
    manager.close()
    return {"replies": replies, "p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 0.99), 2)}


def summary(name: str, users: list[Client], seconds: float, problems: list[str], **extra) -> dict:
    latencies = [x * 1000 for u in users for x in u.latencies]
    first = [x * 1000 for u in users for x in u.first_bytes]
    errors = [e for u in users for e in u.errors]
    return {
        "run": name,
        **extra,
        "clients": len(users),
        "seconds": seconds,
        "replies": len(latencies),
        "replies_per_second": round(len(latencies) / seconds, 2),
        "ttfb_p50_ms": round(percentile(first, 0.5), 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "stored_ok": not problems,
        "problems": problems[:5],
    }


def print_row(row: dict) -> None:
    check_text = "ok" if row["stored_ok"] else "; ".join(row["problems"][:2])
    cores = f"{row.get('server_cores', 0):.2f}+{row.get('client_cores', 0):.2f}" if "server_cores" in row else "-"
    print(
        f"  {row['run']:<22} {row['clients']:>7} {row['replies_per_second']:>9.1f} {row['ttfb_p50_ms']:>10.1f} "
        f"{row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} {row['errors']:>6} {cores:>10}  {check_text}",
        flush=True,
    )


def bench(model: str, db: str, home: Path, args) -> dict:
    name = "model" if model != "scripted" else "scripted"
    result: dict = {"model": model, "database": "PostgreSQL" if db.startswith("postgres") else "SQLite", "runs": []}
    result["in_process"] = in_process(model, db)
    print(
        f"  in-process DialogueManager.answer: p50 {result['in_process']['p50_ms']} ms, p99 {result['in_process']['p99_ms']} ms", flush=True
    )
    print(
        f"  {'run':<22} {'clients':>7} {'replies/s':>9} {'TTFB p50':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>6} {'cores s+c':>10}  stored",
        flush=True,
    )
    runs: list[tuple[str, list[str], list[int], float]] = [
        ("1 worker", [], args.clients, args.seconds),
        ("1 worker, batching off", ["--batch-window-ms", "0"], [args.compare_clients], args.seconds),
        ("2 workers", ["--workers", "2"], [args.compare_clients], args.long_seconds),
    ]
    for label, flags, counts, seconds in runs:
        workers = 2 if "--workers" in flags else 1
        process, url, ready = start_server(model, db, home, *flags, workers=workers)
        result.setdefault("ready_seconds", {})[label] = round(ready, 1)
        try:
            model_id = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
            warm(url, model_id, max(counts), workers)
            if label == "1 worker":
                users = asyncio.run(drive(url, model_id, 1, args.seconds, stream=True))
                row = summary("stream, " + label, users, args.seconds, check(db, users), model=name)
                result["runs"].append(row)
                print_row(row)
            for clients in counts:
                server_cpu, client_cpu = cpu_seconds(process.pid), time.process_time()
                users = asyncio.run(drive(url, model_id, clients, seconds))
                busy = {
                    "server_cores": round((cpu_seconds(process.pid) - server_cpu) / seconds, 2),
                    "client_cores": round((time.process_time() - client_cpu) / seconds, 2),
                }
                row = summary(label, users, seconds, check(db, users), model=name, **busy)
                result["runs"].append(row)
                print_row(row)
        finally:
            status = stop_server(process)
            if status != 0:
                print(f"  (the server exited with {status} on SIGTERM)", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="default,scripted", help="comma-separated: default (the shipped model), scripted, or a model DIR"
    )
    parser.add_argument("--clients", default="1,4,16,64", help="concurrent clients of the one-worker runs")
    parser.add_argument("--compare-clients", type=int, default=16, help="clients of the batching-off and two-worker runs (default 16)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run (default 20)")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the two-worker run (default 60)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL database (an empty one)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.clients = [int(part) for part in args.clients.split(",") if part.strip()]

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    print(
        f"serve load: {machine}; {args.seconds:g} s per run, {args.long_seconds:g} s for two workers; clients 127.0.0.1, one asyncio process"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="chatbot-serve-load-") as folder:
        home = Path(folder) / "home"
        home.mkdir()
        for model in args.models.split(","):
            sqlite = Path(folder) / (model.replace("/", "_") + ".db")
            databases = [f"sqlite:///{sqlite}"] + ([args.postgres] if args.postgres else [])
            for db in databases:
                kind = "PostgreSQL" if db.startswith("postgres") else "SQLite"
                print(f"\nmodel {model} · {kind}", flush=True)
                results.append(bench(model, db, home, args))
    failed = [row for result in results for row in result["runs"] if row["errors"] or not row["stored_ok"]]
    print(
        f"\nchecks: {'every turn stored once, in order, no errors' if not failed else f'{len(failed)} runs with errors or storage problems'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    _common.run(main)  # the servers are `chatbot serve`, which silences its own native logs (and writes to a file here)
