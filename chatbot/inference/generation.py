"""Replies from a model: encode the context, run a sampler, optionally rerank by MMI.

`ReplyGenerator` compiles (XLA) an encoder graph per utterance-length bucket
and a decoder graph per sampler shape (`samplers.graph_key`) that runs the
whole token loop in-graph: one reply costs two graph calls. With
`compiled=False` the very same code runs eagerly, op by op: the reference
path tests and `benchmarks/reply_latency.py` compare against.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from chatbot.inference.compiler import BackgroundCompiler
from chatbot.inference.decoding import EARLIER_REPLY_TURNS, DecodingConfig
from chatbot.inference.samplers import INVALID, Knobs, graph_key, make_sampler, sequences
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "N of the last M calls triggered tf.function retracing" warning: this module makes
    one tf.function per graph key on purpose (each traced once), which that counter mistakes for retracing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingWarning())

MMI_CANDIDATES = 8  # sampled candidates reranked when MMI is on and fewer are asked for
MMI_PREFIX_TOKENS = 5  # the anti-language-model penalty covers only the first tokens (Li et al. 2016, sec. 4.2, gamma)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One generated reply.

    token_ids: the reply without start and end tokens.
    log_probability: model log p(reply | context) in nats (temperature 1), end token included when reached.
    score: what candidates are ranked by: length-normalised log-probability, or the MMI score when reranked.
    ended: the model ended the reply (False: cut at max_reply_tokens).
    compiled: made by the XLA-compiled graphs (False: the same code run eagerly while they compiled).
        Both paths give the same tokens for the same seed (tests/test_seed_paths.py); only the model's
        last-bit rounding differs, which can flip a sampled token in a near-tie (about 1 draw in 5000
        from the whole vocabulary, 1 in 50000 under top-k or top-p, measured on the shipped model).
    """

    token_ids: tuple[int, ...]
    log_probability: float
    score: float
    ended: bool
    compiled: bool = True


