"""Learning curves: validation perplexity against optimizer updates and wall seconds.

Every row trains a fresh model with `model.fit` (the trainer's optimizer, the
same windows, batches and seed) on one fixed subset of a corpus and measures
the exact validation perplexity (VHRED: its ELBO bound) every `--every`
updates; at the end, the context probe: the perplexity with every reply scored
after another dialogue's history ("shuffled") and after an empty one ("none").
The add-one unigram and the interpolated Kneser-Ney 3-gram of the same
SentencePiece pieces are drawn as horizontal lines. This is the figure that
shows a model stuck at the unigram plateau, or a context that is not used.

A row is MODEL[:FIELD=VALUE,...], MODEL one of lm, seq2seq, hred, hran, vhred, and
FIELDs any `ModelConfig` fields, e.g. `hred:tie_embeddings=0,scale_embeddings=0,center_context=0`
(HRED as it was before issue 13's fix) or `seq2seq:attention=additive`.

    python benchmarks/learning_curve.py --updates 600 --every 50 \\
        --rows lm seq2seq hred vhred hred:tie_embeddings=0,scale_embeddings=0,center_context=0

Writes OUT.json (every point), OUT.txt (the table) and OUT.png (both panels).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run

from chatbot.config import ModelConfig, TrainConfig, model_config


def parse_row(spec: str, preset: str, vocabulary_size: int) -> tuple[str, ModelConfig]:
    """`MODEL[:FIELD=VALUE,...]` → (label, config). Booleans are 0/1/true/false."""
    name, _, overrides = spec.partition(":")
    types = {f.name: f.type for f in dataclasses.fields(ModelConfig)}
    values = {}
    for item in filter(None, overrides.split(",")):
        key, _, raw = item.partition("=")
        if key not in types:
            raise SystemExit(f"learning_curve.py: {key!r} is not a ModelConfig field (row {spec!r})")
        kind = types[key]
        values[key] = (
            raw.lower() in ("1", "true", "yes") if kind in (bool, "bool") else {"int": int, "float": float}.get(str(kind), str)(raw)
        )
    return spec, model_config(preset, model=name, vocabulary_size=vocabulary_size, **values)


def validation_perplexity(model, batches, context_mode: str = "true") -> dict:
    """Exact perplexity (or ELBO bound) over prepared validation batches, and VHRED's KL per reply."""
    totals: dict[str, float] = {}
    for batch in batches:
        for key, value in model.probe_terms[context_mode](batch).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    result = {"perplexity": math.exp(float(model.bound_nll(totals)) / totals["tokens"])}
    if "kl" in totals:
        result["kl_nats_per_reply"] = totals["kl"] / totals["replies"]
    return result


