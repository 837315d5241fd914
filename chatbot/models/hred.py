"""HRED: the hierarchical recurrent encoder-decoder (Serban et al. 2016).

An utterance encoder turns each utterance into a vector; a context RNN runs
over those vectors, one step per turn; a decoder generates utterance t+1 from
the context state after turn t. Training reads windows of whole dialogues:
each utterance is encoded once and every turn after the first is a target in
the same pass, with teacher forcing and masked token cross-entropy.
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.models.base import (
    DialogueModel,
    chunk_rows,
    existing_targets,
    length_sorted_chunks,
    pad_steps,
    probe_context,
    real_positions,
    reply_weights,
    token_nll,
)
from chatbot.models.layers import ContextEncoder, UtteranceDecoder, UtteranceEncoder
from chatbot.text.tokenizer import PAD_ID


def last_turn(values, tokens):
    """The entry of the last real turn of each dialogue.

    Args:
        values: `(batch_size, num_turns, ...)`.
        tokens: `(batch_size, num_turns, utterance_length)` int32, padding turns all 0.
    Returns:
        `(batch_size, ...)`.
    """
    turn_mask = ops.any(ops.not_equal(tokens, PAD_ID), axis=-1)  # (B, T)
    last = ops.maximum(ops.sum(ops.cast(turn_mask, "int32"), axis=1) - 1, 0)  # (B,)
    index = ops.reshape(last, (-1,) + (1,) * (len(values.shape) - 1))
    return ops.take_along_axis(values, index, axis=1)[:, 0]


@keras.saving.register_keras_serializable(package="chatbot")
class HRED(DialogueModel):
    """Hierarchical recurrent encoder-decoder.

    Args:
        vocabulary_size: number of token ids (SentencePiece pieces).
        embedding_dim, hidden_dim, context_dim, decoder_dim: layer sizes in units.
        cell: "gru" or "lstm", for all three RNNs.
        bidirectional: the utterance encoder reads both directions.
        dropout: rate on embeddings and decoder outputs while training.
        length_groups: while training, each RNN runs over this many length-sorted chunks of its rows
            (1: one padded batch; the loss and gradients are the same). Inference and evaluation always
            run one chunk. Saved with the model; a model saved before it was gets 1.
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
        length_groups: int = 1,
        **kwargs,
    ):
        super().__init__(vocabulary_size, embedding_dim, dropout, **kwargs)
        self.length_groups = length_groups
        self.hidden_dim = hidden_dim
        self.context_dim = context_dim
        self.decoder_dim = decoder_dim
        self.cell = cell
        self.bidirectional = bidirectional
        self.utterance_encoder = UtteranceEncoder(hidden_dim, cell, bidirectional, name="utterance_encoder")
        self.context_encoder = ContextEncoder(context_dim, cell, name="context_encoder")
        self.decoder = UtteranceDecoder(decoder_dim, cell, name="decoder")

    # --- shared pieces --------------------------------------------------

    def encode_turns(self, tokens, training=False, words=False):
        """Utterance vectors and the context RNN output after every turn.

        Args:
            tokens: `(batch_size, num_turns, utterance_length)` int32.
            words: also return the utterance encoder's output at every token (HRAN's memory).
        Returns:
            (context `(batch_size, num_turns, context_dim)`,
             utterance vectors `(batch_size, num_turns, encoder_dim)`), and with `words`
            the word states `(batch_size, num_turns, utterance_length, encoder_dim)` (zeros past a chunk's length).
        """
        shape = ops.shape(tokens)
        batch_size, num_turns, utterance_length = shape[0], shape[1], shape[2]
        flat = ops.reshape(tokens, (-1, utterance_length))  # (B*T, L)
        order, chunks = length_sorted_chunks(flat, self.length_groups if training else 1)
        vectors, states = [], []
        for start, end, length in chunks:
            rows = chunk_rows(flat, order, start, end, length)  # (n, l)
            encoded = self.utterance_encoder(
                self.embed(rows, training), token_mask=ops.not_equal(rows, PAD_ID), training=training, return_sequences=words
            )
            if words:
                sequences, encoded = encoded  # (n, l, H'), (n, H')
                states.append(sequences if order is None else pad_steps(sequences, utterance_length))
            vectors.append(encoded)
        dim = self.utterance_encoder.output_dim

        def unsorted(parts):
            return parts[0] if order is None else ops.take(ops.concatenate(parts, axis=0), ops.argsort(order), axis=0)

        vectors = ops.reshape(unsorted(vectors), (batch_size, num_turns, dim))  # (B, T, H')
        turn_mask = ops.any(ops.not_equal(tokens, PAD_ID), axis=-1)  # (B, T)
        context = self.context_encoder(vectors, turn_mask=turn_mask, training=training)
        if words:
            return context, vectors, ops.reshape(unsorted(states), (batch_size, num_turns, utterance_length, dim))
        return context, vectors

    def decoder_inputs(self, inputs, training=False):
        """Hook for word dropout (VHRED); HRED feeds the reply as is."""
        return inputs

    def decoder_outputs(self, replies, conditioning, training=False):
        """Teacher forcing: decoder outputs at the real target positions, and those targets.

        While training with `length_groups` > 1 the decoder runs over length-sorted
        chunks of the replies; the outputs are the same, only less padding is computed.

        Args:
            replies: `(N, utterance_length)` int32 `[BOS] tokens [EOS]`, right-padded.
            conditioning: `(N, conditioning_dim)`.
        Returns:
            (outputs `(M, decoder_dim)`, labels `(M,)` int32), M = number of target tokens.
        """
        inputs, targets = self.decoder_inputs(replies[:, :-1], training), replies[:, 1:]  # teacher forcing shift
        order, chunks = length_sorted_chunks(targets, self.length_groups if training else 1)
        outputs, labels = [], []
        for start, end, length in chunks:
            chunk_targets = chunk_rows(targets, order, start, end, length)
            chunk_inputs = chunk_rows(inputs, order, start, end, length)
            decoded = self.decoder(self.embed(chunk_inputs, training), chunk_rows(conditioning, order, start, end), training=training)
            chunk_outputs, chunk_labels = real_positions(self.output_dropout(decoded, training=training), chunk_targets)
            outputs.append(chunk_outputs)  # (m, D)
            labels.append(chunk_labels)  # (m,)
        return ops.concatenate(outputs, axis=0), ops.concatenate(labels, axis=0)  # (M, D), (M,)

    def target_nll(self, replies, conditioning, training=False):
        """Teacher forcing and token cross-entropy, summed over the real target tokens.

        Args:
            replies: `(N, utterance_length)` int32 `[BOS] tokens [EOS]`, right-padded.
            conditioning: `(N, conditioning_dim)`.
        Returns:
            (summed negative log-likelihood in nats, number of target tokens as float32).
        """
        return token_nll(self.logits, *self.decoder_outputs(replies, conditioning, training))

    def loss_terms(self, tokens, training=False, context_mode="true"):
        context, _ = self.encode_turns(tokens, training)
        replies, context = existing_targets(context[:, :-1], replies=tokens[:, 1:])  # (N, L), (N, C)
        context = probe_context(self.condition(context, training, reply_weights(replies)), context_mode)
        nll, count = self.target_nll(replies, context, training)
        return {"nll": nll, "tokens": count}

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
        context = self.condition(last_turn(self.encode_turns(context_tokens)[0], context_tokens))  # (B, C)
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
        output, states = self.decoder.step(self.embed(token_ids), context, states)  # (B, D)
        return self.logits(output), (context, *states)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "context_dim": self.context_dim,
            "decoder_dim": self.decoder_dim,
            "cell": self.cell,
            "bidirectional": self.bidirectional,
            "length_groups": self.length_groups,
        }
