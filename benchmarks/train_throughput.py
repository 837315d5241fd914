"""Training throughput against this machine's arithmetic limit, side by side in one run.

Usage: python benchmarks/train_throughput.py [--preset small] [--rows ROW ...] [--seconds 40] [--batch-size 64]

Each ROW is MODEL[:VARIANT[+VARIANT...]], MODEL one of lm, seq2seq, hred, hran, vhred,
or hred@reference (the sizes of the public PyTorch HRED reference: vocabulary
8,000, embedding 256, bidirectional encoder 256, context 512, decoder 512).
Variants (the default is what `chatbot train` does: length buckets of 8 tokens,
HRED/HRAN/VHRED RNNs over 4 length-sorted chunks of each batch, float32, no XLA,
full softmax, a prefetched tf.data pipeline):

    unbucketed  batches drawn at random, without length buckets
    ungrouped   HRED/HRAN/VHRED: each RNN over the whole padded batch (`--length-groups 1`),
                instead of 4 length-sorted chunks
    bf16        Keras mixed_bfloat16 policy (`chatbot train --precision mixed_bfloat16`)
    xla         model.compile(jit_compile=True)
    sampled     HRED/HRAN/VHRED: training-time sampled softmax over 512 classes (not offered by
                `chatbot train`: its perplexity cost on Chit-Chat is large, see docs/benchmarks.md)

Every row trains with `model.fit` on the same windows of the Chit-Chat train
split for `--seconds` after a warm-up (graph tracing excluded), and prints
target tokens per second, the share of padding in the token slots its RNNs compute, the
model's training FLOPs per target token, the achieved GFLOP/s, and that as a
share of a 2048x2048 matmul's float32 and bfloat16 GFLOP/s measured just before
and just after the row (their mean), so a busy machine slows both sides alike.

FLOPs per target token (printed at start): a dense or recurrent weight matrix
used once costs 2 FLOPs per weight (multiply and add) forward and twice that
backward, so training costs 6 x (weights used). Per target token that is

    6 x [ P_out + P_dec + P_enc x (encoder tokens / target tokens)
          + (P_ctx + P_init + P_heads) x (turns or replies / target tokens) ]

with P_out the output projection, P_dec the decoder RNN, P_enc the utterance
encoder (both directions), P_ctx the context RNN, P_init the decoder's
initial-state projection, P_heads VHRED's prior, posterior and bag-of-words
projection (per reply), HRAN's attention queries and output combination (per
target token) and its word keys (per encoder token), and the token and turn
counts of the real (unpadded) windows. HRAN's score and read-out matmuls over
the history (no weights) are not counted. Padding, element-wise work and the sampled-softmax saving are not
counted: the ratio is useful arithmetic over peak arithmetic.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import _common  # first: the checkout importable, native logs silenced by _common.run

DEFAULT_ROWS = [
    "hred:unbucketed+ungrouped",
    "hred:ungrouped",
    "hred",
    "hred:bf16",
    "hred:sampled",
    "hred:bf16+sampled",
    "seq2seq",
    "seq2seq:bf16",
    "vhred:ungrouped",
    "vhred",
    "vhred:bf16",
    "hred@reference",
    "hred@reference:bf16",
    "hred:xla",
]
MODELS = ("lm", "seq2seq", "hred", "hran", "vhred")
CHUNKED = ("hred", "hran", "vhred")  # the models with length groups and a `target_nll` (HRED and its subclasses)
VARIANTS = ("unbucketed", "ungrouped", "bf16", "xla", "sampled")
REFERENCE_SIZES = dict(embedding_dim=256, hidden_dim=256, bidirectional=True, context_dim=512, decoder_dim=512)
SAMPLED_CLASSES = 512


def matmul_gflops(dtype: str, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in `dtype`, repeated for about `seconds`."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = product(a, b)
        count += 1
    result.numpy()
    return 2 * n**3 * count / (time.perf_counter() - started) / 1e9


def window_counts(windows) -> dict:
    """Real (unpadded) token and turn counts of training windows."""
    return {
        "encoder_tokens": sum(len(u) for w in windows for u in w),
        "target_tokens": sum(len(u) - 1 for w in windows for u in w[1:]),
        "turns": sum(len(w) for w in windows),
        "replies": sum(len(w) - 1 for w in windows),
    }


def parse_row(row: str) -> tuple[str, str, set[str]]:
    """MODEL[@reference][:VARIANT[+VARIANT...]] → (model, sizes, variants); ValueError says what is wrong."""
    name, _, variant_text = row.partition(":")
    architecture, _, sizes = name.partition("@")
    variants = set(filter(None, variant_text.split("+")))
    if architecture not in MODELS:
        raise ValueError(f"row {row!r}: the model is one of {', '.join(MODELS)}")
    if sizes not in ("", "reference"):
        raise ValueError(f"row {row!r}: the only sizes are @reference")
    if variants - set(VARIANTS):
        raise ValueError(f"row {row!r}: unknown variant {', '.join(sorted(variants - set(VARIANTS)))}; variants: {', '.join(VARIANTS)}")
    if variants & {"ungrouped", "sampled"} and architecture not in CHUNKED:
        raise ValueError(f"row {row!r}: ungrouped and sampled apply to {', '.join(CHUNKED)} only")
    return architecture, sizes, variants


def flops_per_target_token(model, counts: dict) -> float:
    """Training FLOPs per target token (formula in the module docstring)."""
    import keras

    def weights(name):
        layer = getattr(model, name, None)
        return layer.count_params() if layer is not None else 0

    decoder = getattr(model, "decoder", None)  # the language model has one RNN, no decoder layer
    decoder_rnn = decoder.rnn.count_params() if decoder is not None else model.rnn.count_params()
    initial = weights("decoder") - decoder_rnn if decoder is not None else 0
    attention = getattr(model, "attention", None)
    attention = attention if isinstance(attention, keras.layers.Layer) else None  # HRAN's; Seq2Seq's is a string

    def attention_weights(*names):
        return sum(getattr(attention, name).count_params() for name in names) if attention is not None else 0

    parts = {
        # Tied: the adapter and bias, plus the embedding table used as the output matrix.
        "P_out": weights("output_projection") + (weights("embedding") if getattr(model, "tie_embeddings", False) else 0),
        "P_dec": decoder_rnn,
        "P_enc": weights("utterance_encoder") or weights("encoder"),
        "P_ctx": weights("context_encoder"),
        "P_init": initial,
        "P_heads": weights("prior") + weights("posterior") + weights("bow_projection"),
        # HRAN: queries and the output combination per target token, word keys per history word.
        "P_att": attention_weights("word_query", "utterance_query", "combine"),
        "P_keys": attention_weights("word_keys", "utterance_keys"),
    }
    per_target = (
        parts["P_out"]
        + parts["P_dec"]
        + parts["P_att"]
        + (parts["P_enc"] + parts["P_keys"]) * counts["encoder_tokens"] / counts["target_tokens"]
        + parts["P_ctx"] * counts["turns"] / counts["target_tokens"]
        + (parts["P_init"] + parts["P_heads"]) * counts["replies"] / counts["target_tokens"]
    )
    return 6.0 * per_target


def stop_after(seconds: float):
    """A Keras callback that stops `fit` after `seconds`; it keeps the number of steps, the seconds and the last logs."""
    import keras

    class StopAfter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started, self.steps, self.seconds, self.logs = time.perf_counter(), 0, 0.0, {}

        def on_train_batch_end(self, batch, logs=None):
            self.steps, self.logs = batch + 1, logs or {}
            self.seconds = time.perf_counter() - self.started
            if self.seconds >= seconds:
                self.model.stop_training = True

    return StopAfter()


def sampled_token_nll(model, outputs, labels, num_sampled: int):
    """Sampled-softmax token cross-entropy (Jean et al. 2015), for training only.

    Each target's softmax runs over its own class and `num_sampled` classes drawn
    from a log-uniform (Zipf) proposal over the vocabulary, shared by the batch,
    with the usual correction for the proposal. Cost per target token is
    proportional to `num_sampled` instead of the vocabulary size. The result is a
    biased, lower estimate of the full cross-entropy: report the full one (`token_nll`).

    Args:
        model: the `DialogueModel` whose output layer (tied or not) scores the classes.
        outputs: `(M, decoder_dim)` decoder outputs at the real target positions.
        labels: `(M,)` int32 target token ids.
        num_sampled: sampled classes per batch.
    Returns:
        (summed sampled loss in nats, M as float32).
    """
    import tensorflow as tf
    from keras import ops

    projection = model.output_projection
    if model.tie_embeddings:
        weights, inputs = model.embedding.embeddings, projection.adapter(outputs)  # (V, E), (M, E)
    else:
        weights, inputs = tf.transpose(projection.kernel), outputs  # (V, D), (M, D)
    loss = tf.nn.sampled_softmax_loss(
        weights=weights,
        biases=projection.bias,
        labels=ops.cast(labels, "int64")[:, None],
        inputs=ops.cast(inputs, "float32"),
        num_sampled=num_sampled,
        num_classes=model.vocabulary_size,
    )
    return ops.sum(loss), ops.cast(ops.shape(labels)[0], "float32")


def use_sampled_softmax(model, num_sampled: int) -> None:
    """Make an HRED/VHRED train on `sampled_token_nll` (validation keeps the full softmax).

    The measured-and-rejected experiment lives here, not in `chatbot.models`: on Chit-Chat it
    trains 2.2x faster but the full-softmax perplexity grows instead of falling (docs/benchmarks.md).
    """
    full = model.target_nll

    def target_nll(replies, conditioning, training=False):
        if not training:
            return full(replies, conditioning, training)
        return sampled_token_nll(model, *model.decoder_outputs(replies, conditioning, training), num_sampled)

    model.target_nll = target_nll


def run_row(row: str, args, tokenizer, windows_for, counts_for) -> str:
    import keras

    from chatbot.config import model_config
    from chatbot.models import build_model, dtype_policy
    from chatbot.training.data import WindowBatches

    architecture, sizes, variants = parse_row(row)
    overrides = REFERENCE_SIZES if sizes == "reference" else {}
    config = model_config(args.preset, vocabulary_size=tokenizer.vocabulary_size, model=architecture, **overrides)
    windows = windows_for(config)
    batches = WindowBatches(windows, args.batch_size, seed=0, bucket_width=10**6 if "unbucketed" in variants else 8)
    before = matmul_gflops("float32"), matmul_gflops("bfloat16")
    keras.utils.set_random_seed(0)
    with dtype_policy("mixed_bfloat16" if "bf16" in variants else "float32"):
        groups = 1 if "ungrouped" in variants else 4
        model = build_model(config, length_groups=groups)  # the models without length groups ignore it
        if "sampled" in variants:
            use_sampled_softmax(model, SAMPLED_CLASSES)
        model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), jit_compile="xla" in variants)
        flops = flops_per_target_token(model, counts_for(config))
        data = batches.dataset().repeat()
        try:
            # Trace the step. XLA compiles once per batch shape (minutes on this CPU), so it gets one warm-up step.
            warmup = 1 if "xla" in variants else args.warmup_steps
            model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
            stop = stop_after(args.seconds)
            model.fit(data, steps_per_epoch=10**6, epochs=1, verbose=0, shuffle=False, callbacks=[stop])
        except Exception as exc:  # noqa: BLE001  a variant that cannot run is a result too
            message = str(exc).strip().splitlines()[0][:90]
            return f"{row:<24} failed: {type(exc).__name__}: {message}"
    after = matmul_gflops("float32"), matmul_gflops("bfloat16")
    fp32, bf16 = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    tokens_per_second = float(stop.logs["tokens"]) / stop.seconds
    padding = batches.padding_share(groups if architecture in CHUNKED else 1)  # Seq2Seq and the LM run unchunked
    gflops = tokens_per_second * flops / 1e9
    return (
        f"{row:<24} {tokens_per_second:>9.0f} {padding:>8.1%} {flops / 1e6:>9.1f} {gflops:>8.1f} "
        f"{fp32:>7.0f} {gflops / fp32:>7.1%} {bf16:>7.0f} {gflops / bf16:>7.1%} {stop.seconds / stop.steps:>7.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="MODEL[:VARIANT[+VARIANT]] (see above)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=40.0, help="timed training per row, after the warm-up")
    parser.add_argument("--warmup-steps", type=int, default=6)
    parser.add_argument("--max-dialogues", type=int, default=1500, help="first N Chit-Chat dialogues (their train split)")
    args = parser.parse_args()
    for row in args.rows:
        try:
            parse_row(row)
        except ValueError as exc:
            parser.error(str(exc))

    import tensorflow as tf

    # Each row builds and fits a new model, which TensorFlow's retracing counter mistakes for retracing.
    tf.get_logger().setLevel("ERROR")

    from chatbot.corpus import load_corpus
    from chatbot.text.tokenizer import Tokenizer
    from chatbot.training.data import dialogue_windows

    train = load_corpus("chitchat", max_dialogues=args.max_dialogues).split("train")
    tokenizer = Tokenizer.train([t.text for d in train for t in d.turns], 8000)
    cache: dict = {}

    def windows_for(config):
        key = (config.max_turns, config.max_utterance_length)
        if key not in cache:
            cache[key] = dialogue_windows(train, tokenizer, *key)
        return cache[key]

    def counts_for(config):
        return window_counts(windows_for(config))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"TensorFlow {tf.__version__}; preset {args.preset}, batch {args.batch_size} windows, {len(train)} train dialogues"
    )
    print(
        f"{'row':<24} {'tok/s':>9} {'padding':>8} {'MFLOP/tok':>9} {'GFLOP/s':>8} "
        f"{'fp32 mm':>7} {'of fp32':>7} {'bf16 mm':>7} {'of bf16':>7} {'s/step':>7}",
        flush=True,
    )
    for row in args.rows:
        print(run_row(row, args, tokenizer, windows_for, counts_for), flush=True)
    return 0


if __name__ == "__main__":
    _common.run(main)
