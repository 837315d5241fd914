"""A plain RNN language model over the replies: no context at all.

The simplest model that should work (Mikolov et al. 2010): one RNN reads a
reply token by token and predicts the next one. It sees neither the history
nor the previous turn, so whatever HRED, VHRED or Seq2Seq gain over it on the
same data and budget is what their conditioning buys. It trains on the same
windows, writes the same model directory and serves the same inference
contract, so `chatbot eval`, the chat and `benchmarks/learning_curve.py` treat
it like any other model (its replies ignore what was said, by construction).
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.models.base import DialogueModel, existing_targets, masked_token_nll
from chatbot.models.layers import CELLS


@keras.saving.register_keras_serializable(package="chatbot")
class LanguageModel(DialogueModel):
    """One RNN over each reply's tokens, teacher forced; the context is ignored.

    Args:
        vocabulary_size: number of token ids.
        embedding_dim, decoder_dim: layer sizes in units.
        cell: "gru" or "lstm".
        dropout: rate on embeddings and RNN outputs while training.
        tie_embeddings: score the output against the input embedding (see `DialogueModel`).
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int = 128, decoder_dim: int = 256, cell: str = "gru", **kwargs):
        kwargs["center_context"] = False  # there is no context to center (a config's setting is ignored)
        super().__init__(vocabulary_size, embedding_dim, **kwargs)
        self.decoder_dim = decoder_dim
        self.cell = cell
        self.rnn = CELLS[cell](decoder_dim, return_sequences=True, name="rnn")

    def loss_terms(self, tokens, training=False, context_mode="true"):
        """`context_mode` is accepted for the shared probes and changes nothing: there is no context."""
        (replies,) = existing_targets(replies=tokens[:, 1:])  # (N, L)
        inputs, targets = replies[:, :-1], replies[:, 1:]  # teacher forcing shift
        outputs = self.output_dropout(self.rnn(self.embed(inputs, training), training=training), training=training)
        nll, count = masked_token_nll(self.logits, outputs, targets)
        return {"nll": nll, "tokens": count}

    # --- inference contract ---------------------------------------------

    def encode_context(self, context_tokens):
        """The RNN's initial state, whatever the context.

        Args:
            context_tokens: `(batch_size, num_turns, utterance_length)` int32 (only its batch size is read).
        Returns:
            state: tuple of `(batch_size, decoder_dim)` zeros (one for GRU, two for LSTM).
        """
        zeros = ops.zeros((ops.shape(context_tokens)[0], self.decoder_dim))
        return (zeros, zeros) if self.cell == "lstm" else (zeros,)

    def decode_step(self, token_ids, state):
        """`(batch_size,)` int32 previous tokens and state → (`(batch_size, vocabulary_size)` logits, state)."""
        output, states = self.rnn.cell(self.embed(token_ids), list(state) if self.cell == "lstm" else state[0])
        states = tuple(states) if isinstance(states, (list, tuple)) else (states,)
        return self.logits(output), states

    def get_config(self):
        return {**super().get_config(), "decoder_dim": self.decoder_dim, "cell": self.cell}
