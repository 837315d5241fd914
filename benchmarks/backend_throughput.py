"""Training throughput of the TensorFlow and JAX backends, side by side in one run.

Usage: python benchmarks/backend_throughput.py [--corpus chatterbot:english] [--preset small]
           [--model hred] [--epochs 3] [--batch-size 64] [--backends tensorflow,jax] [--json PATH]

Each backend runs the real `chatbot train` in its own interpreter (KERAS_BACKEND set,
JAX on the CPU unless JAX_PLATFORMS says otherwise) on the same corpus, preset and seed,
and the script reads the target tokens per second of every epoch from the run's
metrics.json. The first epoch includes tracing and compilation (JAX compiles one step
per batch shape); the figure to compare is the mean of the later epochs. TensorFlow
trains as `chatbot train` does by default (length buckets, 4 length-sorted chunks per
RNN, only real targets projected); JAX computes every padded position of each bucket's
fixed shape (docs/architecture.md, "Backends"), so the two do different amounts of
arithmetic for the same tokens. The third row, `tensorflow-static`, feeds TensorFlow the
batches JAX gets (fixed shapes, one length group): TensorFlow still skips padded targets
in the output layer, but its RNNs run the same padded steps, so that row sits between
the two and says how much of the gap is padding and how much is the backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run

from chatbot.config import MODEL_TYPES

BACKENDS = ("tensorflow", "jax", "tensorflow-static")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


# The probe row: TensorFlow fed the batches JAX gets (fixed shapes, every padded position computed,
# one length group), so the gap splits into what the padding costs and what the backend costs.
# It asks the placement for its data as if the backend were JAX (a `PyDataset` of fixed-shape batches,
# served in fit's epoch order); the model and the training stay TensorFlow's.
STATIC_FEED = (
    "import dataclasses, sys; import chatbot.training.distribute as d; "
    "feed = d.Placement.feed; "
    "d.Placement.feed = lambda self, *data: feed(dataclasses.replace(self, backend='jax'), *data); "
    "from chatbot.cli.parser import main; sys.exit(main(sys.argv[1:]))"
)


def run(row: str, args, workdir: Path) -> dict:
    backend = "tensorflow" if row == "tensorflow-static" else row
    out = workdir / f"model-{row}"
    env = {**os.environ, "KERAS_BACKEND": backend, "CHATBOT_HOME": str(workdir / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
    launcher = [sys.executable, "-c", STATIC_FEED] if row == "tensorflow-static" else [sys.executable, "-m", "chatbot"]
    command = launcher + ["train", "--corpus", args.corpus, "--preset", args.preset, "--model", args.model]
    command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--out", str(out), "--patience", str(args.epochs)]
    if row == "tensorflow-static":
        command += ["--length-groups", "1"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{row}: chatbot train failed:\n{result.stderr[-2000:]}")
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    later = [e["target_tokens_per_second"] for e in epochs[1:]] or [epochs[0]["target_tokens_per_second"]]
    return {
        "backend": row,
        "wall_seconds": round(time.monotonic() - started, 1),
        "first_epoch_seconds": epochs[0]["seconds"],
        "later_epoch_seconds": [e["seconds"] for e in epochs[1:]],
        "tokens_per_second_per_epoch": [e["target_tokens_per_second"] for e in epochs],
        "tokens_per_second": round(sum(later) / len(later), 1),
        "final_val_perplexity": epochs[-1]["val_perplexity"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="chatterbot:english")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--model", default="hred", choices=MODEL_TYPES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--backends",
        default="tensorflow,jax,tensorflow-static",
        help="rows: tensorflow, jax, tensorflow-static (TensorFlow on JAX's batches)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"--backends: a comma-separated list of {', '.join(BACKENDS)}")
    print(f"machine: {machine()}")
    print(f"corpus {args.corpus}, preset {args.preset}, model {args.model}, batch {args.batch_size}, {args.epochs} epochs per backend")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            rows.append(run(backend, args, Path(workdir)))
            row = rows[-1]
            print(
                f"{backend:>17}: {row['tokens_per_second']:>8.1f} target tokens/s after the first epoch "
                f"(first epoch {row['first_epoch_seconds']:.0f} s, later {row['later_epoch_seconds']} s; "
                f"val perplexity {row['final_val_perplexity']:.1f})",
                flush=True,
            )
    for row in rows[1:]:
        print(f"ratio {row['backend']}/{rows[0]['backend']}: {row['tokens_per_second'] / rows[0]['tokens_per_second']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    _common.run(main)  # the children are `chatbot train`, which silences its own native logs (and is captured)
