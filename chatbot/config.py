"""Typed, frozen configuration: model sizes, training budget, presets.

Both dataclasses are written to ``config.json`` in every checkpoint and read
back on load, so a model directory is self-describing.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from chatbot.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MODEL_TYPES = ("lm", "seq2seq", "hred", "hran", "vhred")
CELL_TYPES = ("gru", "lstm")
ATTENTION_TYPES = ("none", "additive", "dot")
LR_SCHEDULES = ("constant", "cosine")
# Training arithmetic: Keras dtype policies. "mixed_bfloat16" computes in bfloat16 with float32 weights
# (fast on CPUs with AMX or AVX512-BF16 and on recent GPUs; slow elsewhere). Inference always runs float32.
PRECISIONS = ("float32", "mixed_bfloat16")


def setting(default: Any, help: str, *, flag: bool = True, **options: Any) -> Any:
    """A config field with its meaning: the help text of its command-line flag.

    Args:
        default: the field's default (a preset may override a ModelConfig field's).
        help: what it means, with its unit; `chatbot train --help` shows it.
        flag: False for fields set another way (the tokenizer's size, corpus specs).
        options: more `argparse.add_argument` options (choices, metavar).
    """
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "options": options})


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are command-line flags, in order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag")]


def flag_values(namespace: Any, cls: type) -> dict[str, Any]:
    """The values an argparse namespace holds for `cls`'s flag fields (None: not given)."""
    return {f.name: getattr(namespace, f.name) for f in flag_fields(cls)}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and sizes of a dialogue model. Dimensions are in units (vector entries).

    Fields after `max_turns` apply to the architectures named above them and are ignored by the others.
    Each field's help is its `chatbot train` flag's help (`setting`); `build_model` passes every field a
    model's constructor accepts, so a new knob is this line and the model's argument.
    """

    model: str = setting(
        "hred", "architecture: lm, seq2seq, hred (Serban et al. 2016), hran (Xing et al. 2018) or vhred (Serban et al. 2017)", flag=False
    )
    vocabulary_size: int = setting(8000, "SentencePiece pieces, reserved ids included; set from the tokenizer", flag=False)
    embedding_dim: int = setting(128, "units of the token embedding, shared by the utterance encoder and the decoder")
    hidden_dim: int = setting(256, "units of the utterance encoder RNN, per direction")
    context_dim: int = setting(256, "units of the context RNN: the dialogue state after each turn")
    decoder_dim: int = setting(256, "units of the decoder RNN")
    cell: str = setting("gru", "RNN cell of all three RNNs", choices=CELL_TYPES)
    bidirectional: bool = setting(False, "the utterance encoder reads both directions (output 2 x hidden_dim)")
    dropout: float = setting(0.1, "dropout rate on embeddings and decoder outputs while training")
    tie_embeddings: bool = setting(True, "score outputs against the input embedding table (Press & Wolf 2017)")
    scale_embeddings: bool = setting(True, "embeddings start N(0, 1/embedding_dim) and enter the RNNs times sqrt(embedding_dim)")
    max_utterance_length: int = setting(48, "tokens per utterance, start and end markers included; longer ones are cut")
    max_turns: int = setting(8, "turns per training window; the context at inference is max_turns - 1 turns")
    # seq2seq, hred, hran, vhred
    center_context: bool = setting(True, "seq2seq/hred/hran/vhred: the decoder sees the context vector minus its running mean")
    # seq2seq
    attention: str = setting(
        "none", "seq2seq: attention over the source: additive (Bahdanau) or dot (Luong) score", choices=ATTENTION_TYPES
    )
    source_turns: int = setting(1, "seq2seq: turns flattened into the encoder's source (1: the previous utterance only)")
    max_source_tokens: int = setting(96, "seq2seq: longest flattened source in tokens; older tokens are dropped")
    # vhred
    latent_dim: int = setting(64, "vhred: units of the latent variable z per reply")
    kl_anneal_steps: int = setting(
        2000, "vhred: optimizer steps over which the KL weight rises from 0 to 1; given, it replaces --kl-anneal-fraction"
    )
    word_dropout: float = setting(0.25, "vhred: share of decoder input tokens replaced by the unknown token while training")
    bow_weight: float = setting(1.0, "vhred: weight of the bag-of-words loss (Zhao et al. 2017); 0 turns it off")

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
    """How a model is trained. Budgets stop a run early; the best checkpoint is always kept.

    Each field with a flag is a `chatbot train` option of the same name (`setting`).
    """

    corpus: tuple[str, ...] = setting(("chitchat",), "corpus SPECs the model was trained on (several: a mixture)", flag=False)
    corpus_weights: tuple[float, ...] | None = setting(
        None, "per corpus, how often an epoch sees its windows (None: once each)", flag=False
    )
    corpus_format: str | None = setting(None, "format of bare paths whose extension does not say (chatbot.corpus.registry)", flag=False)
    encoding: str | None = setting(None, "text encoding of the corpus files (None: byte-order mark, else the format's own)", flag=False)
    convokit_paths: str = setting("longest", "ConvoKit reply trees: the longest path or all root-to-leaf paths", flag=False)
    skip_malformed: bool = setting(False, "skip malformed corpus records (counted in the log) instead of stopping", flag=False)
    epochs: int = setting(10, "passes over the training split")
    batch_size: int = setting(64, "dialogue windows per batch (larger amortises the per-step RNN loop; benchmarks/train_throughput.py)")
    learning_rate: float = setting(3e-3, "Adam step size, the peak of the schedule (chosen by benchmarks/learning_curve.py)")
    lr_schedule: str = setting("cosine", "constant, or cosine decay to 10% of the learning rate over --epochs", choices=LR_SCHEDULES)
    clipnorm: float = setting(1.0, "clip the gradient's global L2 norm (all variables together) to this; 0 = off")
    warmup_steps: int = setting(0, "updates over which the learning rate rises linearly from 0")
    patience: int = setting(2, "early stopping: epochs without a better validation perplexity")
    vocabulary_size: int = setting(8000, "upper bound on SentencePiece pieces")
    max_dialogues: int | None = setting(None, "use only the first N dialogues of each corpus (quick runs)")
    max_minutes: float | None = setting(None, "stop after this many minutes of wall time; the last epoch is validated and saved")
    seed: int = setting(1234, "seeds weight init, shuffling and dropout")
    init_from: str | None = setting(
        None,
        "start from a trained model: the same architecture fine-tunes all its weights; another (e.g. VHRED from HRED) "
        "starts from its embedding and encoders. Its tokenizer is reused",
        metavar="DIR",
    )
    precision: str = setting(
        "float32",
        "training arithmetic: mixed_bfloat16 computes in bfloat16 with float32 weights, faster on CPUs with AMX/AVX512-BF16 "
        "and recent GPUs (replies always decode in float32)",
        choices=PRECISIONS,
    )
    length_groups: int = setting(
        4, "hred/hran/vhred: run each RNN over this many length-sorted chunks of a batch (1: off; the loss is the same)"
    )
    kl_anneal_fraction: float | None = setting(0.5, "vhred: share of the run's planned updates over which the KL weight rises from 0 to 1")

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


# $CHATBOT_TRAIN_LIMITS caps every new training run's budget, whatever its flags or arguments say, and its
# max_dialogues caps what an evaluation reads: smoke runs of documented commands (CI's documentation test runs
# the README's 40-minute recipe in seconds this way).
TRAIN_LIMITS_VARIABLE = "CHATBOT_TRAIN_LIMITS"
# length_groups: each group is one more copy of the RNNs in the traced training step, so a smoke run of a
# few batches spends most of its seconds tracing them (a 40-dialogue run: 17 s with 4 groups, 11 s with 1).
LIMITABLE = ("epochs", "batch_size", "vocabulary_size", "max_dialogues", "max_minutes", "length_groups")
C = TypeVar("C", bound="DataclassInstance")


def train_limits(text: str | None) -> dict[str, float]:
    """Parse a `$CHATBOT_TRAIN_LIMITS` value: ``NAME=NUMBER`` pairs separated by commas or spaces,
    NAME one of `LIMITABLE` (e.g. ``max_minutes=0.1,max_dialogues=40``); None or "" is no limit.

    Raises:
        ConfigError: an unknown NAME or a value that is not a positive number.
    """
    limits: dict[str, float] = {}
    for pair in (text or "").replace(",", " ").split():
        name, _, value = pair.partition("=")
        if name not in LIMITABLE:
            raise ConfigError(f"${TRAIN_LIMITS_VARIABLE}: unknown limit {name!r}; limits are {', '.join(LIMITABLE)} (NAME=NUMBER)")
        try:
            limits[name] = float(value)
        except ValueError:
            raise ConfigError(f"${TRAIN_LIMITS_VARIABLE}: {name} needs a number, got {value!r}") from None
        if not limits[name] > 0:
            raise ConfigError(f"${TRAIN_LIMITS_VARIABLE}: {name} must be > 0, got {value}")
    return limits


def limited(config: C, limits: dict[str, float]) -> tuple[C, list[str]]:
    """`config` (a `TrainConfig`, or an `EvalConfig` for `max_dialogues`) with each limited setting it has lowered
    to its limit (a limit never raises one; None, no budget, counts as above every limit), and a
    ``name old → new`` line per setting it lowered."""
    changes: dict[str, Any] = {}
    for name, limit in limits.items():
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        if value is None or value > limit:
            changes[name] = limit if name == "max_minutes" else max(1, int(limit))
    lowered = [f"{name} {getattr(config, name)} → {value:g}" for name, value in changes.items()]
    return dataclasses.replace(config, **changes), lowered