class ReplyGenerator:
    """Generates candidate replies from one model.

    A reply is two graph calls: `encode` (the context into a decoder state, one
    copy per candidate) and `decode` (the whole token loop, `tf.while_loop`).
    Both are compiled with XLA, which fuses the per-token ops: on a CPU the step
    then costs little more than its matrix-vector products. XLA compiles one
    program per input shape, so contexts are padded to a fixed shape: turns to
    `context_shape[0]`, utterances up to a multiple of UTTERANCE_BUCKET tokens.

    Args:
        model: meets the inference contract: `encode_context(context_tokens) -> state`,
            `decode_step(token_ids, state) -> (logits, state)`; a model with
            `latent_dim > 0` (VHRED) takes `encode_context(context_tokens, latent_noise)`.
        context_shape: (turns, utterance_length) of the longest context, in turns and tokens.
        compiled: run compiled graphs (True), or the same code eagerly, op by op (the reference path).
        background_compile: when a reply needs graphs not compiled yet, compile them in a
            background thread (`compiler`, a BackgroundCompiler) and answer eagerly meanwhile (the
            chat: a new setting answers in a second instead of waiting seconds for XLA). Off:
            compile on the spot (eval, benchmarks), and `compiler` is None.
    """

    UTTERANCE_BUCKET = 16  # tokens: utterance lengths are padded up to a multiple of this

    def __init__(self, model, context_shape: tuple[int, int], compiled: bool = True, background_compile: bool = False):
        self.model = model
        self.context_shape = (int(context_shape[0]), int(context_shape[1]))
        self.compiled = compiled
        self.latent_dim = int(getattr(model, "latent_dim", 0))
        self.vocabulary_size = int(model.vocabulary_size)
        self._functions: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.compiler = BackgroundCompiler() if background_compile else None
        self._compiling: set[tuple] = set()  # keys a background warm-up is compiling
        self._compiled: set[tuple] = set()  # keys whose graphs have run compiled
        self._eager_only: set[tuple] = set()  # keys whose background compile failed

    # --- graphs ---------------------------------------------------------------

    def _function(self, key: tuple, build):
        with self._lock:
            if key not in self._functions:
                function = build()
                # autograph=False: the graphs are TensorFlow ops already (the token loop is an explicit
                # tf.while_loop), and AutoGraph's rewrite of their Python source was most of a process's
                # first trace (5.4 of 6.6 s under cProfile in a piped chat), for the same graph.
                self._functions[key] = tf.function(function, jit_compile=True, autograph=False) if self.compiled else function
            return self._functions[key]

    def _encode_function(self, copies: int, per_copy_latent: bool, utterance_length: int):
        """`(1, T, L)` context tokens and `(copies, latent_dim)` noise → a decoder state for `copies` sequences.

        A latent model draws one z per copy when `per_copy_latent` (sampled candidates), else one
        shared z (beams); other models encode once and tile."""

        def build():
            def encode(context_tokens, noise):
                if self.latent_dim and per_copy_latent:
                    return self.model.encode_context(tf.repeat(context_tokens, copies, axis=0), noise)
                return self._tiled_state(context_tokens, noise, copies)

            return encode

        return self._function(("encode", copies, per_copy_latent, utterance_length), build)

    def _tiled_state(self, context_tokens, noise, copies):
        """Encode one context (a latent model with the first noise row) and repeat the state `copies` times."""
        if self.latent_dim:
            state = self.model.encode_context(context_tokens, noise[:1])
        else:
            state = self.model.encode_context(context_tokens)
        return tf.nest.map_structure(lambda s: tf.repeat(s, copies, axis=0), state)

    def _decode_function(self, config: DecodingConfig, copies: int):
        def build():
            sampler = make_sampler(config, self.vocabulary_size)

            def decode(state, context, seed, knobs):
                return sampler(self.model.decode_step, state, tf.repeat(context, copies, axis=0), seed, knobs)

            return decode

        return self._function(("decode", copies) + graph_key(config), build)

    def _lm_function(self, max_tokens: int, utterance_length: int):
        """Log p(reply | empty context) over each reply's first MMI_PREFIX_TOKENS predicted tokens."""

        def build():
            def score(context_tokens, noise, replies):
                copies = tf.shape(replies)[0]
                state = self._tiled_state(context_tokens, noise, copies)
                inputs = tf.concat([tf.fill([copies, 1], BOS_ID), replies[:, :-1]], axis=1)

                def body(step, state, total):
                    logits, state = self.model.decode_step(inputs[:, step], state)
                    target = replies[:, step]
                    log_prob = tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32)), target, batch_dims=1)
                    counted = tf.not_equal(target, PAD_ID)
                    return step + 1, state, total + tf.where(counted, log_prob, 0.0)

                steps = min(max_tokens, MMI_PREFIX_TOKENS)
                initial = (tf.constant(0), state, tf.zeros([copies]))
                return tf.while_loop(lambda step, *_: step < steps, body, initial, maximum_iterations=steps)[2]

            return score

        return self._function(("lm", max_tokens, utterance_length), build)

    def padded(self, context_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The context padded for the encoder and for n-gram blocking.

        Args:
            context_tokens: `(1, num_turns, utterance_length)` int32; the encoder reads the last
                `context_shape[0]` turns, the bot's earlier replies are looked for in the last
                `EARLIER_REPLY_TURNS` (those an odd number of turns before the last, the message
                answered, as in a conversation that alternates).
        Returns:
            (`(1, turns, bucketed length)` for the encoder, `(1, 2, EARLIER_REPLY_TURNS * utterance_length)`:
            the turns the encoder reads, then the bot's earlier replies only), both int32.
        Raises:
            ValueError: utterances longer than `context_shape[1]`.
        """
        turns, length = self.context_shape
        _, given_turns, given_length = context_tokens.shape
        if given_length > length:
            raise ValueError(f"context {context_tokens.shape[1:]} exceeds the generator's context shape {self.context_shape}")
        read = min(given_turns, turns)
        full = np.zeros((1, turns, length), np.int32)
        full[:, :read, :given_length] = context_tokens[:, given_turns - read :]
        used = np.flatnonzero(full.any(axis=(0, 1)))  # token columns holding any real token
        longest = int(used[-1]) + 1 if used.size else 1
        bucket = min(length, -(-longest // self.UTTERANCE_BUCKET) * self.UTTERANCE_BUCKET)
        searched = min(given_turns, EARLIER_REPLY_TURNS)
        earlier = np.zeros((1, EARLIER_REPLY_TURNS, length), np.int32)
        earlier[:, :searched, :given_length] = context_tokens[:, given_turns - searched :]
        earlier[:, searched - 1 :: -2] = 0  # the message answered, and the user's turns before it
        every = np.zeros((1, EARLIER_REPLY_TURNS * length), np.int32)
        every[:, : turns * length] = full.reshape(1, -1)
        return full[:, :, :bucket], np.stack([every, earlier.reshape(1, -1)], axis=1)

    def _claim(self, keys: list[tuple]) -> tuple[bool, bool, bool]:
        """(ready, busy, start) for the graphs of `keys`: ready, they have run compiled; busy, a background
        compile of them runs or failed (what needs them runs eagerly or one by one meanwhile); start, this
        caller is to compile them in the background (marked compiling here, so only one caller does)."""
        with self._lock:
            ready = self._compiled.issuperset(keys)
            busy = bool(self._compiling.intersection(keys) or self._eager_only.intersection(keys))
            start = self.compiled and self.compiler is not None and not busy and not ready
            if start:
                self._compiling.update(keys)
        return ready, busy, start

    def _compile_in_background(self, keys: list[tuple], run_compiled: Callable[[], object]) -> None:
        """Compile `keys`' graphs by running them once, `run_compiled()` (in the compiler's thread); what needs
        them runs eagerly or one by one (same code, same tokens) until this returns. If compiling fails,
        they stay so."""
        try:
            run_compiled()
        except Exception:  # noqa: BLE001 - the eager path gives the same tokens; never a traceback in the chat
            with self._lock:
                self._eager_only.update(keys)
        finally:
            with self._lock:
                self._compiling.difference_update(keys)

    def _keys(self, config: DecodingConfig, utterance_length: int) -> list[tuple]:
        copies = self.num_sequences(config)
        return [("encode", copies, config.sampler != "beam", utterance_length), ("decode", copies) + graph_key(config)]

    # --- public -------------------------------------------------------------

    def num_sequences(self, config: DecodingConfig) -> int:
        """How many sequences one reply decodes: the beams, or the candidates (more when MMI reranks)."""
        if config.sampler == "beam":
            return config.num_beams
        if config.mmi_weight > 0:
            return max(config.num_return_sequences, MMI_CANDIDATES)
        return config.num_return_sequences

    def candidates(self, context_tokens: np.ndarray, config: DecodingConfig, seed: int, eager: bool = False) -> list[Candidate]:
        """The `config.num_return_sequences` best candidate replies, best first.

        Args:
            context_tokens: `(1, num_turns, utterance_length)` int32 framed history, 0 = padding.
            seed: the candidates are a pure function of (model, context, config, seed), on either path:
                it seeds the latent noise (VHRED) and every random draw.
            eager: run the graphs' code eagerly even when compiled (what a reply does while they compile).
        """
        padded = self.padded(context_tokens)
        if eager:
            return self._candidates(padded, config, seed, eager=True)
        keys = self._keys(config, padded[0].shape[-1])
        _, busy, start = self._claim(keys)
        found = self._candidates(padded, config, seed, eager=busy or start)
        if start and self.compiler is not None:  # after the eager reply, so the compiler does not compete with it for the cores
            self.compiler.start(self._compile_in_background, keys, lambda: self._candidates(padded, config, 0, eager=False))
        return found

    def _candidates(self, padded, config: DecodingConfig, seed: int, eager: bool) -> list[Candidate]:
        """Candidates for `padded` = `self.padded(context_tokens)`, compiled or (eager) op by op."""
        copies = self.num_sequences(config)
        encoder_input, context_ids = padded
        # A seed may be negative (OpenAI's are any integer): NumPy gets it modulo 2^32, unchanged for the seeds it took before.
        noise = np.random.default_rng(seed % 2**32).standard_normal((copies, max(self.latent_dim, 1))).astype(np.float32)
        noise = tf.constant(noise[:, : self.latent_dim])
        encode = self._encode_function(copies, config.sampler != "beam", encoder_input.shape[-1])
        decode = self._decode_function(config, copies)
        if eager and self.compiled:  # the graphs are still compiling in the background: run their Python functions
            encode, decode = encode.python_function, decode.python_function
        state = encode(tf.constant(encoder_input), noise)
        output = decode(state, tf.constant(context_ids), tf.constant(seed, tf.int32), Knobs.of(config))
        if self.compiled and not eager:
            with self._lock:
                self._compiled.update(self._keys(config, encoder_input.shape[-1]))
        compiled = self.compiled and not eager
        found = [Candidate(tuple(ids), log_prob, score, ended, compiled) for ids, log_prob, score, ended in sequences(output)]
        replies = output.replies
        if config.sampler == "beam":  # the pool's unused slots and never-started beams
            valid = [c.score > INVALID for c in found]
            found = [c for c, ok in zip(found, valid, strict=True) if ok]
            replies = tf.boolean_mask(replies, valid)
        if config.mmi_weight > 0:
            found = self._mmi_rerank(found, replies, noise, config)
        found.sort(key=lambda c: -c.score)
        return found[: config.num_return_sequences]

    def warm_up(self, config: DecodingConfig) -> float:
        """Compile, now, the graphs `config` needs for every utterance-length bucket; returns the seconds
        it took. A server calls it before it says it is ready, so its first replies do not wait for XLA."""
        started = time.perf_counter()
        turns, length = self.context_shape
        for bucket in sorted({min(length, b) for b in range(self.UTTERANCE_BUCKET, length + self.UTTERANCE_BUCKET, self.UTTERANCE_BUCKET)}):
            context = np.zeros((1, turns, length), np.int32)
            context[0, 0, :bucket] = BOS_ID
            context[0, 0, bucket - 1] = EOS_ID
            self._candidates(self.padded(context), config, 0, eager=False)
        return time.perf_counter() - started

    def generate(self, context_tokens: np.ndarray, config: DecodingConfig, seed: int) -> list[int]:
        """The best candidate's token ids (without start and end tokens)."""
        return list(self.candidates(context_tokens, config, seed)[0].token_ids)

    def _mmi_rerank(self, found: list[Candidate], replies, noise, config: DecodingConfig) -> list[Candidate]:
        """MMI-antiLM (Li et al. 2016, eq. 9 with the gamma cut of sec. 4.2): score = the length-normalised
        log p(T|S) - lambda * log U(T), where U is the model's own probability of the reply after an empty
        context, over its first MMI_PREFIX_TOKENS tokens: replies likely whatever was said lose."""
        empty = np.zeros((1, 1, self.UTTERANCE_BUCKET), np.int32)
        empty[0, 0, :2] = (BOS_ID, EOS_ID)
        zero_noise = tf.zeros_like(noise)  # the prior mean for a latent model
        score = self._lm_function(config.max_reply_tokens, self.UTTERANCE_BUCKET)
        language_model = score(tf.constant(empty), zero_noise, replies).numpy()
        return [dataclasses.replace(c, score=c.score - config.mmi_weight * float(u)) for c, u in zip(found, language_model, strict=True)]
