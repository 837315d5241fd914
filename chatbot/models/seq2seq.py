"""Seq2Seq: an encoder-decoder without a context RNN, optionally with attention.

An encoder-decoder (Sutskever et al. 2014) with optional attention over the
encoder's outputs (Bahdanau et al. 2015; Luong et al. 2015): the baseline that
shows what HRED's context RNN buys.

The source of the reply after turn t is turn t alone (`source_turns=1`), or
the last `source_turns` turns flattened into one token sequence, keeping the
last `max_source_tokens` tokens (each turn keeps its BOS/EOS markers, which
separate the turns). The encoder's final state conditions the decoder (as
initial state and on every input, as in HRED). With attention, each decoder
output attends over the source's per-token encoder outputs and the two are
combined, Luong-style: h~_t = tanh(W_c [h_t; a_t]) (Luong et al. 2015, eq. 5),
with an additive score v·tanh(q + k) (Bahdanau et al. 2015, eq. 6 form) or a
dot score q·k (Luong et al. 2015). Attending after the RNN step keeps teacher
forcing one fused RNN call.
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.config import ATTENTION_TYPES
from chatbot.models.base import DialogueModel, existing_targets, masked_token_nll, probe_context, reply_weights
from chatbot.models.hred import last_turn
from chatbot.models.layers import UtteranceDecoder, UtteranceEncoder
from chatbot.text.tokenizer import PAD_ID


def flatten_history(tokens, source_turns: int, max_source_tokens: int):
    """The flattened source ending at each turn.

    Args:
        tokens: `(batch_size, num_turns, utterance_length)` int32, 0 = padding.
        source_turns: how many turns (ending at turn t) make the source of turn t.
        max_source_tokens: keep only the last this many tokens of the source.
    Returns:
        `(batch_size, num_turns, source_length)` int32, tokens packed to the left, 0 = padding;
        source_length = min(source_turns * utterance_length, max_source_tokens).
    """
    if source_turns == 1:
        return tokens
    shape = ops.shape(tokens)
    batch_size, num_turns, utterance_length = shape[0], shape[1], shape[2]
    padded = ops.concatenate([ops.zeros((batch_size, source_turns - 1, utterance_length), tokens.dtype), tokens], axis=1)
    # Turns t-k+1 .. t side by side, oldest first: (B, T, k*L).
    stacked = ops.concatenate([padded[:, j : j + num_turns] for j in range(source_turns)], axis=-1)
    width = source_turns * utterance_length
    real = ops.not_equal(stacked, PAD_ID)
    # Real tokens first, each group in its order: a sort on (padding?, position), whose keys are all distinct.
    order = ops.argsort(ops.cast(ops.logical_not(real), "int32") * width + ops.arange(width, dtype="int32"), axis=-1)
    packed = ops.take_along_axis(stacked, order, axis=-1)  # (B, T, k*L)
    length = ops.sum(ops.cast(real, "int32"), axis=-1, keepdims=True)  # (B, T, 1)
    source_length = min(width, max_source_tokens) if isinstance(width, int) else ops.minimum(width, max_source_tokens)
    start = ops.maximum(length - source_length, 0)  # (B, T, 1)
    positions = ops.arange(source_length)[None, None, :] + start  # (B, T, S)
    kept = ops.take_along_axis(packed, ops.minimum(positions, width - 1), axis=-1)
    return ops.where(positions < length, kept, ops.zeros_like(kept))


@keras.saving.register_keras_serializable(package="chatbot")
class Seq2Seq(DialogueModel):
    """RNN encoder-decoder over the previous utterance (or the flattened recent history).

    Args:
        vocabulary_size: number of token ids.
        embedding_dim, hidden_dim, decoder_dim: layer sizes in units (hidden_dim: encoder units per direction).
        cell: "gru" or "lstm". bidirectional: the encoder reads both directions.
        attention: "none", "additive" (Bahdanau score) or "dot" (Luong score).
        source_turns: turns flattened into the source (1: the previous utterance only).
        max_source_tokens: longest flattened source in tokens; older tokens are dropped.
        dropout: rate on embeddings and decoder outputs while training.
    """

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 128,
        hidden_dim: int = 256,
        decoder_dim: int = 256,
        cell: str = "gru",
        bidirectional: bool = False,
        attention: str = "none",
        source_turns: int = 1,
        max_source_tokens: int = 96,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(vocabulary_size, embedding_dim, dropout, **kwargs)
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {attention!r}")
        self.hidden_dim = hidden_dim
        self.decoder_dim = decoder_dim
        self.cell = cell
        self.bidirectional = bidirectional
        self.attention = attention
        self.source_turns = source_turns
        self.max_source_tokens = max_source_tokens
        self.encoder = UtteranceEncoder(hidden_dim, cell, bidirectional, name="encoder")
        self.decoder = UtteranceDecoder(decoder_dim, cell, name="decoder")
        if attention != "none":
            self.attention_keys = keras.layers.Dense(decoder_dim, use_bias=False, name="attention_keys")
            layer = keras.layers.AdditiveAttention if attention == "additive" else keras.layers.Attention
            self.attention_layer = layer(name="attention")
            self.attention_combine = keras.layers.Dense(decoder_dim, activation="tanh", name="attention_combine")

    def encode(self, sources, training=False):
        """Encoder over sources `(N, S)` int32 → (vectors `(N, encoder_dim)`, sequences `(N, S, encoder_dim)`, mask `(N, S)` bool)."""
        mask = ops.not_equal(sources, PAD_ID)
        sequences, vectors = self.encoder(self.embed(sources, training), token_mask=mask, training=training, return_sequences=True)
        return vectors, sequences, mask

    def encode_sources(self, tokens, training=False):
        """Encoder outputs of the source ending at every turn.

        Returns:
            (vectors `(B, T, encoder_dim)`, sequences `(B, T, S, encoder_dim)`, source mask `(B, T, S)` bool).
        """
        sources = flatten_history(tokens, self.source_turns, self.max_source_tokens)  # (B, T, S)
        shape = ops.shape(sources)
        vectors, sequences, mask = self.encode(ops.reshape(sources, (-1, shape[2])), training)  # over B*T sources
        dim = self.encoder.output_dim
        return (
            ops.reshape(vectors, (shape[0], shape[1], dim)),
            ops.reshape(sequences, (shape[0], shape[1], shape[2], dim)),
            ops.reshape(mask, (shape[0], shape[1], shape[2])),
        )

    def attend(self, outputs, memory, keys, memory_mask):
        """Luong-style attentional output.

        Args:
            outputs: `(N, steps, decoder_dim)` decoder RNN outputs (the queries).
            memory: `(N, S, encoder_dim)` encoder outputs; keys: `(N, S, decoder_dim)` their projections.
            memory_mask: `(N, S)` bool, False on source padding.
        Returns:
            `(N, steps, decoder_dim)`: tanh(W_c [h_t; a_t]).
        """
        attended = self.attention_layer([outputs, memory, keys], mask=[None, memory_mask])  # (N, steps, H')
        return self.attention_combine(ops.concatenate([outputs, attended], axis=-1))

    def loss_terms(self, tokens, training=False, context_mode="true"):
        vectors, sequences, source_mask = self.encode_sources(tokens, training)
        replies, vectors, sequences, source_mask = existing_targets(
            vectors[:, :-1], sequences[:, :-1], source_mask[:, :-1], replies=tokens[:, 1:]
        )
        vectors = self.condition(vectors, training, reply_weights(replies))
        vectors, sequences, source_mask = (probe_context(t, context_mode) for t in (vectors, sequences, source_mask))
        inputs, targets = replies[:, :-1], replies[:, 1:]  # teacher forcing shift
        outputs = self.decoder(self.embed(inputs, training), vectors, training=training)  # (N, L-1, D)
        if self.attention != "none":
            outputs = self.attend(outputs, sequences, self.attention_keys(sequences), source_mask)
        nll, count = masked_token_nll(self.logits, self.output_dropout(outputs, training=training), targets)
        return {"nll": nll, "tokens": count}

    # --- inference contract ---------------------------------------------

    def encode_context(self, context_tokens):
        """Encode the source ending at the last real turn.

        Args:
            context_tokens: `(batch_size, num_turns, utterance_length)` int32, 0 = padding.
        Returns:
            state: `(vector, *decoder_states)` without attention; with attention
            `(vector, memory, keys, memory_mask, *decoder_states)`: vector `(B, encoder_dim)`,
            memory `(B, S, encoder_dim)`, keys `(B, S, decoder_dim)`, memory_mask `(B, S)` bool.
        """
        # Only the source ending at the last turn is encoded: the earlier turns' sources are not needed.
        source = last_turn(flatten_history(context_tokens, self.source_turns, self.max_source_tokens), context_tokens)
        vector, memory, mask = self.encode(source)  # (B, H'), (B, S, H'), (B, S)
        vector = self.condition(vector)
        decoder_states = self.decoder.initial_state(vector)
        if self.attention == "none":
            return (vector, *decoder_states)
        return (vector, memory, self.attention_keys(memory), mask, *decoder_states)

    def decode_step(self, token_ids, state):
        """One token: `(batch_size,)` int32 and state → (`(batch_size, vocabulary_size)` logits, state)."""
        if self.attention == "none":
            vector, *states = state
        else:
            vector, memory, keys, mask, *states = state
        output, states = self.decoder.step(self.embed(token_ids), vector, states)  # (B, D)
        if self.attention != "none":
            output = self.attend(output[:, None], memory, keys, mask)[:, 0]
            return self.logits(output), (vector, memory, keys, mask, *states)
        return self.logits(output), (vector, *states)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "decoder_dim": self.decoder_dim,
            "cell": self.cell,
            "bidirectional": self.bidirectional,
            "attention": self.attention,
            "source_turns": self.source_turns,
            "max_source_tokens": self.max_source_tokens,
        }
