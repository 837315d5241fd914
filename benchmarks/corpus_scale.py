"""A million-dialogue corpus: how long until `chatbot train` can start, and how much memory it takes.

Writes a synthetic Ubuntu Dialogue Corpus v2 folder (train.csv with N dialogues as Label 1.0
rows plus one Label 0.0 distractor row per ten, valid.csv and test.csv with nine distractors
per row, `__eou__`/`__eot__` markers, Zipf-distributed words), then runs the real
`chatbot train --corpus ubuntu:DIR` twice in a fresh cache, each time until it logs its data
summary (the line before the model is built, i.e. the moment batches can be drawn), and stops it.

    python benchmarks/corpus_scale.py [--dialogues 1000000] [--workdir DIR] [--json OUT]

Reports, per run: wall seconds to the summary line, what the log says it did (tokenizer trained
or cached, tokenized or opened from the cache), and the peak resident memory of the process
(ru_maxrss, TensorFlow included). Goals (issue 16): under 2 GB resident, and the second run
ready to train in under 10 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run
import numpy as np

REPO = _common.REPO
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    lengths = rng.integers(2, 9, size)
    return ["".join(rng.choice(LETTERS, n)) for n in lengths]


def utterance_texts(count: int, words: list[str], rng: np.random.Generator) -> list[str]:
    """`count` utterances of 3-18 Zipf-distributed words."""
    lengths = rng.integers(3, 19, count)
    ids = np.minimum(rng.zipf(1.3, int(lengths.sum())), len(words)) - 1
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(words[i] for i in chunk) for chunk in np.split(ids, cuts)]


def write_split(path: Path, rows: int, kind: str, words: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = 10_000
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["Context", "Utterance", "Label"]
            if kind == "train"
            else ["Context", "Ground Truth Utterance"] + [f"Distractor_{i}" for i in range(9)]
        )
        for start in range(0, rows, block):
            n = min(block, rows - start)
            turns = rng.integers(1, 8, n)  # context turns
            per_turn = rng.integers(1, 3, int(turns.sum()))  # utterances per context turn
            texts = iter(utterance_texts(int(per_turn.sum()) + 11 * n, words, rng))
            turn_sizes = iter(per_turn)
            for index in range(n):
                context = " ".join(
                    " __eou__ ".join(next(texts) for _ in range(next(turn_sizes))) + " __eou__ __eot__" for _ in range(turns[index])
                )
                reply = next(texts) + " __eou__"
                if kind == "train":
                    writer.writerow([context, reply, "1.0"])
                    if index % 10 == 0:
                        writer.writerow([context, next(texts) + " __eou__", "0.0"])
                else:
                    writer.writerow([context, reply] + [next(texts) + " __eou__" for _ in range(9)])


def generate(directory: Path, dialogues: int) -> float:
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    words = vocabulary(20_000, np.random.default_rng(0))
    write_split(directory / "train.csv", dialogues, "train", words, 1)
    held_out = max(dialogues // 50, 10)
    write_split(directory / "valid.csv", held_out, "valid", words, 2)
    write_split(directory / "test.csv", held_out, "test", words, 3)
    return time.monotonic() - started


def run_until_ready(directory: Path, home: Path, out: Path) -> dict:
    """Run `chatbot train` until its data summary line; return timings, log and peak memory."""
    command = [str(REPO / "bin" / "chatbot"), "train", "--corpus", f"ubuntu:{directory}", "--preset", "small", "--out", str(out)]
    env = {**os.environ, "CHATBOT_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    log, ready = [], None
    assert process.stderr is not None
    for line in process.stderr:
        log.append(f"{time.monotonic() - started:7.1f}s {line.rstrip()}")
        if " target tokens per epoch" in line:
            ready = time.monotonic() - started
            process.terminate()
            break
    process.wait()
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    shutil.rmtree(out, ignore_errors=True)
    return {
        "ready_seconds": ready,
        "peak_rss_mib": round(peak_kib / 1024, 1) if peak_kib > before else None,
        "log": [line for line in log if "WARNING" not in line and "I0000" not in line],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialogues", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/chatbot-corpus-scale"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    directory = args.workdir / f"ubuntu-{args.dialogues}"
    generated = None
    if not (directory / "test.csv").exists():
        generated = generate(directory, args.dialogues)
    home = args.workdir / "home"
    shutil.rmtree(home, ignore_errors=True)  # a cold cache for the first run
    sizes = {p.name: p.stat().st_size for p in sorted(directory.iterdir())}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    made = f"generated in {generated:.0f} s" if generated is not None else "generated by an earlier run"
    print(f"corpus: {directory} ({', '.join(f'{k} {v / 2**20:.0f} MiB' for k, v in sizes.items())}); {made}")
    print(f"machine: {machine}")
    runs = []
    for name in ("first run (cold cache)", "second run (warm cache)"):
        # ru_maxrss of children is a maximum over all of them: each run goes in its own interpreter.
        result = _isolated_run(directory, home, args.workdir / "model")
        runs.append({"run": name, **result})
        print(f"{name}: ready to train after {result['ready_seconds']:.1f} s, peak resident memory {result['peak_rss_mib']} MiB")
        for line in result["log"]:
            print(f"    {line}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "dialogues": args.dialogues, "bytes": sizes, "runs": runs}, indent=1))
    return 0


def _isolated_run(directory: Path, home: Path, out: Path) -> dict:
    """One run in a child interpreter, so its RUSAGE_CHILDREN peak is that run's alone."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[4]); from corpus_scale import run_until_ready; "
        "from pathlib import Path; print(json.dumps(run_until_ready(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))))"
    )
    here = Path(__file__).resolve().parent  # benchmarks/, where this module and _common are
    done = subprocess.run([sys.executable, "-c", code, str(directory), str(home), str(out), str(here)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the measuring child exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    _common.run(main)  # the children run `chatbot train`, which silences its own native logs (and is read through a pipe)
