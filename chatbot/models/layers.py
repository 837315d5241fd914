"""The RNN building blocks of the hierarchical models (Serban et al. 2016, section 3).

Each layer stores its init arguments and chains `get_config()`, so the whole
model round-trips through the native ``.keras`` format with ``safe_mode`` on.
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.models.replicas import global_sum
from chatbot.text.tokenizer import PAD_ID

TENSORFLOW = keras.backend.backend() == "tensorflow"
if TENSORFLOW:
    import tensorflow as tf

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


def _rnn(cell: str, units: int, **kwargs) -> keras.layers.Layer:
    return CELLS[cell](units, **kwargs)


@keras.saving.register_keras_serializable(package="chatbot")
class UtteranceEncoder(keras.layers.Layer):
    """Encodes each utterance into one vector: the final state of an RNN over its tokens.

    Call args:
        embedded: `(batch_size, utterance_length, embedding_dim)` float token embeddings.
        token_mask: `(batch_size, utterance_length)` bool, False on padding.
    Returns:
        `(batch_size, output_dim)` float, where `output_dim` is `hidden_dim`, or
        `2 * hidden_dim` when bidirectional (forward and backward final states).
    """

    def __init__(self, hidden_dim: int, cell: str = "gru", bidirectional: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.cell = cell
        self.bidirectional = bidirectional
        rnn = _rnn(cell, hidden_dim, return_sequences=True, return_state=True, name="rnn")
        self.rnn = keras.layers.Bidirectional(rnn, merge_mode="concat", name="bidirectional") if bidirectional else rnn

    @property
    def output_dim(self) -> int:
        return self.hidden_dim * (2 if self.bidirectional else 1)

    def call(self, embedded, token_mask=None, training=False, return_sequences=False):
        """With `return_sequences`, also the per-token outputs `(batch_size, utterance_length, output_dim)`
        (for attention): returns `(sequences, vector)`."""
        sequences, *states = self.rnn(embedded, mask=token_mask, training=training)
        # Final hidden state per direction: GRU states are [h] per direction, LSTM [h, c].
        per_direction = len(states) // (2 if self.bidirectional else 1)
        finals = states[::per_direction]
        vector = ops.concatenate(finals, axis=-1) if len(finals) > 1 else finals[0]
        return (sequences, vector) if return_sequences else vector

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "cell": self.cell, "bidirectional": self.bidirectional}


@keras.saving.register_keras_serializable(package="chatbot")
class ContextEncoder(keras.layers.Layer):
    """The context RNN: runs over utterance vectors, one step per turn.

    Call args:
        utterance_vectors: `(batch_size, num_turns, input_dim)` float.
        turn_mask: `(batch_size, num_turns)` bool, False on padding turns.
    Returns:
        `(batch_size, num_turns, context_dim)` float: the dialogue state after each turn.
    """

    def __init__(self, context_dim: int, cell: str = "gru", **kwargs):
        super().__init__(**kwargs)
        self.context_dim = context_dim
        self.cell = cell
        self.rnn = _rnn(cell, context_dim, return_sequences=True, name="rnn")

    def call(self, utterance_vectors, turn_mask=None, training=False):
        return self.rnn(utterance_vectors, mask=turn_mask, training=training)

    def get_config(self):
        return {**super().get_config(), "context_dim": self.context_dim, "cell": self.cell}


@keras.saving.register_keras_serializable(package="chatbot")
class UtteranceDecoder(keras.layers.Layer):
    """Decoder RNN conditioned on a context vector (Serban et al. 2016, eq. 3).

    The context vector sets the initial state (through a tanh projection) and is
    concatenated to every input embedding. `call` runs teacher forcing over a
    whole utterance; `step` advances one token with the same cell weights, so the
    two paths give the same numbers.
    """

    def __init__(self, decoder_dim: int, cell: str = "gru", **kwargs):
        super().__init__(**kwargs)
        self.decoder_dim = decoder_dim
        self.cell = cell
        self.rnn = _rnn(cell, decoder_dim, return_sequences=True, name="rnn")
        num_states = 2 if cell == "lstm" else 1
        self.initial_projections = [
            keras.layers.Dense(decoder_dim, activation="tanh", name=f"initial_state_{i}") for i in range(num_states)
        ]

    def initial_state(self, context):
        """`(batch_size, context_dim)` → list of `(batch_size, decoder_dim)` RNN states."""
        return [projection(context) for projection in self.initial_projections]

    def call(self, embedded, context, training=False):
        """Teacher forcing.

        Args:
            embedded: `(batch_size, utterance_length, embedding_dim)` embeddings of the shifted target.
            context: `(batch_size, conditioning_dim)` float conditioning vector.
        Returns:
            `(batch_size, utterance_length, decoder_dim)` decoder outputs.
        """
        utterance_length = ops.shape(embedded)[1]
        tiled = ops.repeat(ops.expand_dims(context, 1), utterance_length, axis=1)  # (B, L, C)
        inputs = ops.concatenate([embedded, tiled], axis=-1)  # (B, L, E + C)
        return self.rnn(inputs, initial_state=self.initial_state(context), training=training)

    def step(self, embedded, context, states):
        """One decoding step.

        Args:
            embedded: `(batch_size, embedding_dim)` embedding of the previous token.
            context: `(batch_size, conditioning_dim)`.
            states: list of `(batch_size, decoder_dim)` RNN states.
        Returns:
            (`(batch_size, decoder_dim)` output, new list of states).
        """
        inputs = ops.concatenate([embedded, context], axis=-1)  # (B, E + C)
        output, new_states = self.rnn.cell(inputs, list(states) if self.cell == "lstm" else states[0])
        if not isinstance(new_states, (list, tuple)):
            new_states = [new_states]
        return output, list(new_states)

    def get_config(self):
        return {**super().get_config(), "decoder_dim": self.decoder_dim, "cell": self.cell}


def chunk_rows(tensor, order, start, end, length=None):
    """Rows `order[start:end]` of `tensor`, cut to `length` steps; `tensor` itself when `order` is None."""
    if order is None:
        return tensor
    rows = tf.gather(tensor, order[start:end])
    return rows if length is None else rows[:, :length]


def pad_steps(tensor, length):
    """`(n, l, ...)` right-padded with zeros to `(n, length, ...)` (a chunk's outputs back to the batch's length)."""
    padding = [[0, 0], [0, length - tf.shape(tensor)[1]]] + [[0, 0]] * (len(tensor.shape) - 2)
    return tf.pad(tensor, padding)


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
    if groups <= 1 or not TENSORFLOW:  # chunks of data-dependent length: TensorFlow only
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


@keras.saving.register_keras_serializable(package="chatbot")
class ContextCentering(keras.layers.Layer):
    """Mean-only batch normalisation of the context (Salimans & Kingma 2016, sec. 2.2).

    While training, the batch mean of the context vectors is subtracted; otherwise
    its running mean (updated while training). What is left is only what differs
    between dialogues, so the context cannot serve the decoder as a constant bias,
    and the gradient that reaches the context RNN has no common component that
    pushes every dialogue's state the same way into tanh saturation.

    Under `tf.distribute` the batch mean is that of the global batch (summed over
    replicas, as Keras's synchronized batch normalisation does), so several devices
    centre exactly as one does.

    Call args:
        context: `(batch_size, context_dim)` float.
        weights: optional `(batch_size,)` float, 0 for rows left out of the batch mean (padding).
    Returns:
        `(batch_size, context_dim)`, centred.
    """

    def __init__(self, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        # "mean": every replica assigns the same value (the global mean), which tf.distribute requires named.
        self.moving_mean = self.add_weight(
            shape=(input_shape[-1],), initializer="zeros", trainable=False, name="moving_mean", aggregation="mean"
        )

    def call(self, context, weights=None, training=False):
        if training:
            weights = ops.ones(ops.shape(context)[:1], context.dtype) if weights is None else ops.cast(weights, context.dtype)
            total = global_sum(ops.sum(context * weights[:, None], axis=0))  # (C,)
            mean = total / ops.maximum(global_sum(ops.sum(weights)), 1.0)  # (C,)
            self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * ops.cast(mean, self.moving_mean.dtype))
            return context - mean
        return context - ops.cast(self.moving_mean, context.dtype)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}
