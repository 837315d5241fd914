"""DialogueModel: what every dialogue model shares, and the losses.

Embeddings (scaled, optionally tied to the output layer), the output
projection, context centering, the masked token loss, the context probe,
metrics, and Keras `train_step` / `test_step`.

A subclass implements `loss_terms(tokens, training, context_mode)`, returning
summed terms (so batches of any size combine exactly), plus the inference
contract (docs/architecture.md):

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

from chatbot.models.layers import ContextCentering
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
        projection: callable mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits (`DialogueModel.logits`).
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
        projection: callable mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits (`DialogueModel.logits`).
        outputs: `(M, decoder_dim)` decoder outputs, one per target token.
        labels: `(M,)` int32 target token ids.
    Returns:
        (summed negative log-likelihood in nats, M as float32).
    """
    # Under mixed precision the projection computes in bfloat16; the softmax and its sum stay float32.
    logits = ops.cast(projection(outputs), "float32")  # (M, V)
    nll = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # (M,)
    return ops.sum(nll), ops.cast(ops.shape(labels)[0], "float32")


CONTEXT_MODES = ("true", "shuffled", "none")


def probe_context(tensor, mode: str):
    """The conditioning of each reply as seen by a context probe.

    "true" leaves it; "shuffled" gives each reply the conditioning of the reply
    half a batch away (`roll` by N // 2 rows: in the batches of `WindowBatches`
    that is another dialogue's history, except in a batch of a single window,
    where it is another turn of the same dialogue); "none" replaces it by zeros:
    no information about this dialogue (for a model with `center_context`, zero
    is the average context; without it, the state of an empty history). The
    perplexity gap between the modes measures how much the model uses the
    dialogue (see `chatbot.evaluation.context_probe`).

    Args:
        tensor: `(N, ...)`, one row per reply.
        mode: one of `CONTEXT_MODES`.
    Returns:
        `(N, ...)`, same dtype.
    Raises:
        ValueError: unknown mode.
    """
    if mode == "true":
        return tensor
    if mode == "shuffled":
        return ops.roll(tensor, ops.shape(tensor)[0] // 2, axis=0)
    if mode == "none":
        return ops.zeros_like(tensor)
    raise ValueError(f"context mode must be one of {CONTEXT_MODES}, got {mode!r}")


def chunk_rows(tensor, order, start, end, length=None):
    """Rows `order[start:end]` of `tensor`, cut to `length` steps; `tensor` itself when `order` is None."""
    if order is None:
        return tensor
    rows = tf.gather(tensor, order[start:end])
    return rows if length is None else rows[:, :length]


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


@keras.saving.register_keras_serializable(package="chatbot")
class TiedOutputProjection(keras.layers.Layer):
    """Next-token logits scored against the input embedding (Press & Wolf 2017; Inan et al. 2017).

    logits = W h · Eᵀ + b, with W `(decoder_dim, embedding_dim)` learned here and E
    the model's embedding matrix `(vocabulary_size, embedding_dim)`, passed at call
    time so the layer owns no copy of it. A word's input and output vectors are one
    vector, learned from both directions, and the vocabulary-sized matmul runs in
    `embedding_dim` instead of `decoder_dim` units.

    Call args:
        outputs: `(..., decoder_dim)` float.
        embeddings: `(vocabulary_size, embedding_dim)` float, the embedding table.
    Returns:
        `(..., vocabulary_size)` logits.
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.adapter = keras.layers.Dense(embedding_dim, name="adapter")

    def build(self, input_shape):
        self.adapter.build(input_shape)
        self.bias = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros", name="bias")

    def call(self, outputs, embeddings):
        projected = self.adapter(outputs)  # (..., E)
        return ops.matmul(projected, ops.transpose(ops.cast(embeddings, projected.dtype))) + ops.cast(self.bias, projected.dtype)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "embedding_dim": self.embedding_dim}


class DialogueModel(keras.Model):
    """Base class: token embedding, output projection, loss and metrics.

    Input of `train_step` and `test_step`: `(batch_size, num_turns, utterance_length)`
    int32 token ids, 0 = padding; each utterance is `[BOS] tokens [EOS]` padded on
    the right, and padding turns (all zeros) come after the real ones. Every turn
    after the first is a target.
    """

    latent_dim = 0  # > 0: encode_context takes latent_noise

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 128,
        dropout: float = 0.1,
        tie_embeddings: bool = False,
        scale_embeddings: bool = False,
        center_context: bool = False,
        **kwargs,
    ):
        """Args:
        vocabulary_size: number of token ids.
        embedding_dim: units of a token embedding.
        dropout: rate on embeddings and decoder outputs while training.
        tie_embeddings: score decoder outputs against the embedding table
            (`TiedOutputProjection`) instead of a separate `(decoder_dim, vocabulary_size)` layer.
        scale_embeddings: the table starts N(0, 1/embedding_dim) and is multiplied by
            sqrt(embedding_dim) where it enters an RNN (Vaswani et al. 2017, sec. 3.4), so
            token inputs have unit scale from the first update. Off, Keras's default
            uniform ±0.05 table feeds the RNNs 35× weaker token signals than the context
            they are concatenated with (README, "What was wrong").
        center_context: the decoder sees the context vector minus its running mean
            (`ContextCentering`), so the context cannot stand in for a bias.
        The defaults (False) are those of models saved before these options existed;
        new models get all three from `ModelConfig`.
        """
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.tie_embeddings = tie_embeddings
        self.scale_embeddings = scale_embeddings
        self.center_context = center_context
        self.context_centering = ContextCentering(name="context_centering") if center_context else None
        initializer = keras.initializers.RandomNormal(stddev=embedding_dim**-0.5) if scale_embeddings else "uniform"
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, embeddings_initializer=initializer, name="embedding")
        if tie_embeddings:
            self.output_projection = TiedOutputProjection(vocabulary_size, embedding_dim, name="output_projection")
        else:
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
        """`(...)` int32 → `(..., embedding_dim)` RNN inputs (scaled, see `scale_embeddings`), dropout while training."""
        embedded = self.embedding(token_ids)
        if self.scale_embeddings:
            embedded = embedded * ops.cast(self.embedding_dim**0.5, embedded.dtype)
        return self.embedding_dropout(embedded, training=training)

    def condition(self, context, training=False):
        """The context vector as the decoder (and VHRED's prior and posterior) see it: centred when
        `center_context` is on. `(N, context_dim)` → `(N, context_dim)`."""
        return self.context_centering(context, training=training) if self.context_centering is not None else context

    def logits(self, outputs):
        """`(..., decoder_dim)` decoder outputs → `(..., vocabulary_size)` next-token logits."""
        if self.tie_embeddings:
            return self.output_projection(outputs, self.embedding.embeddings)
        return self.output_projection(outputs)

    # --- to implement ----------------------------------------------------

    def loss_terms(self, tokens, training=False, context_mode="true") -> dict:
        """Summed loss terms of a batch: at least "nll" (nats) and "tokens" (count, float32).

        `context_mode` ("true", "shuffled", "none") is the context probe: see `probe_context`.
        """
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
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
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
            "tie_embeddings": self.tie_embeddings,
            "scale_embeddings": self.scale_embeddings,
            "center_context": self.center_context,
        }
