"""The dialogue models and `build_model(config)`; each serves the inference contract (`encode_context`, `decode_step`).

See docs/architecture.md, "The inference contract".
"""

import contextlib
import dataclasses
import inspect

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


MODEL_CLASSES = {"lm": LanguageModel, "seq2seq": Seq2Seq, "hred": HRED, "hran": HRAN, "vhred": VHRED}


def constructor_arguments(cls: type) -> set[str]:
    """The keyword arguments `cls(...)` names, its own and those its bases take through ``**kwargs``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("chatbot."):
            break  # Keras's own arguments (name, dtype, …) are passed explicitly
        if "__init__" not in vars(klass):
            continue  # inherits its base's constructor
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def build_model(config, seed: int = 1234, length_groups: int = 1):
    """A fresh, built model from a `ModelConfig`: its class gets every config field its constructor accepts
    (so a new setting is a `ModelConfig` field and a constructor argument), `seed` seeds VHRED's noise, and
    `length_groups` (a training setting, `TrainConfig.length_groups`) goes to the hierarchical models.

    Raises:
        ConfigError: the architecture is unknown (ModelConfig refuses it first).
    """
    cls = MODEL_CLASSES[config.model]
    accepted = constructor_arguments(cls)
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in accepted and f.name != "model"}
    if "seed" in accepted:
        values["seed"] = seed
    if "length_groups" in accepted:
        values["length_groups"] = length_groups
    model = cls(name=config.model, **values)
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
