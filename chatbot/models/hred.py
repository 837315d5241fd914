"""HRED: the hierarchical recurrent encoder-decoder (Serban et al. 2016).

An utterance encoder turns each utterance into a vector; a context RNN runs
over those vectors, one step per turn; a decoder generates utterance t+1 from
the context state after turn t. Training reads windows of whole dialogues:
each utterance is encoded once and every turn after the first is a target in
the same pass, with teacher forcing and masked token cross-entropy.

Inference contract (shared by every model and used by every sampler):
    encode_context(context_tokens) -> state
    decode_step(token_ids, state) -> (logits, state)
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from chatbot.models.layers import ContextEncoder, UtteranceDecoder, UtteranceEncoder
from chatbot.tokenizer import PAD_ID


@keras.saving.register_keras_serializable(package="chatbot")
class Perplexity(keras.metrics.Mean):
    """Per-token perplexity: exp of the token-weighted mean negative log-likelihood (nats)."""

    def result(self):
        return ops.exp(super().result())


@keras.saving.register_keras_serializable(package="chatbot")
class HRED(keras.Model):
    """Hierarchical recurrent encoder-decoder.

    Args:
        vocabulary_size: number of token ids (SentencePiece pieces).
        embedding_dim, hidden_dim, context_dim, decoder_dim: layer sizes in units.
        cell: "gru" or "lstm", for all three RNNs.
        bidirectional: the utterance encoder reads both directions.
        dropout: rate on embeddings and decoder outputs while training.

    Input of `call`, `train_step` and `test_step`:
        `(batch_size, num_turns, utterance_length)` int32 token ids, 0 = padding;
        each utterance is `[BOS] tokens [EOS]` padded on the right, and padding
        turns (all zeros) come after the real ones.
    """

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 128,
        hidden_dim: int = 256,
        context_dim: int = 256,
        decoder_dim: int = 256,
        cell: str = "gru",
        bidirectional: bool = False,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.context_dim = context_dim
        self.decoder_dim = decoder_dim
        self.cell = cell
        self.bidirectional = bidirectional
        self.dropout = dropout

        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.utterance_encoder = UtteranceEncoder(hidden_dim, cell, bidirectional, name="utterance_encoder")
        self.context_encoder = ContextEncoder(context_dim, cell, name="context_encoder")
        self.decoder = UtteranceDecoder(decoder_dim, cell, name="decoder")
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
        self._decoder_outputs(dummy, training=False)
        self.decode_step(ops.ones((1,), dtype="int32"), self.encode_context(dummy))

    # --- shared pieces --------------------------------------------------

    def _context_states(self, tokens, training=False):
        """Context RNN output after every turn.

        tokens: `(batch_size, num_turns, utterance_length)` → `(batch_size, num_turns, context_dim)`.
        """
        shape = ops.shape(tokens)
        batch_size, num_turns, utterance_length = shape[0], shape[1], shape[2]
        flat = ops.reshape(tokens, (-1, utterance_length))  # (B*T, L)
        embedded = self.embedding_dropout(self.embedding(flat), training=training)  # (B*T, L, E)
        vectors = self.utterance_encoder(embedded, token_mask=ops.not_equal(flat, PAD_ID), training=training)  # (B*T, H')
        vectors = ops.reshape(vectors, (batch_size, num_turns, self.utterance_encoder.output_dim))  # (B, T, H')
        turn_mask = ops.any(ops.not_equal(tokens, PAD_ID), axis=-1)  # (B, T)
        return self.context_encoder(vectors, turn_mask=turn_mask, training=training)  # (B, T, C)

    def _decoder_outputs(self, tokens, training=False):
        """Teacher-forced decoder outputs for every target turn that exists.

        Returns:
            outputs: `(num_targets, utterance_length - 1, decoder_dim)`,
            targets: `(num_targets, utterance_length - 1)` int32, 0 = padding,
            where num_targets counts the non-padding turns after the first.
        """
        context = self._context_states(tokens, training)[:, :-1]  # (B, T-1, C): state before each target
        replies = tokens[:, 1:]  # (B, T-1, L)
        # Skip padding turns: decode only turns that exist.
        exists = ops.not_equal(replies[:, :, 0], PAD_ID)  # (B, T-1)
        replies = tf.boolean_mask(replies, exists)  # (N, L)
        context = tf.boolean_mask(context, exists)  # (N, C)
        inputs, targets = replies[:, :-1], replies[:, 1:]  # (N, L-1) each: teacher forcing shift
        embedded = self.embedding_dropout(self.embedding(inputs), training=training)  # (N, L-1, E)
        outputs = self.decoder(embedded, context, training=training)  # (N, L-1, D)
        return self.output_dropout(outputs, training=training), targets

    def call(self, tokens, training=False):
        """Logits for every target token.

        Returns:
            `(num_targets, utterance_length - 1, vocabulary_size)` float logits;
            see `_decoder_outputs` for num_targets.
        """
        outputs, _ = self._decoder_outputs(tokens, training)
        return self.output_projection(outputs)

    # --- training -------------------------------------------------------

    def token_loss(self, tokens, training=False):
        """Masked token cross-entropy under teacher forcing.

        Returns:
            (mean negative log-likelihood per target token in nats, number of target tokens).
        """
        outputs, targets = self._decoder_outputs(tokens, training)
        mask = ops.not_equal(targets, PAD_ID)  # (N, L-1)
        # Project only real positions: padding never reaches the vocabulary-sized matmul.
        logits = self.output_projection(tf.boolean_mask(outputs, mask))  # (M, V)
        labels = tf.boolean_mask(targets, mask)  # (M,)
        nll = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # (M,)
        count = ops.cast(ops.shape(labels)[0], "float32")
        return ops.sum(nll) / ops.maximum(count, 1.0), count

    @property
    def metrics(self):
        return [self.loss_tracker, self.perplexity_tracker, self.token_tracker]

    def _update_metrics(self, loss, count):
        self.loss_tracker.update_state(loss, sample_weight=count)
        self.perplexity_tracker.update_state(loss, sample_weight=count)
        self.token_tracker.update_state(count)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        tokens, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, count = self.token_loss(tokens, training=True)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._update_metrics(loss, count)

    def test_step(self, data):
        tokens, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, count = self.token_loss(tokens, training=False)
        return self._update_metrics(loss, count)

    # --- inference contract ---------------------------------------------

    def encode_context(self, context_tokens):
        """Encode a dialogue history.

        Args:
            context_tokens: `(batch_size, num_turns, utterance_length)` int32, 0 = padding.
        Returns:
            state: tuple `(context, *decoder_states)` with context `(batch_size, context_dim)`
            (the context RNN state after the last turn) and each decoder state
            `(batch_size, decoder_dim)`.
        """
        context = self._context_states(context_tokens)  # (B, T, C)
        turn_mask = ops.any(ops.not_equal(context_tokens, PAD_ID), axis=-1)  # (B, T)
        last = ops.maximum(ops.sum(ops.cast(turn_mask, "int32"), axis=1) - 1, 0)  # (B,)
        context = ops.take_along_axis(context, last[:, None, None], axis=1)[:, 0]  # (B, C)
        return (context, *self.decoder.initial_state(context))

    def decode_step(self, token_ids, state):
        """Advance the decoder by one token.

        Args:
            token_ids: `(batch_size,)` int32 previous tokens (BOS first).
            state: as returned by `encode_context` or the previous step.
        Returns:
            (`(batch_size, vocabulary_size)` logits of the next token, new state).
        """
        context, *states = state
        embedded = self.embedding(token_ids)  # (B, E)
        output, states = self.decoder.step(embedded, context, states)  # (B, D)
        return self.output_projection(output), (context, *states)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "context_dim": self.context_dim,
            "decoder_dim": self.decoder_dim,
            "cell": self.cell,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
        }
