"""How fast `chatbot chat` becomes usable, as a person at a terminal sees it.

Usage: .venv/bin/python benchmarks/startup.py --model storage/models/hred-chitchat [--runs 5] [--timeout 60] [--output startup.json]

Each run starts `python -m chatbot chat --model DIR --db sqlite:///TMP/startup.db --seed 1`
in a pseudo-terminal (CHATBOT_HOME=TMP, TF_CPP_MIN_LOG_LEVEL=3) and records, from the
terminal output with ANSI escapes stripped:

  prompt       seconds from launch until `you> ` is shown (the person can start typing);
  first reply  seconds from launch until a `bot> ` line is shown, "hello there" being typed
               as soon as the prompt appears (what a person in a hurry waits for);
  reply        seconds from sending that message to its `bot> ` line.

Then it sends Ctrl-D and waits for the exit. A phase that takes longer than --timeout is an
error (exit status 1), never a hang. It prints p50/min/max over the runs, the machine, the
goals (prompt < 1.5 s, first reply < 6 s) and, for reference, one timing of
`python -c "import tensorflow"` (much of the start-up is that import). Stdlib only (and
`_common`); the children's output goes to the pseudo-terminal or is captured, never to this terminal.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time

import _common  # first: the checkout importable, native logs silenced by _common.run

GOALS = {"prompt_s": 1.5, "first_reply_s": 6.0}
# prompt-toolkit draws "you> " as "you>" then cursor-forward (ESC [ n C): that becomes n spaces;
# then CSI (colours, cursor moves), OSC (window title) and two-character escapes are dropped.
CURSOR_FORWARD = re.compile(r"\x1b\[(\d*)C")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CURSOR_REQUEST = b"\x1b[6n"  # prompt-toolkit asks where the cursor is; a terminal answers


class Failure(Exception):
    pass


class Terminal:
    """A child process on a pseudo-terminal, with its output kept as plain text."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.start = time.perf_counter()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.fd, self.raw, self.text = master, b"", ""

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, needle: str, after: int, timeout: float, what: str) -> float:
        """Seconds since launch when `needle` first shows in the text past offset `after`."""
        deadline = time.perf_counter() + timeout
        while needle not in self.text[after:]:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise Failure(f"no {what} ({needle!r}) within {timeout:g} s")
            if not self._read(left):
                raise Failure(f"chatbot exited (status {self.process.poll()}) before {what} ({needle!r})")
        return time.perf_counter() - self.start

    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting up to `timeout`); False at end of output."""
        if select.select([self.fd], [], [], min(timeout, 0.5))[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            for _ in range(chunk.count(CURSOR_REQUEST)):
                self.send(b"\x1b[1;1R")
            self.raw += chunk
            text = CURSOR_FORWARD.sub(lambda m: " " * int(m.group(1) or 1), self.raw.decode("utf-8", "replace"))
            self.text = ANSI.sub("", text).replace("\r", "")
        return True

    def close(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise Failure(f"chatbot did not exit within {timeout:g} s of Ctrl-D; killed") from None
        finally:
            os.close(self.fd)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tail(self, lines: int = 8) -> str:
        return "\n".join("    | " + line for line in self.text.strip().splitlines()[-lines:])


def one_run(model: str, home: str, env: dict[str, str], timeout: float) -> dict[str, float]:
    argv = [sys.executable, "-m", "chatbot", "chat", "--model", model, "--db", f"sqlite:///{home}/startup.db", "--seed", "1"]
    term = Terminal(argv, env)
    try:
        prompt = term.expect("you> ", 0, timeout, "prompt")
        mark = len(term.text)
        sent = time.perf_counter()
        term.send(b"hello there\r")
        first_reply = term.expect("bot> ", mark, timeout, "reply")
        reply = time.perf_counter() - sent
        term.expect("you> ", term.text.rindex("bot> "), timeout, "prompt after the reply")
        term.send(b"\x04")
        term.close(timeout)
        return {"prompt_s": prompt, "first_reply_s": first_reply, "reply_s": reply}
    except Failure as exc:
        term.kill()
        raise Failure(f"{exc}; last output:\n{term.tail()}") from None


def import_tensorflow_seconds(env: dict[str, str], timeout: float) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, check=True, timeout=timeout, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("CHATBOT_MODEL"), help="model directory (default: $CHATBOT_MODEL)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per phase (default 60)")
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args()
    if not args.model:
        parser.error("--model DIR is required (or set CHATBOT_MODEL)")
    model = os.path.abspath(args.model)

    runs = []
    with tempfile.TemporaryDirectory(prefix="chatbot-startup-") as home:
        env = {**os.environ, "CHATBOT_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3", "TERM": os.environ.get("TERM", "xterm")}
        try:
            for i in range(args.runs):
                runs.append(one_run(model, home, env, args.timeout))
                print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items()), flush=True)
            tf_import = import_tensorflow_seconds(env, args.timeout)
        except Failure as exc:
            print(f"error: run {len(runs) + 1}: {exc}", file=sys.stderr)
            return 1
        except subprocess.TimeoutExpired:
            print(f"error: `import tensorflow` took over {args.timeout:g} s", file=sys.stderr)
            return 1

    machine = {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    summary = {
        key: {"p50": statistics.median(values), "min": min(values), "max": max(values)}
        for key in runs[0]
        for values in [[r[key] for r in runs]]
    }
    goals = {key: {"goal_s": goal, "p50": summary[key]["p50"], "met": summary[key]["p50"] < goal} for key, goal in GOALS.items()}

    print(f"\nmodel {model}; {len(runs)} runs; machine: {machine['processor']}, {machine['cpus']} cpus, Python {machine['python']}")
    print(f"{'seconds':<28} {'p50':>7} {'min':>7} {'max':>7}")
    labels = {"prompt_s": "prompt (from launch)", "first_reply_s": "first reply (from launch)", "reply_s": "reply (after sending)"}
    for key, label in labels.items():
        s = summary[key]
        print(f"{label:<28} {s['p50']:>7.2f} {s['min']:>7.2f} {s['max']:>7.2f}")
    print(f"{'import tensorflow (1 run)':<28} {tf_import:>7.2f}")
    print(
        "goals (p50): "
        + "; ".join(f"{labels[k].split(' (')[0]} < {g['goal_s']:g} s: {'met' if g['met'] else 'NOT met'}" for k, g in goals.items())
    )

    if args.output:
        with open(args.output, "w") as f:
            json.dump(
                {"model": model, "machine": machine, "runs": runs, "summary": summary, "import_tensorflow_s": tf_import, "goals": goals},
                f,
                indent=2,
            )
            f.write("\n")
    return 0


if __name__ == "__main__":
    _common.run(main)
