"""The dialogue models and `build_model(config)`; each serves the inference contract (`encode_context`, `decode_step`).

See docs/architecture.md, "The inference contract".
"""

import contextlib

import keras

from chatbot.models.base import DialogueModel, Perplexity
from chatbot.models.hran import HRAN, HierarchicalAttention
from chatbot.models.hred import HRED
from chatbot.models.language_model import LanguageModel
from chatbot.models.layers import ContextEncoder, UtteranceDecoder, UtteranceEncoder
from chatbot.models.seq2seq import Seq2Seq
from chatbot.models.vhred import VHRED, GaussianHead

__all__ = [
    "build_model",
    "dtype_policy",
    "float32_copy",
    "DialogueModel",
    "HRED",
    "HRAN",
    "HierarchicalAttention",
    "LanguageModel",
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
        tie_embeddings=config.tie_embeddings,
        scale_embeddings=config.scale_embeddings,
        center_context=config.center_context,
        name=config.model,
    )
    if config.model == "lm":  # no encoders, no context
        unused = ("hidden_dim", "bidirectional", "center_context")
        model = LanguageModel(**{k: v for k, v in shared.items() if k not in unused})
    elif config.model == "seq2seq":
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
    elif config.model == "hran":
        model = HRAN(context_dim=config.context_dim, **shared)
    else:
        model = HRED(context_dim=config.context_dim, **shared)
    model.build()
    return model


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras's global dtype policy set to `name` ("float32", "float16", "mixed_bfloat16") inside the block.

    Sublayers take the global policy when the model is built, so a model built
    inside the block computes (and, for "float16", stores its weights) in that type.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model, config):
    """`model` itself if it is a float32 model, else a float32 model with its weights (cast).

    Models saved with float16 weights (the shipped model) or trained under
    mixed bfloat16 are decoded in float32: the stored weights are whatever they
    were rounded to, but the arithmetic of every reply is float32.
    """
    if model.dtype_policy.name == "float32" and all(w.dtype == "float32" for w in model.weights):
        return model
    with dtype_policy("float32"):
        copy = build_model(config)
    copy.set_weights([w.astype("float32") for w in model.get_weights()])
    return copy
