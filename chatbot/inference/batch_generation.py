"""BatchReplyGenerator: several requests' replies decoded as one padded batch, each exactly as it is decoded alone.

A reply at batch size 1 is memory-bound (each decoder step reads every weight for
one token), so a server decodes concurrent requests together. A batch pads its
requests to a compiled size (`batch_sizes`), encodes every context at the full
utterance length, and decodes with one seed per request (`samplers.uniforms`):
request r draws exactly the numbers it draws alone, and the compiled programs do
the same arithmetic per row, so each reply is the one `candidates` gives alone
(checked token for token in `tests/test_serve_batching.py`). Requests batch when
they share a `batch_key`: sampler graph, knobs and candidate count; beam search
and MMI reranking are decoded alone.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import tensorflow as tf

from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.generation import Candidate, ReplyGenerator
from chatbot.inference.samplers import Knobs, graph_key, make_sampler, sequences
from chatbot.text.tokenizer import BOS_ID, EOS_ID


class BatchReplyGenerator(ReplyGenerator):
    """A ReplyGenerator that can also decode several requests in one batch (`candidates_batch`).

    Attributes:
        batches: how many batches of each number of requests were decoded together (not counting
            warm-ups, nor batches decoded one by one while their program compiled).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: Counter[int] = Counter()

    def batch_key(self, config: DecodingConfig) -> tuple | None:
        """What requests must share to be decoded in one batch: the sampler's graph, its knobs and the
        sequences per request; None when `config` is decoded alone (beam search keeps one context's
        hypotheses together; MMI reranks per context)."""
        if config.sampler == "beam" or config.mmi_weight > 0:
            return None
        knobs = (config.temperature, config.top_k, config.top_p, config.length_penalty, config.min_reply_tokens)
        return (graph_key(config), knobs, self.num_sequences(config))

    @staticmethod
    def batch_sizes(max_batch: int) -> list[int]:
        """The padded batch sizes a batch is rounded up to: powers of two from 2, and `max_batch`
        (each one compiled program)."""
        sizes = [2**i for i in range(1, 7) if 2**i < max_batch]
        return sizes + [max_batch] if max_batch > 1 else []

    def _batch_encode_function(self, size: int, copies: int):
        """`(size, turns, utterance_length)` contexts and `(size * copies, latent_dim)` noise → a decoder state
        with `copies` consecutive rows per context (a latent model: one z per copy, as alone)."""

        def build():
            def encode(context_tokens, noise):
                if self.latent_dim:
                    return self.model.encode_context(tf.repeat(context_tokens, copies, axis=0), noise)
                state = self.model.encode_context(context_tokens)
                return tf.nest.map_structure(lambda s: tf.repeat(s, copies, axis=0), state)

            return encode

        return self._function(("encode batch", size, copies), build)

    def _batch_decode_function(self, config: DecodingConfig, size: int, copies: int):
        def build():
            sampler = make_sampler(config, self.vocabulary_size)

            def decode(state, context, seeds, knobs):
                return sampler(self.model.decode_step, state, tf.repeat(context, copies, axis=0), seeds, knobs)

            return decode

        return self._function(("decode batch", size, copies) + graph_key(config), build)

    def candidates_batch(self, requests: list[tuple[np.ndarray, DecodingConfig, int]]) -> list[list[Candidate]]:
        """The candidates of several requests decoded as one padded batch: for each request, what
        `candidates(context_tokens, config, seed)` returns for it alone.

        Args:
            requests: (context_tokens `(1, num_turns, utterance_length)` int32, config, seed) each; their
                configs share one `batch_key`. The batch is padded to the next of `batch_sizes`
                with copies of the first request (decoded, then dropped). Until that size's programs are
                compiled (`warm_up`, or, with a `compiler`, in the background after the first batch of
                that size), the requests are decoded one by one, with the same results.
        Raises:
            ValueError: the configs do not share a batch key, or one cannot be batched.
        """
        config = requests[0][1]
        key = self.batch_key(config)
        if key is None or any(self.batch_key(c) != key for _, c, _ in requests):
            raise ValueError("candidates_batch: the requests need one batch key (same sampler, knobs and candidates; no beam or MMI)")
        size = next((s for s in self.batch_sizes(64) if s >= len(requests)), len(requests))
        keys = [("encode batch", size, self.num_sequences(config)), ("decode batch", size, self.num_sequences(config)) + graph_key(config)]
        ready, _, start = self._claim(keys)
        if not ready:  # this size is not compiled yet: each alone, then (once) compile it in the background
            found = [self.candidates(context, c, seed) for context, c, seed in requests]
            if start and self.compiler is not None:  # after the replies, so the compiler does not compete with them
                self.compiler.start(self._compile_in_background, keys, lambda: self.warm_up(config, [size], alone=False))
            return found
        found = self._candidates_batch(requests, size)
        self.batches[len(requests)] += 1
        return found

    def _candidates_batch(self, requests, size: int) -> list[list[Candidate]]:
        config = requests[0][1]
        copies = self.num_sequences(config)
        turns, length = self.context_shape
        padded = [self.padded(context) for context, _, _ in requests]
        padded += [padded[0]] * (size - len(requests))
        contexts = np.zeros((size, turns, length), np.int32)
        for row, (encoder_input, _) in enumerate(padded):
            contexts[row, :, : encoder_input.shape[-1]] = encoder_input[0]
        context_ids = np.concatenate([ids for _, ids in padded], axis=0)
        seeds = [seed for _, _, seed in requests] + [requests[0][2]] * (size - len(requests))
        noise = np.concatenate(
            [np.random.default_rng(seed % 2**32).standard_normal((copies, max(self.latent_dim, 1))).astype(np.float32) for seed in seeds]
        )[:, : self.latent_dim]
        state = self._batch_encode_function(size, copies)(tf.constant(contexts), tf.constant(noise))
        decode = self._batch_decode_function(config, size, copies)
        output = decode(state, tf.constant(context_ids), tf.constant(seeds, tf.int32), Knobs.of(config))
        with self._lock:
            self._compiled.update([("encode batch", size, copies), ("decode batch", size, copies) + graph_key(config)])
        rows = sequences(output)
        results = []
        for index, (_, request_config, _) in enumerate(requests):
            found = [
                Candidate(tuple(ids), log_prob, score, ended) for ids, log_prob, score, ended in rows[index * copies : (index + 1) * copies]
            ]
            found.sort(key=lambda c: -c.score)
            results.append(found[: request_config.num_return_sequences])
        return results

    def warm_up(self, config: DecodingConfig, batch_sizes: list[int] | tuple[int, ...] = (), alone: bool = True) -> float:
        """Compile, now, the graphs `config` needs alone (with `alone`, every utterance-length bucket) and for
        batches of `batch_sizes`; returns the seconds it took."""
        started = time.perf_counter()
        if alone:
            super().warm_up(config)
        if self.batch_key(config) is not None:
            context = np.zeros((1, 1, 2), np.int32)
            context[0, 0] = (BOS_ID, EOS_ID)
            for size in batch_sizes:
                self._candidates_batch([(context, config, index) for index in range(size)], size)
        return time.perf_counter() - started