def run_row(label, config, train_batches, valid_batches, args, log) -> dict:
    import keras
    import tensorflow as tf

    from chatbot.models import build_model
    from chatbot.training.trainer import make_optimizer

    keras.utils.set_random_seed(args.seed)
    model = build_model(config, seed=args.seed, length_groups=args.length_groups)
    train_config = TrainConfig(
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, lr_schedule=args.lr_schedule, clipnorm=args.clipnorm
    )
    model.compile(optimizer=make_optimizer(train_config, total_steps=args.updates))
    model.probe_terms = {
        mode: tf.function(lambda b, mode=mode: model.loss_terms(b, training=False, context_mode=mode), reduce_retracing=True, autograph=False)
        for mode in ("true", "shuffled", "none")
    }
    dataset = train_batches.dataset().repeat()
    points, updates, seconds = [], 0, 0.0
    while updates < args.updates:
        started = time.monotonic()
        model.fit(dataset, steps_per_epoch=args.every, epochs=1, verbose=0, shuffle=False)  # WindowBatches shuffles
        seconds += time.monotonic() - started  # training only: validation is not counted
        updates += args.every
        point = {"updates": updates, "seconds": round(seconds, 1), **validation_perplexity(model, valid_batches)}
        points.append(point)
        log(f"{label:<40} {updates:>6} updates {seconds:>8.0f} s  validation perplexity {point['perplexity']:8.1f}")
    probe = {mode: validation_perplexity(model, valid_batches, mode)["perplexity"] for mode in ("shuffled", "none")}
    final = points[-1]["perplexity"]
    return {
        "row": label,
        "config": dataclasses.asdict(config),
        "parameters": int(model.count_params()),
        "points": points,
        "final": final,
        "shuffled": probe["shuffled"],
        "none": probe["none"],
        "context_gain_nats": math.log(probe["shuffled"]) - math.log(final),
        "kl_nats_per_reply": points[-1].get("kl_nats_per_reply"),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for axis, x, label in ((axes[0], "updates", "optimizer updates"), (axes[1], "seconds", "training wall seconds")):
        for row in result["rows"]:
            axis.plot([p[x] for p in row["points"]], [p["perplexity"] for p in row["points"]], marker=".", label=row["row"])
        for name, value, style in (("add-one unigram", result["unigram"], ":"), ("Kneser-Ney 3-gram", result["trigram"], "--")):
            axis.axhline(value, color="grey", linestyle=style, label=f"{name} ({value:.1f})")
        axis.set_xlabel(label)
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation perplexity (VHRED: ELBO bound)")
    axes[0].legend(fontsize=8)
    figure.suptitle(result["title"], fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(result: dict) -> str:
    lines = [result["title"], f"machine: {result['machine']}", ""]
    lines.append(
        f"{'row':<44} {'params':>9} "
        + " ".join(f"{u:>7}" for u in result["checkpoints"])
        + f" {'seconds':>8} {'shuffled':>9} {'none':>8} {'gain nats':>9} {'KL/reply':>8}"
    )
    for row in result["rows"]:
        by_update = {p["updates"]: p["perplexity"] for p in row["points"]}
        cells = " ".join(f"{by_update[u]:7.1f}" if u in by_update else f"{'':>7}" for u in result["checkpoints"])
        kl = f"{row['kl_nats_per_reply']:8.2f}" if row["kl_nats_per_reply"] is not None else f"{'–':>8}"
        lines.append(
            f"{row['row']:<44} {row['parameters']:>9,} {cells} {row['points'][-1]['seconds']:8.0f} {row['shuffled']:9.1f} {row['none']:8.1f} {row['context_gain_nats']:9.3f} {kl}"
        )
    lines.append(f"{'add-one unigram':<44} {'':>9} " + " ".join(f"{result['unigram']:7.1f}" for _ in result["checkpoints"]))
    lines.append(f"{'Kneser-Ney 3-gram':<44} {'':>9} " + " ".join(f"{result['trigram']:7.1f}" for _ in result["checkpoints"]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="chitchat")
    parser.add_argument("--max-dialogues", type=int, default=2000, help="the first N dialogues of the corpus (default 2000)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rows", nargs="+", default=["lm", "seq2seq", "hred", "vhred"])
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--every", type=int, default=50, help="updates between validation points (default 50)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps)
    parser.add_argument("--lr-schedule", default="constant", help="constant or cosine (decays over --updates)")
    parser.add_argument("--clipnorm", type=float, default=TrainConfig.clipnorm)
    parser.add_argument("--length-groups", type=int, default=TrainConfig.length_groups)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: all cores)")
    parser.add_argument("--out", default="benchmarks/results/learning_curve", help="OUT.json, OUT.txt, OUT.png")
    args = parser.parse_args()
    from chatbot.errors import ChatbotError

    for spec in args.rows:  # a mistyped row stops the run now, not after the corpus and the rows before it
        try:
            parse_row(spec, args.preset, args.vocabulary_size)
        except (ChatbotError, ValueError) as exc:
            parser.error(f"row {spec!r}: {exc}")

    import tensorflow as tf

    # Every row makes its own probe functions on purpose, which TensorFlow's retracing counter mistakes for retracing.
    tf.get_logger().setLevel("ERROR")

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from chatbot.corpus import load_corpus
    from chatbot.evaluation.evaluate import count_baseline_perplexity
    from chatbot.text.tokenizer import Tokenizer
    from chatbot.training.data import WindowBatches, dialogue_windows

    log = lambda line: print(line, flush=True)  # noqa: E731
    corpus = load_corpus(args.corpus, None, args.max_dialogues)
    train, valid = corpus.split("train"), corpus.split("valid")
    tokenizer = Tokenizer.train([t.text for d in train for t in d.turns], args.vocabulary_size)
    rows = [parse_row(spec, args.preset, tokenizer.vocabulary_size) for spec in args.rows]
    shape = rows[0][1]
    windows = {
        name: dialogue_windows(d, tokenizer, shape.max_turns, shape.max_utterance_length)
        for name, d in (("train", train), ("valid", valid))
    }
    train_batches = WindowBatches(windows["train"], args.batch_size, seed=args.seed)
    valid_batches = list(WindowBatches(windows["valid"], 64, shuffle=False).dataset())
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; TensorFlow {tf.__version__}; threads {args.threads or 'all'}"
    title = (
        f"{args.corpus}, first {args.max_dialogues} dialogues ({len(train)} train / {len(valid)} valid, "
        f"{train_batches.num_target_tokens:,} train target tokens, {tokenizer.vocabulary_size} pieces); "
        f"preset {args.preset}, batch {args.batch_size}, Adam {args.learning_rate:g} ({args.lr_schedule}, warm-up {args.warmup_steps}), "
        f"global clipnorm {args.clipnorm:g}"
    )
    log(title)
    log(f"machine: {machine}")
    result = {
        "title": title,
        "machine": machine,
        "command": " ".join(sys.argv),
        "unigram": count_baseline_perplexity(tokenizer, shape, train, valid, order=1)["value"],
        "trigram": count_baseline_perplexity(tokenizer, shape, train, valid, order=3)["value"],
        "checkpoints": [u for u in (50, 100, 150, 200, 300, 400, 600, 900, 1200, 1800, 2400) if u <= args.updates and u % args.every == 0],
        "rows": [],
    }
    log(f"add-one unigram {result['unigram']:.1f} · Kneser-Ney 3-gram {result['trigram']:.1f} (validation)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for label, config in rows:
        result["rows"].append(run_row(label, config, train_batches, valid_batches, args, log))
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")  # after every row: a cut run keeps its rows
        out.with_suffix(".txt").write_text(table(result) + "\n")
        plot(result, out.with_suffix(".png"))
    print(table(result))
    return 0


if __name__ == "__main__":
    _common.run(main)
