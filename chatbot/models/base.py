"""DialogueModel: what every dialogue model shares, and the losses.

Embeddings (scaled, optionally tied to the output layer), the output
projection, context centering, the masked token loss, the context probe,
metrics, and the loss Keras's own `train_step` differentiates (`call` + `compute_loss`,
the same on TensorFlow and JAX).

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
from keras import ops

from chatbot.models.layers import (  # noqa: F401 (chunk_rows, length_sorted_chunks, pad_steps: re-exported for the models)
    TENSORFLOW,
    ContextCentering,
    chunk_rows,
    length_sorted_chunks,
    pad_steps,
)
from chatbot.models.replicas import global_result, global_sum, multi_worker

# On TensorFlow, padding is skipped with dynamic shapes (boolean masks, length-sorted chunks);
# JAX compiles one program per static shape, so there every padded position is computed and masked.
if TENSORFLOW:
    import tensorflow as tf

from chatbot.text.tokenizer import PAD_ID


@keras.saving.register_keras_serializable(package="chatbot")
class Perplexity(keras.metrics.Mean):
    """Per-token perplexity: exp of the token-weighted mean negative log-likelihood (nats)."""

    def result(self):
        return ops.exp(super().result())


def real_positions(outputs, targets):
    """Decoder outputs and labels at the target positions, flattened.

    On TensorFlow only the real (non-padding) positions are kept, so padding never
    reaches the vocabulary-sized matmul; on other backends every position is kept
    (static shapes) and `token_nll` masks the padding labels.

    Args:
        outputs: `(N, utterance_length, decoder_dim)`.
        targets: `(N, utterance_length)` int32 token ids, 0 = padding.
    Returns:
        (`(M, decoder_dim)`, `(M,)` int32): M = real target tokens (TensorFlow) or N × utterance_length.
    """
    if TENSORFLOW:
        mask = ops.not_equal(targets, PAD_ID)  # (N, L)
        return tf.boolean_mask(outputs, mask), tf.boolean_mask(targets, mask)
    return ops.reshape(outputs, (-1, ops.shape(outputs)[-1])), ops.reshape(targets, (-1,))


def masked_token_nll(projection, outputs, targets):
    """Summed token cross-entropy over the real (non-padding) target positions.

    Args:
        projection: callable mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits (`DialogueModel.logits`).
        outputs: `(num_targets, utterance_length, decoder_dim)` decoder outputs.
        targets: `(num_targets, utterance_length)` int32 token ids, 0 = padding.
    Returns:
        (summed negative log-likelihood in nats, number of target tokens as float32).
    """
    return token_nll(projection, *real_positions(outputs, targets))


def token_nll(projection, outputs, labels):
    """Summed token cross-entropy of decoder outputs; padding labels (0) count for nothing.

    Args:
        projection: callable mapping `(M, decoder_dim)` → `(M, vocabulary_size)` logits (`DialogueModel.logits`).
        outputs: `(M, decoder_dim)` decoder outputs, one per target position.
        labels: `(M,)` int32 target token ids, 0 = padding.
    Returns:
        (summed negative log-likelihood in nats, number of real labels as float32).
    """
    # Under mixed precision the projection computes in bfloat16; the softmax and its sum stay float32.
    logits = ops.cast(projection(outputs), "float32")  # (M, V)
    nll = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # (M,)
    real = ops.cast(ops.not_equal(labels, PAD_ID), "float32")  # (M,)
    return ops.sum(nll * real), ops.sum(real)


def reply_weights(replies):
    """1.0 for a row that is a real reply, 0.0 for a padding turn kept by `existing_targets`.

    `(N, utterance_length)` int32 → `(N,)` float32 (all ones on TensorFlow).
    """
    return ops.cast(ops.not_equal(replies[:, 0], PAD_ID), "float32")


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
    dialogue (see `chatbot.evaluation.evaluate.context_probe`).

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


def existing_targets(*tensors, replies):
    """Flatten the target turns; on TensorFlow, drop padding turns (rows whose reply does not exist).

    On other backends every turn is kept (static shapes): a padding turn's reply is
    all padding, so its tokens count for nothing, and `reply_weights` marks its row.

    Args:
        tensors: each `(batch_size, num_targets, ...)`, aligned with `replies`.
        replies: `(batch_size, num_targets, utterance_length)` int32, padding turns all 0.
    Returns:
        the replies and each tensor flattened to `(N, ...)`: the N existing replies
        (TensorFlow) or all batch_size × num_targets turns.
    """
    if not TENSORFLOW:
        return [ops.reshape(t, (-1, *ops.shape(t)[2:])) for t in (replies, *tensors)]
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
            they are concatenated with (docs/training.md, "What was wrong with the models").
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

    def compile(self, *args, **kwargs):
        """Keras's `compile`, then the optimizer's slot variables built at once (the model is built on
        construction). Left unbuilt, Keras builds them inside the first traced train step, and TensorFlow
        then traces that step a second time without creating them: twice the tracing before a `fit`'s
        first batch. Call `compile` again after changing which layers are trainable, as Keras asks."""
        super().compile(*args, **kwargs)
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """What Keras's does (compile a loaded model as it was saved, so its optimizer state loads too), which
        Keras skips, with a warning, for a model whose `compile` is its own."""
        self.compile(**keras.saving.deserialize_keras_object(config))

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

    def condition(self, context, training=False, weights=None):
        """The context vector as the decoder (and VHRED's prior and posterior) see it: centred when
        `center_context` is on. `(N, context_dim)` → `(N, context_dim)`; `weights` `(N,)` (0 = a
        padding row, see `reply_weights`) keep padding out of the batch mean."""
        if self.context_centering is None:
            return context
        return self.context_centering(context, weights=weights, training=training)

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
        return self.compute_metrics()

    def compute_metrics(self, x=None, y=None, y_pred=None, sample_weight=None):
        """The logs of a step: every metric over the whole global batch (`global_result`); the
        updates happened in `compute_loss`."""
        logs = {m.name: global_result(m) for m in self.metrics}
        if multi_worker():
            # Keras 3.15 reduces multi-worker logs with a MEAN over axis 0 (reduce_per_replica in
            # keras/src/backend/tensorflow/trainer.py), which a scalar lacks: give each log that axis.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def call(self, tokens, training=False):
        """`(batch_size, num_turns, utterance_length)` int32 → the batch's summed loss terms (`loss_terms`)."""
        return self.loss_terms(tokens, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The minimised loss of a batch whose terms `call` returned; updates the metrics.

        Keras's own `train_step` differentiates this on every backend (TensorFlow's
        GradientTape, JAX's `value_and_grad`). The metrics see the replica's own
        per-token objective; the returned loss divides the replica's summed loss by
        the token count of the global batch (`global_sum`), so that the gradients
        `tf.distribute` adds over replicas are one device's on the whole batch.
        """
        terms = y_pred
        loss = self.objective(terms, training)
        self.update_metrics(loss, terms, training)
        return loss * ops.maximum(terms["tokens"], 1.0) / ops.maximum(global_sum(terms["tokens"]), 1.0)

    def compute_loss_and_updates(self, *args, optimizer_variables=None, **kwargs):
        """JAX's trainer only: expose the optimizer's step count as a traced value while the loss is
        computed (`training_step`); read from the optimizer's variable, it would be a constant
        captured when the step was compiled."""
        step = None
        if optimizer_variables is not None:
            index = [id(v) for v in self.optimizer.variables].index(id(self.optimizer.iterations))
            step = optimizer_variables[index]
        self._traced_step = step
        try:
            return super().compute_loss_and_updates(*args, optimizer_variables=optimizer_variables, **kwargs)
        finally:
            self._traced_step = None

    def training_step(self):
        """Optimizer updates applied so far (a scalar tensor): what schedules inside the loss read."""
        step = getattr(self, "_traced_step", None)
        return step if step is not None else self.optimizer.iterations

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
