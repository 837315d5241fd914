"""Dialogue models. Each exposes `encode_context` and `decode_step` (see DESIGN.md)."""

from chatbot.models.base import DialogueModel, Perplexity
from chatbot.models.hred import HRED
from chatbot.models.layers import ContextEncoder, UtteranceDecoder, UtteranceEncoder
from chatbot.models.seq2seq import Seq2Seq
from chatbot.models.vhred import VHRED, GaussianHead

__all__ = [
    "build_model",
    "DialogueModel",
    "HRED",
    "VHRED",
    "Seq2Seq",
    "Perplexity",
    "GaussianHead",
    "ContextEncoder",
    "UtteranceDecoder",
    "UtteranceEncoder",
]


def build_model(config, seed: int = 1234):
    """A fresh, built model from a `ModelConfig` (`seed` seeds VHRED's noise)."""
    shared = dict(
        vocabulary_size=config.vocabulary_size,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        decoder_dim=config.decoder_dim,
        cell=config.cell,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        name=config.model,
    )
    if config.model == "seq2seq":
        model = Seq2Seq(
            attention=config.attention,
            source_turns=config.source_turns,
            max_source_tokens=config.max_source_tokens,
            **shared,
        )
    elif config.model == "vhred":
        model = VHRED(
            context_dim=config.context_dim,
            latent_dim=config.latent_dim,
            kl_anneal_steps=config.kl_anneal_steps,
            word_dropout=config.word_dropout,
            bow_weight=config.bow_weight,
            seed=seed,
            **shared,
        )
    else:
        model = HRED(context_dim=config.context_dim, **shared)
    model.build()
    return model
