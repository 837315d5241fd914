"""Reply latency: the compiled generator against a naive eager loop and the arithmetic floor.

For a `small` HRED and VHRED (random weights unless --model DIR is given: latency
does not depend on the weights) and a 10-turn history, it times one full reply of
30 tokens (the end token is blocked until then: no early stop) for greedy, top-p
and beam 5 decoding, all other settings at their defaults, and reports:

- p50 / p95 wall time of the compiled path (`chatbot.inference.generation.ReplyGenerator`,
  what `chatbot chat` uses: XLA-compiled encoder and in-graph token loop);
- p50 of a naive eager loop measured in the same run: the model's
  `encode_context` / `decode_step` called eagerly from Python, one call per token,
  the token picked in NumPy;
- the time of the reply's output projections alone (memory-bound: the D x V kernel
  is read once per token);
- the arithmetic floor: the reply's matmul FLOPs (2 x multiply-adds of every
  kernel applied: utterance encoder over the history's tokens, context RNN per
  turn, decoder and output projection per generated token and beam; Seq2Seq's
  encoder over its source turns, none for the language model; attention's
  weights are not counted) divided by the matmul throughput measured in the
  same run (1024 x 1024 float32).

--model DIR takes a trained model of any architecture (lm, seq2seq, hred, hran, vhred).

Run:  .venv/bin/python benchmarks/reply_latency.py [--runs 50] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import _common  # first: the checkout importable, native logs silenced by _common.run
import numpy as np

from chatbot.config import model_config
from chatbot.inference.decoding import DecodingConfig
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

# TensorFlow, and the modules that load it, are imported inside the functions: after _common.run silenced it.

REPLY_TOKENS = 30
HISTORY_TURNS = 10
GOALS_MS = {"greedy": 30.0, "top_p": 30.0, "beam": 120.0}


def history(utterance_length: int, vocabulary_size: int, seed: int = 0) -> np.ndarray:
    """`(1, 10, utterance_length)` framed turns of 6-20 random word ids (a chat-like history)."""
    rng = np.random.default_rng(seed)
    context = np.zeros((1, HISTORY_TURNS, utterance_length), np.int32)
    for turn in range(HISTORY_TURNS):
        words = rng.integers(4, vocabulary_size, size=rng.integers(6, 21))
        framed = [BOS_ID, *words[: utterance_length - 2], EOS_ID]
        context[0, turn, : len(framed)] = framed
    return context


def cell_kernels(rnn_layer) -> int:
    """Multiply-adds of one step of a Keras GRU/LSTM (kernel + recurrent kernel), both directions."""
    layers = [rnn_layer.forward_layer, rnn_layer.backward_layer] if hasattr(rnn_layer, "forward_layer") else [rnn_layer]
    return sum(int(np.prod(layer.cell.kernel.shape)) + int(np.prod(layer.cell.recurrent_kernel.shape)) for layer in layers)


def output_kernels(model) -> list:
    """The matrices a decoder output goes through to become logits: `(D, V)`, or tied `(D, E)` then `(E, V)`."""
    import tensorflow as tf

    if getattr(model, "tie_embeddings", False):
        return [model.output_projection.adapter.kernel, tf.transpose(model.embedding.embeddings)]
    return [model.output_projection.kernel]


def encoded_tokens(model, context: np.ndarray) -> int:
    """Real tokens the model's encoder reads: the whole history (HRED family), Seq2Seq's source (its last
    `source_turns` turns, at most `max_source_tokens`), none for the language model."""
    if hasattr(model, "utterance_encoder"):
        return int((context != PAD_ID).sum())
    if hasattr(model, "encoder"):
        return min(int((context[:, -model.source_turns :] != PAD_ID).sum()), model.max_source_tokens)
    return 0


def reply_flops(model, context: np.ndarray, sequences: int) -> float:
    """Matmul FLOPs of one reply of REPLY_TOKENS tokens for `sequences` hypotheses (see the module docstring)."""
    encoder_layer = getattr(model, "utterance_encoder", None) or getattr(model, "encoder", None)  # Seq2Seq: `encoder`; LM: none
    encoder = cell_kernels(encoder_layer.rnn) * encoded_tokens(model, context) if encoder_layer is not None else 0
    if hasattr(model, "context_encoder"):
        encoder += cell_kernels(model.context_encoder.rnn) * int((context != PAD_ID).any(-1).sum())
    decoder_rnn = model.decoder.rnn if hasattr(model, "decoder") else model.rnn  # the LM's one RNN is its decoder
    projection = output_kernels(model)
    per_token = cell_kernels(decoder_rnn) + sum(int(np.prod(k.shape)) for k in projection)
    return 2.0 * (encoder + per_token * REPLY_TOKENS * sequences)


def matmul_flops_per_second(seconds: float = 2.0) -> float:
    import tensorflow as tf

    a = tf.random.normal([1024, 1024])
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        matmul(a).numpy()
        count += 1
    return 2 * 1024**3 * count / (time.perf_counter() - started)


def projection_ms(model, sequences: int) -> float:
    """Wall time of the reply's output projections alone: REPLY_TOKENS dependent `(sequences, D) x (D, V)`
    products in one XLA loop. They read the whole D x V kernel per token (8 MB for the small preset),
    so they are bound by memory bandwidth, not arithmetic: the floor this code can approach (tied models: the E x V table)."""
    import tensorflow as tf

    kernel = output_kernels(model)[-1]  # the vocabulary-sized one

    @tf.function(jit_compile=True)
    def loop(x):
        def body(step, x):
            return step + 1, x + 1e-9 * tf.reduce_sum(tf.matmul(x, kernel))

        return tf.while_loop(lambda step, _: step < REPLY_TOKENS, body, (0, x))[1]

    x = tf.random.normal([sequences, kernel.shape[0]])
    loop(x).numpy()
    return float(np.median(timed(lambda run: loop(x).numpy(), 30)))


# --- the naive eager loop ------------------------------------------------------


def naive_reply(model, context: np.ndarray, config: DecodingConfig, rng: np.random.Generator) -> list[int]:
    """Eager model calls, one `decode_step` per token, the token picked in NumPy (end token blocked)."""
    import tensorflow as tf

    latent = int(getattr(model, "latent_dim", 0))
    inputs = [tf.constant(context)] + ([tf.constant(rng.standard_normal((1, latent)), tf.float32)] if latent else [])
    if config.sampler == "beam":
        return naive_beam(model, model.encode_context(*inputs), config.num_beams)
    state = model.encode_context(*inputs)
    token, reply = np.array([BOS_ID], np.int32), []
    for _ in range(REPLY_TOKENS):
        logits, state = model.decode_step(tf.constant(token), state)
        logits = logits.numpy()[0].astype(np.float64)
        logits[[PAD_ID, UNK_ID, BOS_ID, EOS_ID]] = -np.inf
        if config.sampler == "greedy":
            next_id = int(np.argmax(logits))
        else:  # top-p
            probabilities = np.exp((logits - logits.max()) / config.temperature)
            probabilities /= probabilities.sum()
            order = np.argsort(-probabilities)
            keep = order[: int(np.searchsorted(np.cumsum(probabilities[order]), config.top_p)) + 1]
            next_id = int(rng.choice(keep, p=probabilities[keep] / probabilities[keep].sum()))
        reply.append(next_id)
        token = np.array([next_id], np.int32)
    return reply


def naive_beam(model, state, beams: int) -> list[int]:
    import tensorflow as tf

    state = tf.nest.map_structure(lambda s: tf.repeat(s, beams, axis=0), state)
    scores = np.array([0.0] + [-np.inf] * (beams - 1))
    replies = [[] for _ in range(beams)]
    tokens = np.full([beams], BOS_ID, np.int32)
    for _ in range(REPLY_TOKENS):
        logits, state = model.decode_step(tf.constant(tokens), state)
        log_probs = tf.nn.log_softmax(logits).numpy().astype(np.float64)
        log_probs[:, [PAD_ID, UNK_ID, BOS_ID, EOS_ID]] = -np.inf
        totals = (scores[:, None] + log_probs).reshape(-1)
        best = np.argsort(-totals)[:beams]
        origin, tokens = best // log_probs.shape[1], (best % log_probs.shape[1]).astype(np.int32)
        scores = totals[best]
        replies = [replies[o] + [int(t)] for o, t in zip(origin, tokens, strict=True)]
        state = tf.nest.map_structure(lambda s, origin=origin: tf.gather(s, origin), state)
    return replies[0]


# --- measuring -----------------------------------------------------------------


def timed(function, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        started = time.perf_counter()
        function(run)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="timed compiled replies per setting (default 50)")
    parser.add_argument("--eager-runs", type=int, default=5, help="timed naive eager replies per setting (default 5)")
    parser.add_argument(
        "--model", action="append", metavar="DIR", help="trained model directories (default: small HRED and VHRED, random weights)"
    )
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args()

    import tensorflow as tf

    from chatbot.inference.generation import ReplyGenerator
    from chatbot.models import build_model

    if args.model:
        from chatbot.inference.checkpoint import load_checkpoint

        checkpoints = [load_checkpoint(path) for path in args.model]
        models = [(checkpoint.model_config.architecture, checkpoint.model) for checkpoint in checkpoints]
    else:
        models = [(name, build_model(model_config("small", model=name, vocabulary_size=8000), seed=1)) for name in ("hred", "vhred")]
    throughput = matmul_flops_per_second()
    settings = {
        "greedy": DecodingConfig(sampler="greedy", min_reply_tokens=REPLY_TOKENS, max_reply_tokens=REPLY_TOKENS),
        "top_p": DecodingConfig(sampler="top_p", min_reply_tokens=REPLY_TOKENS, max_reply_tokens=REPLY_TOKENS),
        "beam": DecodingConfig(sampler="beam", num_beams=5, min_reply_tokens=REPLY_TOKENS, max_reply_tokens=REPLY_TOKENS),
    }
    rows = []
    for name, model in models:
        utterance_length = 48
        context = history(utterance_length, model.vocabulary_size)
        generator = ReplyGenerator(model, (HISTORY_TURNS, utterance_length))
        for label, config in settings.items():
            started = time.perf_counter()
            reply = generator.candidates(context, config, seed=0)[0]
            compile_seconds = time.perf_counter() - started
            assert len(reply.token_ids) == REPLY_TOKENS, "the reply stopped early"
            compiled = timed(lambda run, g=generator, c=context, d=config: g.candidates(c, d, seed=run), args.runs)
            naive_reply(model, context, config, np.random.default_rng(0))  # warm the eager kernels
            eager = timed(lambda run, m=model, c=context, d=config: naive_reply(m, c, d, np.random.default_rng(run)), args.eager_runs)
            sequences = config.num_beams if config.sampler == "beam" else 1
            floor_ms = reply_flops(model, context, sequences) / throughput * 1000.0
            projections = projection_ms(model, sequences)
            p50 = float(np.percentile(compiled, 50))
            rows.append(
                {
                    "model": name,
                    "decoding": "beam 5" if label == "beam" else label.replace("_", "-"),
                    "p50_ms": round(p50, 2),
                    "p95_ms": round(float(np.percentile(compiled, 95)), 2),
                    "eager_p50_ms": round(float(np.percentile(eager, 50)), 1),
                    "speedup_vs_eager": round(float(np.percentile(eager, 50)) / p50, 1),
                    "floor_ms": round(floor_ms, 3),
                    "times_floor": round(p50 / floor_ms, 1),
                    "projection_ms": round(projections, 2),
                    "goal_ms": GOALS_MS[label],
                    "goal_met": p50 < GOALS_MS[label] and float(np.percentile(eager, 50)) / p50 >= 10,
                    "first_call_s": round(compile_seconds, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, TensorFlow {tf.__version__}"
    print(f"\nreply latency: {REPLY_TOKENS} tokens, {HISTORY_TURNS}-turn history, small preset; {machine}")
    print(f"matmul throughput (1024x1024 float32, same run): {throughput / 1e9:.1f} GFLOP/s")
    header = (
        f"{'model':<7} {'decoding':<8} {'p50 ms':>8} {'p95 ms':>8} {'eager p50':>10} {'speed-up':>9} "
        f"{'floor ms':>9} {'x floor':>8} {'proj. ms':>9} {'goal':>10}"
    )
    print(header)
    for r in rows:
        goal = f"<{r['goal_ms']:.0f} {'met' if r['goal_met'] else 'NOT met'}"
        print(
            f"{r['model']:<7} {r['decoding']:<8} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['eager_p50_ms']:>10.1f} "
            f"{r['speedup_vs_eager']:>8.1f}x {r['floor_ms']:>9.2f} {r['times_floor']:>8.1f} {r['projection_ms']:>9.1f} {goal:>10}"
        )
    print("floor: matmul FLOPs / matmul throughput; proj. ms: the reply's output projections alone (memory-bound)")
    print("goal: p50 under the goal and at least 10x faster than the eager loop; first compiled call (XLA compile) in first_call_s")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"machine": machine, "matmul_gflops": round(throughput / 1e9, 1), "rows": rows}, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    _common.run(main)
