"""Samplers: how the next token is picked (greedy, sample, top-k, top-p, beam), in-graph.

They are written once against the step contract

    step_fn(token_ids, state) -> (logits, state)
        token_ids `(batch_size,)` int32, logits `(batch_size, vocabulary_size)`

which every model's `decode_step` meets (docs/architecture.md). The whole reply loop is
TensorFlow ops inside `tf.while_loop`, so under `tf.function` one reply is one
graph call; run eagerly, the same code is the reference path the compiled one
is tested against.

Every sampler shares the logit processing (`Sampler.process`): padding and a
second start token are never emitted, the unknown token is suppressed unless
allowed, the end token is blocked before the minimum length, and n-grams that
would repeat within the reply, repeat one of the bot's earlier replies (so a
chat does not loop on one opener), or copy the context, are blocked. Random draws
use stateless ops seeded by (seed, step), so a seed reproduces a reply exactly, eagerly
or compiled (`uniforms`).

Knobs that change often (temperature, k, p, length penalty, minimum length)
are tensors (`Knobs`), so changing them does not retrace the graph; sizes that
shape the graph (maximum length, n-gram sizes, beams) are Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from chatbot.inference.decoding import DecodingConfig
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

NEG_INF = -1e9  # a blocked logit: finite, so arithmetic on scores never makes NaN
INVALID = -1e8  # scores below this belong to blocked or never-started hypotheses


class Knobs(NamedTuple):
    """The per-reply settings passed to a compiled sampler as scalar tensors."""

    temperature: tf.Tensor  # float32
    top_k: tf.Tensor  # int32
    top_p: tf.Tensor  # float32
    length_penalty: tf.Tensor  # float32, GNMT alpha
    min_reply_tokens: tf.Tensor  # int32

    @classmethod
    def of(cls, config: DecodingConfig) -> Knobs:
        return cls(
            tf.constant(config.temperature, tf.float32),
            tf.constant(config.top_k, tf.int32),
            tf.constant(config.top_p, tf.float32),
            tf.constant(config.length_penalty, tf.float32),
            tf.constant(config.min_reply_tokens, tf.int32),
        )


class Output(NamedTuple):
    """Decoded sequences (batch entries in no particular order).

    replies: `(num_sequences, max_reply_tokens)` int32 token ids, then the end token, then padding.
    log_probs: `(num_sequences,)` float32 model log-probability of each reply in nats
        (temperature 1, before any blocking), counting the end token where it was reached.
    scores: `(num_sequences,)` float32 the ranking score: log_probs divided by the
        GNMT length penalty of the tokens predicted (for beam, over the search's own log-probabilities).
    """

    replies: tf.Tensor
    log_probs: tf.Tensor
    scores: tf.Tensor


def length_penalty(num_tokens, alpha):
    """GNMT length normalisation ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); 1 when alpha = 0."""
    return tf.pow((5.0 + tf.cast(num_tokens, tf.float32)) / 6.0, alpha)


def predicted_tokens(replies):
    """`(N, T)` replies → `(N,)` int32 tokens predicted: the words plus the end token where reached."""
    return tf.reduce_sum(tf.cast(tf.not_equal(replies, PAD_ID), tf.int32), axis=1)


def ngram_bans(history, suffix, vocabulary_size: int):
    """Tokens that would complete an n-gram already present in `history`.

    For each row, every position i where `history[i : i + m]` equals `suffix`
    (the last m = n - 1 tokens generated) bans the token `history[i + m]`.

    Args:
        history: `(batch_size, history_length)` int32, 0 = padding (never matched, never banned).
        suffix: `(batch_size, m)` int32, m >= 0 (m = 0 bans every token in the history).
    Returns:
        `(batch_size, vocabulary_size)` bool, True = banned.
    """
    m = suffix.shape[1]
    windows = tf.maximum(tf.shape(history)[1] - m, 0)  # dynamic: the context length varies
    batch_size = tf.shape(history)[0]
    following = history[:, m : m + windows]  # (B, W): the token after each window
    match = tf.not_equal(following, PAD_ID)
    for j in range(m):  # window token j equals suffix token j
        match &= tf.equal(history[:, j : j + windows], suffix[:, j : j + 1])
    rows = tf.broadcast_to(tf.range(batch_size)[:, None], tf.shape(following))
    indices = tf.reshape(tf.stack([rows, following], axis=-1), (-1, 2))
    counts = tf.scatter_nd(indices, tf.reshape(tf.cast(match, tf.float32), (-1,)), (batch_size, vocabulary_size))
    return counts > 0


class Sampler:
    """Base class: logit processing shared by all samplers, and the sampling loop.

    Args:
        config: the decoding settings; their graph-shaping sizes are read here,
            the rest arrive per call as `Knobs`.
        vocabulary_size: logits per step.
    """

    def __init__(self, config: DecodingConfig, vocabulary_size: int):
        self.vocabulary_size = vocabulary_size
        self.max_reply_tokens = config.max_reply_tokens
        self.no_repeat_ngram = config.no_repeat_ngram
        self.no_context_ngram = config.no_context_ngram
        self.no_earlier_reply_ngram = config.no_earlier_reply_ngram
        banned = [PAD_ID, BOS_ID] + ([] if config.allow_unknown else [UNK_ID])
        self._always_banned = tf.constant([i in banned for i in range(vocabulary_size)])

    # --- logit processing -------------------------------------------------

    def _suffix(self, replies, step, m: int):
        """The last m tokens generated before `step`: `(batch_size, m)` (garbage while step < m)."""
        positions = tf.maximum(step - m + tf.range(m), 0)
        return tf.gather(replies, positions, axis=1)

    def process(self, logits, step, replies, context, knobs: Knobs):
        """Apply the blocks shared by every sampler.

        Args:
            logits: `(batch_size, vocabulary_size)` float32.
            step: scalar int32, index of the token being picked (0 = first).
            replies: `(batch_size, max_reply_tokens)` int32 tokens so far (padding from `step` on).
            context: `(batch_size, context_length)` int32 context tokens, 0 = padding; or
                `(batch_size, 2, context_length)`: every context turn, then the bot's earlier replies only.
        Returns:
            `(batch_size, vocabulary_size)` float32 with blocked tokens at NEG_INF.
        """
        banned = tf.broadcast_to(self._always_banned, tf.shape(logits))
        end = tf.one_hot(EOS_ID, self.vocabulary_size, on_value=True, off_value=False)
        banned |= end[None, :] & (step < knobs.min_reply_tokens)
        whole, earlier = (context[:, 0], context[:, 1]) if context.shape.rank == 3 else (context, None)
        for n, history in ((self.no_repeat_ngram, replies), (self.no_context_ngram, whole), (self.no_earlier_reply_ngram, earlier)):
            if n and history is not None:
                bans = ngram_bans(history, self._suffix(replies, step, n - 1), self.vocabulary_size) & (step >= n - 1)
                banned |= bans if history is replies else bans & ~end[None, :]  # a reply may end where a context turn ended
        return tf.where(banned, NEG_INF, logits)

    # --- the loop ---------------------------------------------------------

    def select(self, logits, step, seed, knobs: Knobs):
        """`(batch_size, vocabulary_size)` processed logits → `(batch_size,)` int32 next tokens."""
        raise NotImplementedError

    def __call__(self, step_fn: Callable, state, context, seed, knobs: Knobs) -> Output:
        """Decode one reply per batch entry.

        Args:
            step_fn: `(token_ids, state) -> (logits, state)`.
            state: the decoder state, every tensor with `batch_size` first.
            context: `(batch_size, context_length)` or `(batch_size, 2, context_length)` int32 (for context
                and earlier-reply n-gram blocking; see `process`).
            seed: scalar int32, entry b's draws differ from entry a's; or `(num_requests,)` int32 for a
                batch of requests with `batch_size // num_requests` entries each, every request drawing
                exactly what it would draw alone with its own seed (`uniforms`).
        """
        batch_size = tf.shape(context)[0]
        length = self.max_reply_tokens
        rows = tf.range(batch_size)

        def body(step, token, state, replies, log_probs, finished):
            logits, state = step_fn(token, state)
            logits = tf.cast(logits, tf.float32)
            model_log_probs = tf.nn.log_softmax(logits)
            chosen = self.select(self.process(logits, step, replies, context, knobs), step, seed, knobs)
            chosen = tf.where(finished, PAD_ID, chosen)
            log_probs += tf.where(finished, 0.0, tf.gather(model_log_probs, chosen, batch_dims=1))
            replies = tf.tensor_scatter_nd_update(replies, tf.stack([rows, tf.fill([batch_size], step)], -1), chosen)
            return step + 1, chosen, state, replies, log_probs, finished | tf.equal(chosen, EOS_ID)

        def cond(step, token, state, replies, log_probs, finished):
            return (step < length) & ~tf.reduce_all(finished)

        initial = (
            tf.constant(0),
            tf.fill([batch_size], BOS_ID),
            state,
            tf.zeros([batch_size, length], tf.int32),
            tf.zeros([batch_size], tf.float32),
            tf.zeros([batch_size], tf.bool),
        )
        _, _, _, replies, log_probs, _ = tf.while_loop(cond, body, initial, maximum_iterations=length)
        scores = log_probs / length_penalty(predicted_tokens(replies), knobs.length_penalty)
        return Output(replies, log_probs, scores)

    @staticmethod
    def _draw(weights, step, seed):
        """One draw per row in proportion to `weights`, seeded by (seed, step): `(batch_size,)` int32.

        Args:
            weights: `(batch_size, n)` float32 >= 0, unnormalised probabilities; 0 = never drawn.

        Inverse-CDF sampling with one stateless uniform per row: the first entry whose
        cumulative weight exceeds u. (The categorical op costs more than the whole model
        step under XLA on a CPU.) The cumulative sum is taken in float64: in float32,
        TensorFlow's running sum (eager) and XLA's tree of partial sums drift apart by up to
        2e-5 over the shipped model's 8000 tokens, more than most tokens' probability, and 1.1%
        of draws from the whole vocabulary differed between the paths; in float64, 0.02%, left
        by the model's own logits, rounded differently on each path (1e-6 apart).
        """
        cumulative = tf.math.cumsum(tf.cast(weights, tf.float64), axis=-1)
        u = tf.cast(uniforms(tf.shape(weights)[0], step, seed), tf.float64)[:, None] * cumulative[:, -1:]
        drawn = tf.reduce_sum(tf.cast(cumulative <= u, tf.int32), axis=-1)
        # rounding can put u at the very top: fall back to the heaviest entry
        return tf.where(drawn < tf.shape(weights)[-1], drawn, tf.argmax(weights, axis=-1, output_type=tf.int32))


def uniforms(rows, step, seed):
    """`(rows,)` float32 uniforms in [0, 1) for one decoding step, seeded by (seed, step).

    `seed` scalar: one stream for all rows. `seed` `(num_requests,)` (a static length): the rows split
    evenly among the requests in order, and request r's rows get the stream of (seed[r], step), the
    very numbers it draws when decoded alone, so batching requests does not change their replies.

    The same numbers on every path: see `_philox_uniforms`.
    """
    if seed.shape.rank == 0:
        return _philox_uniforms(tf.reshape(rows, [1]), tf.stack([seed, step]))
    requests = seed.shape[0]
    per_request = rows // requests
    streams = [_philox_uniforms(tf.reshape(per_request, [1]), tf.stack([seed[r], step])) for r in range(requests)]
    return tf.concat(streams, axis=0)


def _philox_uniforms(shape, seed):
    """`shape` float32 uniforms in [0, 1): Philox's 32-bit words, each word's top 23 bits times 2^-23.

    `tf.random.stateless_uniform` gives other floats eagerly than under XLA for the same seed: both
    paths draw the same Philox words, but TensorFlow's kernel makes a float of a word's low 23 bits
    and XLA of its high 23, so an eager reply and a compiled one sampled other tokens from the
    first on. Here the words are drawn as integers (the same on both paths) and made floats in
    exact arithmetic (a 23-bit integer times a power of two), XLA's way, so replies already made
    compiled keep their tokens (for seeds >= 0, all the chat draws: XLA derived its key from a
    negative seed in another way). The algorithm is named, not auto-selected per device.
    """
    words = tf.random.stateless_uniform(shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    return tf.cast(tf.bitwise.right_shift(words, 9), tf.float32) * 2.0**-23


class GreedySampler(Sampler):
    """The most probable token at every step."""

    def select(self, logits, step, seed, knobs):
        return tf.argmax(logits, axis=-1, output_type=tf.int32)


class RandomSampler(Sampler):
    """Ancestral sampling from softmax(logits / temperature); temperature → 0 approaches greedy."""

    def select(self, logits, step, seed, knobs):
        return self._draw(tf.nn.softmax(logits / knobs.temperature), step, seed)


class TopKSampler(Sampler):
    """Sample among the k most probable tokens (Fan et al. 2018), after the temperature."""

    def select(self, logits, step, seed, knobs):
        values, indices = tf.math.top_k(logits / knobs.temperature, k=tf.minimum(knobs.top_k, self.vocabulary_size))
        return tf.gather(indices, self._draw(tf.nn.softmax(values), step, seed), batch_dims=1)


class TopPSampler(Sampler):
    """Nucleus sampling: the smallest set of most probable tokens whose mass reaches p
    (Holtzman et al. 2019, eq. 3), after the temperature.

    The nucleus is found without sorting the vocabulary (a sort per token costs more
    than the model step on a CPU): bisection finds the largest probability threshold
    whose tokens still hold mass p. Tokens tied at the threshold are all kept.
    """

    BISECTIONS = 24  # halvings of [0, max probability]: the threshold is found to 6e-8 of the top probability

    def select(self, logits, step, seed, knobs):
        probabilities = tf.nn.softmax(logits / knobs.temperature)
        low = tf.zeros_like(probabilities[:, :1])  # mass(low) >= p always holds
        high = tf.reduce_max(probabilities, axis=-1, keepdims=True)  # mass(high) >= p may not
        for _ in range(self.BISECTIONS):
            middle = (low + high) / 2
            mass = tf.reduce_sum(tf.where(probabilities >= middle, probabilities, 0.0), axis=-1, keepdims=True)
            reaches = mass >= knobs.top_p
            low, high = tf.where(reaches, middle, low), tf.where(reaches, high, middle)
        # high itself may reach p (when the top token alone holds p): keep only it then
        top_alone = tf.reduce_max(probabilities, axis=-1, keepdims=True) >= knobs.top_p
        threshold = tf.where(top_alone, high, low)
        return self._draw(tf.where(probabilities >= threshold, probabilities, 0.0), step, seed)


class BeamSampler(Sampler):
    """Beam search with GNMT length normalisation and a minimum length.

    Keeps `num_beams` live hypotheses and a pool of `num_beams` finished ones;
    each step takes the 2k best extensions, moves those ending in the end token
    to the pool (scored log p / lp(|Y|)), keeps the k best others live, and stops
    once no live hypothesis can beat the pool's `num_return_sequences`-th entry.
    Temperature does not apply. The batch is the beams of one context.
    """

    def __init__(self, config: DecodingConfig, vocabulary_size: int):
        super().__init__(config, vocabulary_size)
        self.num_beams = config.num_beams
        self.num_return_sequences = config.num_return_sequences

    def __call__(self, step_fn, state, context, seed, knobs):
        k, length, vocabulary_size = self.num_beams, self.max_reply_tokens, self.vocabulary_size
        width = min(2 * k, k * vocabulary_size)

        def gather(values, index):
            return tf.gather(values, index, axis=0)

        def body(step, token, state, alive, alive_scores, alive_model, done, done_scores, done_model):
            logits, new_state = step_fn(token, state)
            logits = tf.cast(logits, tf.float32)
            model_log_probs = tf.nn.log_softmax(logits)
            log_probs = tf.nn.log_softmax(self.process(logits, step, alive, context, knobs))
            totals = tf.reshape(alive_scores[:, None] + log_probs, [-1])  # (k * V,)
            top_scores, top = tf.math.top_k(totals, k=width)
            beam, chosen = top // vocabulary_size, top % vocabulary_size
            replies = tf.tensor_scatter_nd_update(gather(alive, beam), tf.stack([tf.range(width), tf.fill([width], step)], -1), chosen)
            model = gather(alive_model, beam) + tf.gather_nd(model_log_probs, tf.stack([beam, chosen], -1))
            ends = tf.equal(chosen, EOS_ID) & (top_scores > INVALID)
            # Finished pool: the old pool plus the extensions that end here.
            normalised = tf.where(ends, top_scores / length_penalty(step + 1, knobs.length_penalty), NEG_INF)
            pool_scores, pick = tf.math.top_k(tf.concat([done_scores, normalised], 0), k=k)
            done = gather(tf.concat([done, replies], 0), pick)
            done_model = gather(tf.concat([done_model, model], 0), pick)
            # Live beams: the best k extensions that do not end.
            alive_scores, pick = tf.math.top_k(tf.where(ends, NEG_INF, top_scores), k=k)
            state = tf.nest.map_structure(lambda s: gather(s, gather(beam, pick)), new_state)
            return (
                step + 1,
                gather(chosen, pick),
                state,
                gather(replies, pick),
                alive_scores,
                gather(model, pick),
                done,
                pool_scores,
                done_model,
            )

        def cond(step, token, state, alive, alive_scores, alive_model, done, done_scores, done_model):
            # Log-probabilities only fall, and lp grows with length: the best a live beam can still reach.
            best_possible = tf.reduce_max(alive_scores) / length_penalty(length, knobs.length_penalty)
            settled = done_scores[self.num_return_sequences - 1] >= best_possible
            return (step < length) & ~settled

        initial = (
            tf.constant(0),
            tf.fill([k], BOS_ID),
            state,
            tf.zeros([k, length], tf.int32),
            tf.concat([[0.0], tf.fill([k - 1], NEG_INF)], 0),  # the beams start identical: expand only the first
            tf.zeros([k], tf.float32),
            tf.zeros([k, length], tf.int32),
            tf.fill([k], NEG_INF),
            tf.zeros([k], tf.float32),
        )
        _, _, _, alive, alive_scores, alive_model, done, done_scores, done_model = tf.while_loop(
            cond, body, initial, maximum_iterations=length
        )
        # Hypotheses still live at the length cap compete with the finished ones.
        unfinished = tf.where(alive_scores > INVALID, alive_scores / length_penalty(length, knobs.length_penalty), NEG_INF)
        return Output(tf.concat([done, alive], 0), tf.concat([done_model, alive_model], 0), tf.concat([done_scores, unfinished], 0))


SAMPLER_CLASSES: dict[str, type[Sampler]] = {
    "greedy": GreedySampler,
    "sample": RandomSampler,
    "top_k": TopKSampler,
    "top_p": TopPSampler,
    "beam": BeamSampler,
}


def graph_key(config: DecodingConfig) -> tuple:
    """The settings that shape a sampler's graph; the rest are Knobs."""
    beams = config.num_beams if config.sampler == "beam" else 0
    return (
        config.sampler,
        config.max_reply_tokens,
        config.no_repeat_ngram,
        config.no_context_ngram,
        config.no_earlier_reply_ngram,
        config.allow_unknown,
        beams,
        config.num_return_sequences if beams else 0,
    )


def make_sampler(config: DecodingConfig, vocabulary_size: int) -> Sampler:
    return SAMPLER_CLASSES[config.sampler](config, vocabulary_size)


def sequences(output: Output) -> list[tuple[list[int], float, float, bool]]:
    """NumPy view of an Output: per sequence (token ids without the end token, log-prob, score, ended)."""
    result = []
    for row, log_prob, score in zip(output.replies.numpy(), output.log_probs.numpy(), output.scores.numpy(), strict=True):
        ids = [int(t) for t in row if t != PAD_ID]
        ended = bool(ids) and ids[-1] == EOS_ID
        result.append((ids[:-1] if ended else ids, float(log_prob), float(score), ended))
    return result
