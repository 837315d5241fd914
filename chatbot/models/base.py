"""What every dialogue model shares: embeddings, the output projection, the
masked token loss, metrics, and Keras `train_step` / `test_step`.

A subclass implements `loss_terms(tokens, training)`, returning summed terms
(so batches of any size combine exactly), plus the inference contract
(DESIGN.md):

    encode_context(context_tokens) -> state
    decode_step(token_ids, state) -> (logits, state)

Models with a latent variable set `latent_dim > 0`; their `encode_context`
takes `latent_noise` `(batch_size, latent_dim)` standard-normal draws, so a
caller that seeds the noise reproduces a reply exactly.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from chatbot.tokenizer import PAD_ID


@keras.saving.register_keras_serializable(package="chatbot")
class Perplexity(keras.metrics.Mean):
    """Per-token perplexity: exp of the token-weighted mean negative log-likelihood (nats)."""

    def result(self):
        return ops.exp(super().result())


def masked_token_nll(projection, outputs, targets):
    """Summed token cross-entropy over the real (non-padding) target positions.

    Padding never reaches the vocabulary-sized matmul: only real positions are projected.

    Args:
        projection: layer mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits.
        outputs: `(num_targets, utterance_length, decoder_dim)` decoder outputs.
        targets: `(num_targets, utterance_length)` int32 token ids, 0 = padding.
    Returns:
        (summed negative log-likelihood in nats, number of target tokens as float32).
    """
    mask = ops.not_equal(targets, PAD_ID)  # (N, L)
    return token_nll(projection, tf.boolean_mask(outputs, mask), tf.boolean_mask(targets, mask))


def token_nll(projection, outputs, labels):
    """Summed token cross-entropy of decoder outputs at real target positions.

    Args:
        projection: layer mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits.
        outputs: `(M, decoder_dim)` decoder outputs, one per target token.
        labels: `(M,)` int32 target token ids.
    Returns:
        (summed negative log-likelihood in nats, M as float32).
    """
    # Under mixed precision the projection computes in bfloat16; the softmax and its sum stay float32.
    logits = ops.cast(projection(outputs), "float32")  # (M, V)
    nll = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # (M,)
    return ops.sum(nll), ops.cast(ops.shape(labels)[0], "float32")


def chunk_rows(tensor, order, start, end, length=None):
    """Rows `order[start:end]` of `tensor`, cut to `length` steps; `tensor` itself when `order` is None."""
    if order is None:
        return tensor
    rows = tf.gather(tensor, order[start:end])
    return rows if length is None else rows[:, :length]


def sampled_token_nll(projection, outputs, labels, num_sampled: int):
    """Sampled-softmax token cross-entropy (Jean et al. 2015), for training only.

    Each target's softmax runs over its own class and `num_sampled` classes drawn
    from a log-uniform (Zipf) proposal over the vocabulary, shared by the batch,
    with the usual correction for the proposal. Cost per target token is
    proportional to `num_sampled` instead of the vocabulary size. The result is a
    biased, lower estimate of the full cross-entropy: report the full one (`token_nll`).

    Args:
        projection: the Dense output projection (its kernel `(decoder_dim, vocabulary_size)` and bias are used).
        outputs: `(M, decoder_dim)` decoder outputs at the real target positions.
        labels: `(M,)` int32 target token ids.
        num_sampled: sampled classes per batch.
    Returns:
        (summed sampled loss in nats, M as float32).
    """
    loss = tf.nn.sampled_softmax_loss(
        weights=tf.transpose(projection.kernel),  # (V, D)
        biases=projection.bias,
        labels=ops.cast(labels, "int64")[:, None],
        inputs=ops.cast(outputs, "float32"),
        num_sampled=num_sampled,
        num_classes=projection.units,
    )
    return ops.sum(loss), ops.cast(ops.shape(labels)[0], "float32")


def length_sorted_chunks(token_ids, groups: int):
    """Split rows into `groups` chunks of similar length, each cut to its longest row.

    Rows are sorted by their number of non-padding tokens and cut into `groups`
    near-equal chunks; a chunk of short rows is then run for fewer time steps,
    which is where padding costs (an RNN pays for every step of every row).

    Args:
        token_ids: `(N, L)` int32, right-padded with 0.
        groups: number of chunks (1: one chunk, the rows in their order).
    Returns:
        (order `(N,)` int32, the rows sorted by length, or None for one chunk; a list of
        `(start, end, length)` scalars: chunk `g` is rows `order[start:end]` cut to `length` steps).
    """
    if groups <= 1:
        return None, [(None, None, None)]
    lengths = ops.sum(ops.cast(ops.not_equal(token_ids, PAD_ID), "int32"), axis=1)  # (N,)
    order = tf.argsort(lengths, stable=True)
    ordered = tf.gather(lengths, order)
    count = tf.shape(lengths)[0]
    chunks = []
    for g in range(groups):
        start, end = count * g // groups, count * (g + 1) // groups
        # An empty chunk (fewer rows than groups) gets length 1: zero rows, one step.
        longest = tf.maximum(tf.reduce_max(tf.concat([ordered[start:end], [0]], axis=0)), 1)
        chunks.append((start, end, longest))
    return order, chunks


def existing_targets(*tensors, replies):
    """Drop padding turns: keep rows whose reply exists.

    Args:
        tensors: each `(batch_size, num_targets, ...)`, aligned with `replies`.
        replies: `(batch_size, num_targets, utterance_length)` int32, padding turns all 0.
    Returns:
        the replies and each tensor flattened to `(N, ...)` over the N existing replies.
    """
    exists = ops.not_equal(replies[:, :, 0], PAD_ID)  # (B, T-1)
    return [tf.boolean_mask(replies, exists)] + [tf.boolean_mask(t, exists) for t in tensors]


class DialogueModel(keras.Model):
    """Base class: token embedding, output projection, loss and metrics.

    Input of `train_step` and `test_step`: `(batch_size, num_turns, utterance_length)`
    int32 token ids, 0 = padding; each utterance is `[BOS] tokens [EOS]` padded on
    the right, and padding turns (all zeros) come after the real ones. Every turn
    after the first is a target.
    """

    latent_dim = 0  # > 0: encode_context takes latent_noise

    def __init__(self, vocabulary_size: int, embedding_dim: int = 128, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.output_projection = keras.layers.Dense(vocabulary_size, name="output_projection")
        self.embedding_dropout = keras.layers.Dropout(dropout)
        self.output_dropout = keras.layers.Dropout(dropout)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.perplexity_tracker = Perplexity(name="perplexity")
        self.token_tracker = keras.metrics.Sum(name="tokens")  # target tokens seen this epoch

    def build(self, input_shape=None):
        # Run once on a dummy dialogue so every sublayer creates its weights
        # (needed before loading weights from a .keras file).
        dummy = ops.ones((1, 2, 3), dtype="int32")
        self.loss_terms(dummy, training=False)
        self.decode_step(ops.ones((1,), dtype="int32"), self.encode_context(dummy))

    def embed(self, token_ids, training=False):
        """`(...)` int32 → `(..., embedding_dim)` with dropout while training."""
        return self.embedding_dropout(self.embedding(token_ids), training=training)

    # --- to implement ----------------------------------------------------

    def loss_terms(self, tokens, training=False) -> dict:
        """Summed loss terms of a batch: at least "nll" (nats) and "tokens" (count, float32)."""
        raise NotImplementedError

    def encode_context(self, context_tokens):
        raise NotImplementedError

    def decode_step(self, token_ids, state):
        raise NotImplementedError

    # --- training --------------------------------------------------------

    def objective(self, terms: dict, training: bool):
        """The minimised loss per target token (nats); also what the "loss" metric reports."""
        return terms["nll"] / ops.maximum(terms["tokens"], 1.0)

    def bound_nll(self, terms: dict):
        """Summed negative log-likelihood (or its upper bound) behind the reported perplexity, in nats."""
        return terms["nll"]

    def token_loss(self, tokens, training=False):
        """(mean negative log-likelihood, or its bound, per target token in nats, number of target tokens)."""
        terms = self.loss_terms(tokens, training)
        return self.bound_nll(terms) / ops.maximum(terms["tokens"], 1.0), terms["tokens"]

    @property
    def metrics(self):
        return [self.loss_tracker, self.perplexity_tracker, self.token_tracker]

    def update_metrics(self, loss, terms: dict, training: bool = False) -> dict:
        count = terms["tokens"]
        self.loss_tracker.update_state(loss, sample_weight=count)
        self.perplexity_tracker.update_state(self.bound_nll(terms) / ops.maximum(count, 1.0), sample_weight=count)
        self.token_tracker.update_state(count)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        tokens, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(tokens, training=True)
            loss = self.objective(terms, training=True)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.update_metrics(loss, terms, training=True)

    def test_step(self, data):
        tokens, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        terms = self.loss_terms(tokens, training=False)
        return self.update_metrics(self.objective(terms, training=False), terms, training=False)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
        }
