"""Dialogue models. Each exposes `encode_context` and `decode_step` (see DESIGN.md)."""

from chatbot.models.hred import HRED, Perplexity
from chatbot.models.layers import ContextEncoder, UtteranceDecoder, UtteranceEncoder

__all__ = ["build_model", "HRED", "Perplexity", "ContextEncoder", "UtteranceDecoder", "UtteranceEncoder"]


def build_model(config):
    """A fresh, built model from a `ModelConfig`."""
    model = HRED(
        vocabulary_size=config.vocabulary_size,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        context_dim=config.context_dim,
        decoder_dim=config.decoder_dim,
        cell=config.cell,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        name=config.model,
    )
    model.build()
    return model
