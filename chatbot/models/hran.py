"""HRAN: HRED with hierarchical attention over the stored history (Xing et al. 2018).

HRED squeezes the whole history into one context vector, so a fact named a few
turns back is hard to say again. HRAN keeps HRED's utterance encoder, context
RNN and decoder, and at every decoder step looks back at every word of the
history in two levels (Xing et al., AAAI 2018, "Hierarchical Recurrent
Attention Network for Response Generation", sec. 3):

    word level       α_ij = softmax_j(q_w(s) · k_w(h_ij) / √A)      within utterance i
                     r_i  = Σ_j α_ij h_ij                            utterance i's summary
    utterance level  β_i  = softmax_i(q_u(s) · (k_u(r_i) + k_c(c_i)) / √A)   over the context turns
                     a    = Σ_i β_i r_i
    output           h̃    = s + tanh(W [s; a])                        scored by the output projection

with h_ij the utterance encoder's state at word j of context utterance i, c_i
the context RNN's state after turn i, s the decoder's output at this step,
and q, k learned projections to A = decoder_dim units (`HierarchicalAttention`).

Where this departs from the paper, and why:
- Scores are bilinear (Luong et al. 2015, "general"), not additive (tanh). Then
  an utterance's score is linear in its summary, q_u · k_u(r_i) = Σ_j α_ij
  q_u · k_u(h_ij), so training never builds the `(replies, steps, turns,
  units)` summaries: three batched matmuls over the flattened history do it.
- The query is the decoder's output at this step (Luong), not its previous
  state, and the attended vector joins the output, not the GRU's input: teacher
  forcing stays one fused RNN call, as in HRED. It joins as a residual with W
  starting at zero, so HRAN starts as HRED computes: `--init-from` a trained
  HRED loses nothing on the first update (with Luong's tanh(W [s; a]) the same
  start measured train perplexity 113 against HRED's 68 after 100 updates).
- Utterance-level keys carry the context RNN's forward state c_i (order and
  recency) where the paper runs a backward RNN over the summaries, and
  word-level scores are not conditioned on that RNN.

Padding words and padding turns are masked; a reply in training attends only to
the turns before it. No latent-variable variant: VHRED's prior and posterior sit
on the context vector, which HRAN leaves as HRED's.
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.models.base import (
    TENSORFLOW,
    chunk_rows,
    length_sorted_chunks,
    pad_steps,
    probe_context,
    real_positions,
    reply_weights,
    token_nll,
)
from chatbot.models.hred import HRED, last_turn
from chatbot.text.tokenizer import PAD_ID

if TENSORFLOW:
    import tensorflow as tf

MASKED = -1e9  # the score of a padding word or an invisible turn (finite: no NaN in the softmax)


def packed_queries(targets):
    """Each dialogue's real target positions first, so attention is not computed for padding (TensorFlow only).

    Args:
        targets: `(batch_size, num_queries)` int32, 0 = padding.
    Returns:
        (order `(batch_size, longest)` int32: positions, the real ones first and in order, cut to the
        dialogue with most real targets; real `(batch_size, longest)` bool), or (None, None) off TensorFlow
        (static shapes: every position is computed and `token_nll` masks the padding).
    """
    if not TENSORFLOW:
        return None, None
    real = ops.not_equal(targets, PAD_ID)  # (B, Q)
    width = ops.shape(targets)[1]
    order = ops.argsort(ops.cast(ops.logical_not(real), "int32") * width + ops.arange(width, dtype="int32")[None, :], axis=-1)
    counts = ops.sum(ops.cast(real, "int32"), axis=1)  # (B,)
    longest = ops.maximum(ops.max(counts), 1)
    order = order[:, :longest]
    return order, ops.less(ops.arange(longest)[None, :], counts[:, None])


def softmax_last(scores):
    """Softmax over the last axis. Over an axis of one element (a context of one turn, known when the
    graph is traced) it is exp(s - s) = 1 exactly, as `ops.softmax` computes it, but without the Keras
    warning that a softmax over one element is "likely not what you intended", which a chat or a
    training run with one-turn contexts would otherwise print (the gradient stays connected: zero)."""
    if scores.shape[-1] == 1:
        return ops.exp(scores - scores)
    return ops.softmax(scores, axis=-1)


@keras.saving.register_keras_serializable(package="chatbot")
class HierarchicalAttention(keras.layers.Layer):
    """Word-level attention within each context utterance, then utterance-level attention across them.

    `memory(words, context, word_mask)` precomputes the keys once per history; `call(queries, memory,
    visible)` attends for any number of queries (every decoder step of every reply while training,
    one step while decoding).

    Args:
        units: A, the units of queries and keys.
        output_dim: units of the attentional output s + tanh(W [s; a]) (those of s).
    """

    def __init__(self, units: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.output_dim = output_dim
        self.word_query = keras.layers.Dense(units, use_bias=False, name="word_query")
        self.word_keys = keras.layers.Dense(units, use_bias=False, name="word_keys")
        self.utterance_query = keras.layers.Dense(units, use_bias=False, name="utterance_query")
        self.utterance_keys = keras.layers.Dense(units, use_bias=False, name="utterance_keys")
        self.turn_keys = keras.layers.Dense(units, use_bias=False, name="turn_keys")
        # Zero at the start, so the output starts as the decoder's own: an HRAN started from an HRED
        # (`--init-from`) starts as that HRED, and a fresh one as an HRED would.
        self.combine = keras.layers.Dense(output_dim, activation="tanh", kernel_initializer="zeros", name="combine")

    def memory(self, words, context, word_mask):
        """The history as attention reads it.

        Args:
            words: `(batch_size, num_turns, utterance_length, encoder_dim)` word states h_ij.
            context: `(batch_size, num_turns, context_dim)` context RNN states c_i.
            word_mask: `(batch_size, num_turns, utterance_length)` bool, False on padding.
        Returns:
            (words, word keys `(B, T, L, A)`, utterance keys `(B, T, L, A)`, turn keys `(B, T, A)`, word_mask).
        """
        return (words, self.word_keys(words), self.utterance_keys(words), self.turn_keys(context), word_mask)

    def call(self, queries, memory, visible):
        """Attend from each query over the history.

        Args:
            queries: `(batch_size, num_queries, decoder_dim)` decoder outputs s.
            memory: as returned by `memory`.
            visible: `(batch_size, num_queries, num_turns)` bool, the turns each query may read
                (padding turns are left out here as well). A query that sees no turn gets a = 0.
        Returns:
            `(batch_size, num_queries, output_dim)`: s + tanh(W [s; a]).
        """
        words, word_keys, utterance_keys, turn_keys, word_mask = memory
        shape = ops.shape(word_keys)
        batch_size, turns, length = shape[0], shape[1], shape[2]
        count = ops.shape(queries)[1]
        scale = float(self.units) ** -0.5

        def flat(tensor):  # (B, T, L, X) → (B, T·L, X)
            return ops.reshape(tensor, (batch_size, turns * length, ops.shape(tensor)[-1]))

        def scores(query, keys):  # (B, Q, A), (B, T, L, A) → (B, Q, T, L) float32
            found = ops.einsum("bqa,bka->bqk", query, flat(keys))
            return ops.reshape(ops.cast(found, "float32"), (batch_size, count, turns, length))

        word_scores = ops.where(word_mask[:, None], scores(self.word_query(queries), word_keys) * scale, MASKED)
        alpha = softmax_last(word_scores)  # (B, Q, T, L)
        utterance_query = self.utterance_query(queries)  # (B, Q, A)
        turn_scores = ops.cast(ops.einsum("bqa,bta->bqt", utterance_query, turn_keys), "float32")  # (B, Q, T)
        utterance_scores = ops.sum(alpha * scores(utterance_query, utterance_keys), axis=-1) + turn_scores
        visible = ops.logical_and(visible, ops.any(word_mask, axis=-1)[:, None, :])  # (B, Q, T)
        beta = softmax_last(ops.where(visible, utterance_scores * scale, MASKED))
        beta = beta * ops.cast(ops.any(visible, axis=-1, keepdims=True), beta.dtype)  # (B, Q, T)
        weights = ops.reshape(beta[..., None] * alpha, (batch_size, count, turns * length))
        attended = ops.einsum("bqk,bkh->bqh", ops.cast(weights, words.dtype), flat(words))  # (B, Q, H')
        return queries + self.combine(ops.concatenate([queries, ops.cast(attended, queries.dtype)], axis=-1))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="chatbot")
class HRAN(HRED):
    """Hierarchical recurrent attention network: HRED whose decoder reads the history's words.

    Args: those of `HRED`; the attention has `decoder_dim` units.
    """

    def __init__(self, vocabulary_size: int, **kwargs):
        super().__init__(vocabulary_size, **kwargs)
        self.attention = HierarchicalAttention(self.decoder_dim, self.decoder_dim, name="hierarchical_attention")

    def decoder_sequences(self, replies, conditioning, training=False):
        """Teacher forcing: the decoder's outputs at every position (HRED's `decoder_outputs` keeps only the
        real ones; attention needs them in place).

        Args:
            replies: `(N, utterance_length)` int32, `[BOS] tokens [EOS]` right-padded.
            conditioning: `(N, context_dim)`.
        Returns:
            (outputs `(N, utterance_length - 1, decoder_dim)`, targets `(N, utterance_length - 1)` int32).
        """
        inputs, targets = self.decoder_inputs(replies[:, :-1], training), replies[:, 1:]  # teacher forcing shift
        order, chunks = length_sorted_chunks(targets, self.length_groups if training else 1)
        outputs = []
        for start, end, length in chunks:
            embedded = self.embed(chunk_rows(inputs, order, start, end, length), training)
            decoded = self.decoder(embedded, chunk_rows(conditioning, order, start, end), training=training)
            outputs.append(decoded if order is None else pad_steps(decoded, ops.shape(targets)[1]))
        outputs = outputs[0] if order is None else ops.take(ops.concatenate(outputs, axis=0), ops.argsort(order), axis=0)
        return outputs, targets

    def loss_terms(self, tokens, training=False, context_mode="true"):
        context, _, words = self.encode_turns(tokens, training, words=True)
        shape = ops.shape(tokens)
        batch_size, num_turns, utterance_length = shape[0], shape[1], shape[2]
        replies_per_dialogue, steps = num_turns - 1, utterance_length - 1
        # Every turn after the first is a target, padding turns included (their rows count for nothing).
        replies = ops.reshape(tokens[:, 1:], (-1, utterance_length))  # (B·R, L)
        conditioning = ops.reshape(context[:, :-1], (-1, self.context_dim))  # (B·R, C)
        conditioning = probe_context(self.condition(conditioning, training, reply_weights(replies)), context_mode)
        memory = self.attention.memory(words[:, :-1], context[:, :-1], ops.not_equal(tokens[:, :-1], PAD_ID))  # turns 0..T-2
        if context_mode == "shuffled":  # another dialogue's history: the one half a batch away, as for the conditioning
            memory = tuple(ops.roll(t, batch_size // 2, axis=0) for t in memory)
        outputs, targets = self.decoder_sequences(replies, conditioning, training)  # (B·R, L-1, D), (B·R, L-1)
        queries = ops.reshape(outputs, (batch_size, replies_per_dialogue * steps, self.decoder_dim))  # (B, Q, D)
        targets = ops.reshape(targets, (batch_size, replies_per_dialogue * steps))  # (B, Q)
        order, real = packed_queries(targets)  # (B, Q') positions of each dialogue's real targets first
        if order is not None:
            queries, targets = ops.take_along_axis(queries, order[..., None], axis=1), ops.take_along_axis(targets, order, axis=1)
        # The reply after turn r reads turns 0..r.
        reply_of_query = (order if order is not None else ops.arange(replies_per_dialogue * steps)[None, :]) // steps  # (B|1, Q')
        visible = ops.less_equal(ops.arange(replies_per_dialogue)[None, None, :], reply_of_query[..., None])  # (B|1, Q', R)
        visible = ops.broadcast_to(visible, (batch_size, ops.shape(queries)[1], replies_per_dialogue))
        if context_mode == "none":
            visible = ops.zeros_like(visible)
        attended = self.output_dropout(self.attention(queries, memory, visible), training=training)  # (B, Q', D)
        if real is not None:  # the real targets, in the order real_positions keeps them
            outputs, labels = tf.boolean_mask(attended, real), tf.boolean_mask(targets, real)
        else:
            outputs, labels = real_positions(attended, targets)
        nll, count = token_nll(self.logits, outputs, labels)
        return {"nll": nll, "tokens": count}

    # --- inference contract ---------------------------------------------

    def encode_context(self, context_tokens):
        """Encode a dialogue history and its attention memory.

        Args:
            context_tokens: `(batch_size, num_turns, utterance_length)` int32, 0 = padding.
        Returns:
            state: `(context, *memory, *decoder_states)`: context `(batch_size, context_dim)` as in HRED,
            the five tensors of `HierarchicalAttention.memory` over the whole history, and each
            decoder state `(batch_size, decoder_dim)`.
        """
        context, _, words = self.encode_turns(context_tokens, words=True)
        conditioning = self.condition(last_turn(context, context_tokens))  # (B, C)
        memory = self.attention.memory(words, context, ops.not_equal(context_tokens, PAD_ID))
        return (conditioning, *memory, *self.decoder.initial_state(conditioning))

    def decode_step(self, token_ids, state):
        """One token: `(batch_size,)` int32 and state → (`(batch_size, vocabulary_size)` logits, state)."""
        conditioning, *rest = state
        memory, states = tuple(rest[:5]), rest[5:]
        output, states = self.decoder.step(self.embed(token_ids), conditioning, states)  # (B, D)
        visible = ops.ones((ops.shape(output)[0], 1, ops.shape(memory[3])[1]), dtype="bool")  # every real turn
        attended = self.attention(output[:, None], memory, visible)[:, 0]  # (B, D)
        return self.logits(attended), (conditioning, *memory, *states)
