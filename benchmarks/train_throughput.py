"""Training throughput on the Chit-Chat train split, for several architectures and batch sizes, side by side.

Usage: python benchmarks/train_throughput.py [--preset small] [--models hred vhred ...] [--batch-sizes 32 64 128] [--seconds 60]

--models takes seq2seq, seq2seq+additive, seq2seq+dot, hred, vhred. For each
architecture and batch size it trains on the same windows for about
`--seconds` after a warm-up (graph tracing excluded) and prints target tokens
per second and the share of padding in the batches. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--models", nargs="+", default=["hred"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-dialogues", type=int, default=1500)
    args = parser.parse_args()

    import keras

    from chatbot.config import model_config
    from chatbot.corpus import load_corpus
    from chatbot.models import build_model
    from chatbot.tokenizer import Tokenizer
    from chatbot.training.data import WindowBatches, dialogue_windows

    keras.utils.set_random_seed(0)
    train = load_corpus("chitchat", max_dialogues=args.max_dialogues).split("train")
    tokenizer = Tokenizer.train([t.text for d in train for t in d.turns], 8000)
    base = model_config(args.preset, vocabulary_size=tokenizer.vocabulary_size)
    windows = dialogue_windows(train, tokenizer, base.max_turns, base.max_utterance_length)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; preset {args.preset}; {len(windows)} windows")
    print(f"{'model':<18} {'batch':>6} {'tokens/s':>10} {'padding':>8} {'s/step':>8}")
    for name, batch_size in [(m, b) for m in args.models for b in args.batch_sizes]:
        architecture, _, attention = name.partition("+")
        config = model_config(args.preset, vocabulary_size=tokenizer.vocabulary_size, model=architecture, attention=attention or None)
        batches = WindowBatches(windows, batch_size, seed=0)
        model = build_model(config)
        model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0))
        iterator = iter(batches.dataset().repeat())
        # Warm-up: trace the step for the shapes that occur.
        for _ in range(8):
            model.train_on_batch(next(iterator), return_dict=True)
        tokens, steps, started = 0.0, 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            batch = next(iterator).numpy()
            model.train_on_batch(batch, return_dict=True)
            tokens += float((batch[:, 1:, 1:] != 0).sum())
            steps += 1
        seconds = time.perf_counter() - started
        print(f"{name:<18} {batch_size:>6} {tokens / seconds:>10.0f} {batches.padding_share():>8.1%} {seconds / steps:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
