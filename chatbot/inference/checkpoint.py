"""A trained model directory: what it holds, how it loads, how it is identified.

Layout (written by `chatbot train`):
    model.keras      the best model (native Keras format, no pickle)
    tokenizer.model  SentencePiece protobuf
    config.json      ModelConfig + TrainConfig
    metrics.json     per-epoch training and validation metrics
    curves.png       perplexity (and VHRED's KL and beta) per epoch, drawn from metrics.json
    backup/          weights and optimizer state after the last epoch, or the batch a cut one stopped at (--resume)
    logs/            TensorBoard event files
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from chatbot.config import ModelConfig, TrainConfig, from_dict
from chatbot.errors import CheckpointError, ModelNotFoundError
from chatbot.paths import models_dir
from chatbot.text.tokenizer import FILENAME as TOKENIZER_FILENAME
from chatbot.text.tokenizer import Tokenizer

MODEL_FILENAME = "model.keras"
CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
CURVES_FILENAME = "curves.png"
# The pretrained model in the repository (a source checkout or editable install): `chatbot pack` output
# of a full Chit-Chat run, float16 weights. Its MODEL_CARD.md says how it was made.
SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[2] / "storage" / "models" / "default"
QUICK_TRAIN_COMMAND = "chatbot train --corpus chitchat --model hred --preset small --max-minutes 5 --out storage/models/quick"


@dataclasses.dataclass
class Checkpoint:
    """A loaded model directory. `model_id` is a checksum of the model and tokenizer files."""

    path: Path
    model: Any  # a DialogueModel (keras.Model) with encode_context / decode_step
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    model_id: str


def write_config(directory: Path, model_config: ModelConfig, train_config: TrainConfig) -> None:
    payload = {"format_version": 1, "model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config)}
    (directory / CONFIG_FILENAME).write_text(json.dumps(payload, indent=2) + "\n")


def read_config(directory: Path) -> tuple[ModelConfig, TrainConfig]:
    """Raises CheckpointError when config.json is missing or unreadable."""
    path = Path(directory) / CONFIG_FILENAME
    try:
        payload = json.loads(path.read_text())
        return from_dict(ModelConfig, payload["model"]), from_dict(TrainConfig, payload["train"])
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing; {directory} is not a model directory written by `chatbot train`") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable config ({exc}); retrain the model with `chatbot train`") from exc


def sha256_of(*paths: Path) -> str:
    """SHA-256 hex digest over the bytes of `paths`, in order, read 1 MiB at a time."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_checksum(directory: Path) -> str:
    """SHA-256 (first 16 hex digits) over the model and tokenizer files: the model's identity."""
    return sha256_of(*(Path(directory) / name for name in (MODEL_FILENAME, TOKENIZER_FILENAME)))[:16]


def find_default_model(shipped: Path | None = None) -> Path:
    """The model `chatbot chat` uses without --model: $CHATBOT_MODEL, else the model shipped with
    the project (`SHIPPED_MODEL_DIR`, described by its MODEL_CARD.md), else the newest under storage/models/.

    Args:
        shipped: the shipped model's directory (default `SHIPPED_MODEL_DIR`).
    Raises:
        ModelNotFoundError: no model exists at all (the message says how to train one).
    """
    if os.environ.get("CHATBOT_MODEL"):
        return Path(os.environ["CHATBOT_MODEL"])
    shipped = SHIPPED_MODEL_DIR if shipped is None else Path(shipped)
    if (shipped / MODEL_FILENAME).is_file():
        return shipped
    candidates = sorted(models_dir().glob(f"*/{MODEL_FILENAME}"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not candidates:
        raise ModelNotFoundError(f"no trained model in {models_dir()}/; train a quick one (about 6 minutes) with: {QUICK_TRAIN_COMMAND}")
    return candidates[0].parent


def check_model_dir(directory: Path | str) -> Path:
    """The model file of a model directory, checked to exist (fast: nothing is loaded).

    Raises:
        CheckpointError: the directory or its model file is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model directory; train one with `chatbot train --out {directory}`")
    model_path = directory / MODEL_FILENAME
    if not model_path.is_file():
        raise CheckpointError(
            f"{model_path}: missing; training has not finished an epoch yet (continue it with `chatbot train --resume --out {directory}`)"
        )
    return model_path


def load_checkpoint(directory: Path | str) -> Checkpoint:
    """Load a model directory for inference, with Keras `safe_mode` on (no code runs from the file).

    Raises:
        CheckpointError: the directory or a file is missing, or the model file is corrupt.
    """
    import keras

    from chatbot.models import float32_copy  # importing chatbot.models registers the custom layers

    directory = Path(directory)
    model_path = check_model_dir(directory)
    model_config, train_config = read_config(directory)
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILENAME)
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{model_path}: cannot load the model ({type(exc).__name__}); the file is corrupt or from another program"
        ) from exc
    if model.vocabulary_size != tokenizer.vocabulary_size:
        raise CheckpointError(
            f"{directory}: model vocabulary ({model.vocabulary_size}) does not match tokenizer ({tokenizer.vocabulary_size})"
        )
    try:
        model = float32_copy(model, model_config)
    except ValueError as exc:  # config.json describes other sizes than the model file holds
        raise CheckpointError(f"{directory}: {CONFIG_FILENAME} does not match {MODEL_FILENAME} ({exc})") from exc
    return Checkpoint(directory, model, tokenizer, model_config, train_config, model_checksum(directory))
