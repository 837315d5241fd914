"""Typed, frozen configuration: model sizes, training budget, presets.

Both dataclasses are written to ``config.json`` in every checkpoint and read
back on load, so a model directory is self-describing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chatbot.errors import ConfigError

MODEL_TYPES = ("lm", "seq2seq", "hred", "hran", "vhred")
CELL_TYPES = ("gru", "lstm")
ATTENTION_TYPES = ("none", "additive", "dot")
LR_SCHEDULES = ("constant", "cosine")
# Training arithmetic: Keras dtype policies. "mixed_bfloat16" computes in bfloat16 with float32 weights
# (fast on CPUs with AMX or AVX512-BF16 and on recent GPUs; slow elsewhere). Inference always runs float32.
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and sizes of a dialogue model. Dimensions are in units (vector entries).

    Fields after `max_turns` apply to the architectures named above them and are ignored by the others.
    """

    model: str = "hred"  # architecture: "lm" (no context), "seq2seq", "hred" (Serban et al. 2016), "hran" (Xing et al. 2018) or "vhred" (Serban et al. 2017)
    vocabulary_size: int = 8000  # SentencePiece pieces, reserved ids included; set from the tokenizer
    embedding_dim: int = 128  # token embedding, shared by utterance encoder and decoder
    hidden_dim: int = 256  # utterance encoder RNN units per direction
    context_dim: int = 256  # context RNN units: the dialogue state after each turn
    decoder_dim: int = 256  # decoder RNN units
    cell: str = "gru"  # RNN cell of all three RNNs: "gru" or "lstm"
    bidirectional: bool = False  # utterance encoder reads both directions (output 2 × hidden_dim)
    dropout: float = 0.1  # dropout rate on embeddings and decoder outputs while training
    tie_embeddings: bool = True  # output logits scored against the input embedding table (Press & Wolf 2017)
    scale_embeddings: bool = True  # embeddings start N(0, 1/embedding_dim), enter the RNNs times sqrt(embedding_dim)
    max_utterance_length: int = 48  # tokens per utterance, start and end markers included; longer ones are cut
    max_turns: int = 8  # turns per training window; the context at inference is max_turns - 1 turns
    # seq2seq, hred, hran, vhred
    center_context: bool = True  # the decoder sees the context vector minus its batch (running) mean
    # seq2seq
    attention: str = "none"  # "none", "additive" (Bahdanau score) or "dot" (Luong score)
    source_turns: int = 1  # turns flattened into the encoder's source (1: the previous utterance only)
    max_source_tokens: int = 96  # longest flattened source in tokens; older tokens are dropped
    # vhred
    latent_dim: int = 64  # units of the latent variable z per reply
    kl_anneal_steps: int = (
        2000  # optimizer steps over which the KL weight rises linearly from 0 to 1 (set from TrainConfig.kl_anneal_fraction)
    )
    word_dropout: float = 0.25  # share of decoder input tokens replaced by the unknown token while training
    bow_weight: float = 1.0  # weight of the bag-of-words loss (Zhao et al. 2017); 0 turns it off

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise ConfigError(f"--model {self.model!r} is not available; choose one of: {', '.join(MODEL_TYPES)}")
        if self.cell not in CELL_TYPES:
            raise ConfigError(f"--cell {self.cell!r} is not available; choose one of: {', '.join(CELL_TYPES)}")
        for name in ("embedding_dim", "hidden_dim", "context_dim", "decoder_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive number of units, got {getattr(self, name)}")
        if self.attention not in ATTENTION_TYPES:
            raise ConfigError(f"--attention {self.attention!r} is not available; choose one of: {', '.join(ATTENTION_TYPES)}")
        if self.source_turns < 1 or self.source_turns >= self.max_turns:
            raise ConfigError(f"--source-turns must be between 1 and max_turns - 1 = {self.max_turns - 1}, got {self.source_turns}")
        if self.max_source_tokens < 4:
            raise ConfigError(f"--max-source-tokens must be at least 4, got {self.max_source_tokens}")
        if self.latent_dim < 1:
            raise ConfigError(f"--latent-dim must be a positive number of units, got {self.latent_dim}")
        if self.kl_anneal_steps < 0:
            raise ConfigError(f"--kl-anneal-steps must be >= 0, got {self.kl_anneal_steps}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ConfigError(f"--word-dropout must be in [0, 1), got {self.word_dropout}")
        if self.bow_weight < 0:
            raise ConfigError(f"--bow-weight must be >= 0, got {self.bow_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.max_utterance_length < 4:
            raise ConfigError(f"max_utterance_length must be at least 4 tokens, got {self.max_utterance_length}")
        if self.max_turns < 2:
            raise ConfigError(f"max_turns must be at least 2 (a context turn and a reply), got {self.max_turns}")

    @property
    def architecture(self) -> str:
        """Short name for tables and banners: ``lm``, ``seq2seq``, ``seq2seq+additive``, ``hred``, ``hran``, ``vhred``."""
        if self.model == "seq2seq" and self.attention != "none":
            return f"seq2seq+{self.attention}"
        return self.model


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Budgets stop a run early; the best checkpoint is always kept."""

    corpus: tuple[str, ...] = ("chitchat",)  # corpus SPECs the model was trained on (several: a mixture)
    corpus_weights: tuple[float, ...] | None = None  # per corpus, how often an epoch sees its windows (None: once each)
    corpus_format: str | None = None  # format of bare paths whose extension does not say (see chatbot.corpus.registry)
    encoding: str | None = None  # text encoding of the corpus files (None: byte-order mark, else the format's own)
    convokit_paths: str = "longest"  # ConvoKit reply trees: "longest" path or "all" root-to-leaf paths
    skip_malformed: bool = False  # skip malformed corpus records (counted in the log) instead of stopping
    epochs: int = 10  # passes over the training split
    batch_size: int = 64  # dialogue windows per batch (larger amortises the per-step RNN loop; see benchmarks/train_throughput.py)
    learning_rate: float = 3e-3  # Adam step size (the peak, with a schedule)
    lr_schedule: str = "cosine"  # "constant", or "cosine": decays to 10% of learning_rate over `epochs`
    clipnorm: float = 1.0  # threshold of the gradient's global L2 norm (all variables together); 0 = no clipping
    warmup_steps: int = 0  # updates over which the learning rate rises linearly from 0 to learning_rate
    patience: int = 2  # epochs without a better validation perplexity before early stopping
    vocabulary_size: int = 8000  # upper bound on SentencePiece pieces
    max_dialogues: int | None = None  # use only the first N dialogues of each corpus (quick runs)
    max_minutes: float | None = None  # stop training after this many minutes of wall time
    seed: int = 1234  # seeds weight init, shuffling and dropout
    init_from: str | None = None  # model directory whose embedding, utterance encoder and context RNN start this run
    precision: str = "float32"  # Keras dtype policy while training: "float32" or "mixed_bfloat16"
    length_groups: int = 4  # HRED/VHRED training runs each RNN over this many length-sorted chunks of a batch (1: off)
    kl_anneal_fraction: float | None = 0.5  # vhred: the KL weight rises over this share of the planned updates (None: kl_anneal_steps)

    def __post_init__(self) -> None:
        # config.json files before mixtures hold one SPEC string; JSON gives lists.
        object.__setattr__(self, "corpus", (self.corpus,) if isinstance(self.corpus, str) else tuple(self.corpus))
        if self.corpus_weights is not None:
            object.__setattr__(self, "corpus_weights", tuple(float(w) for w in self.corpus_weights))
            if len(self.corpus_weights) != len(self.corpus) or any(not w >= 0 for w in self.corpus_weights):
                raise ConfigError(
                    f"--corpus-weights needs one non-negative number per --corpus ({len(self.corpus)}), got "
                    + ",".join(f"{w:g}" for w in self.corpus_weights)
                )
        if not self.corpus:
            raise ConfigError("give at least one --corpus")
        if self.length_groups < 1:
            raise ConfigError(f"--length-groups must be at least 1, got {self.length_groups}")
        for flag, value in (("--batch-size", self.batch_size), ("--epochs", self.epochs), ("--vocabulary-size", self.vocabulary_size)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.patience < 0:
            raise ConfigError(f"--patience must be >= 0, got {self.patience}")
        if self.max_dialogues is not None and self.max_dialogues < 1:
            raise ConfigError(f"--max-dialogues must be at least 1, got {self.max_dialogues}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"--max-minutes must be > 0, got {self.max_minutes}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not available; choose one of: {', '.join(PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r} is not available; choose one of: {', '.join(LR_SCHEDULES)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.clipnorm < 0:
            raise ConfigError(f"--clipnorm must be >= 0 (0 turns clipping off), got {self.clipnorm}")
        if self.kl_anneal_fraction is not None and not 0.0 <= self.kl_anneal_fraction <= 1.0:
            raise ConfigError(f"--kl-anneal-fraction must be in [0, 1], got {self.kl_anneal_fraction}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be > 0, got {self.learning_rate}")


# Presets: `tiny` for tests, `small` for a CPU run, `base` for a GPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(embedding_dim=32, hidden_dim=32, context_dim=32, decoder_dim=32, latent_dim=8, max_utterance_length=24, max_turns=6),
    "small": dict(embedding_dim=128, hidden_dim=256, context_dim=256, decoder_dim=256, latent_dim=64, max_utterance_length=48, max_turns=8),
    "base": dict(
        embedding_dim=256,
        hidden_dim=256,
        context_dim=512,
        decoder_dim=512,
        latent_dim=128,
        bidirectional=True,
        max_utterance_length=64,
        max_turns=10,
    ),
}


def model_config(preset: str = "small", **overrides: Any) -> ModelConfig:
    """A ModelConfig from a preset with explicit overrides (None values are ignored).

    Raises:
        ConfigError: unknown preset or an invalid value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not available; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**values)


# What a field meant before it existed: a config.json written before a field was added describes a
# model built the old way, whatever today's default is.
LEGACY_VALUES: dict[type, dict[str, Any]] = {
    ModelConfig: {"tie_embeddings": False, "scale_embeddings": False, "center_context": False},
    TrainConfig: {"kl_anneal_fraction": None},
}


def corpus_label(specs: tuple[str, ...], weights: tuple[float, ...] | None = None) -> str:
    """How a corpus mixture reads in logs and plots: ``chitchat + 2×dailydialog:data/dd``."""
    weights = weights or (1.0,) * len(specs)
    return " + ".join(spec if weight == 1 else f"{weight:g}×{spec}" for spec, weight in zip(specs, weights, strict=True))


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from JSON, ignoring unknown keys (newer files).

    A missing key takes its `LEGACY_VALUES` entry (the behaviour of the files that
    lack it), else the field's default.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    legacy = {k: v for k, v in LEGACY_VALUES.get(cls, {}).items() if k not in values}
    return cls(**legacy, **{k: v for k, v in values.items() if k in names})
