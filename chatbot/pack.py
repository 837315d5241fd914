"""`chatbot pack`: a trained model directory reduced to what chatting needs, for shipping.

The packed directory holds the model without optimizer state (optionally with
float16 weights: half the bytes), its tokenizer, config, metrics and curves, and
``pack.json``: the perplexity of the original and the packed model on the
validation split, measured side by side, and the SHA-256 of every file.
Packing fails, and removes the packed model file, when float16 weights change
the perplexity by 1% or more.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from chatbot.checkpoint import (
    CONFIG_FILENAME,
    CURVES_FILENAME,
    METRICS_FILENAME,
    MODEL_FILENAME,
    load_checkpoint,
    model_checksum,
)
from chatbot.errors import CheckpointError
from chatbot.tokenizer import FILENAME as TOKENIZER_FILENAME

PACK_FILENAME = "pack.json"
COPIED_FILES = (TOKENIZER_FILENAME, CONFIG_FILENAME, METRICS_FILENAME, CURVES_FILENAME)
MAX_PERPLEXITY_CHANGE = 0.01  # relative change allowed by float16 weights


def file_sha256(path: Path) -> str:
    """Full SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_model(
    source: Path | str,
    out: Path | str,
    float16: bool = True,
    split: str = "valid",
    max_dialogues: int | None = None,
    batch_size: int = 64,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Write the inference-only copy of `source` to `out` and check its perplexity.

    Args:
        source: a model directory written by `chatbot train`.
        out: the directory to write; it must not hold a model yet.
        float16: store the weights as float16 (decoding still runs in float32).
        split: corpus split of the training corpus the two perplexities are measured on.
        max_dialogues: only the first N dialogues of the corpus (quick checks).
    Returns:
        the contents of pack.json: perplexities (`float32`, `packed`, relative `change`), byte sizes, SHA-256s.
    Raises:
        CheckpointError: `source` cannot be loaded, `out` already holds a model, or
            the float16 perplexity differs by `MAX_PERPLEXITY_CHANGE` or more (the packed model is removed).
        CorpusError: the training corpus cannot be read to measure the perplexity.
    """
    from chatbot.corpus import load_corpus
    from chatbot.evaluation import perplexity
    from chatbot.models import build_model, dtype_policy

    source, out = Path(source), Path(out)
    original = load_checkpoint(source)
    if (out / MODEL_FILENAME).exists():
        raise CheckpointError(f"{out} already holds a model; choose another --out or remove it first")
    out.mkdir(parents=True, exist_ok=True)
    dtype = "float16" if float16 else "float32"
    with dtype_policy(dtype):
        packed_model = build_model(original.model_config)
    packed_model.set_weights([w.astype(dtype) for w in original.model.get_weights()])
    packed_model.save(out / MODEL_FILENAME)  # never compiled: no optimizer state is written
    for name in COPIED_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, out / name)

    corpus = load_corpus(original.train_config.corpus, original.train_config.corpus_format, max_dialogues)
    dialogues = corpus.split(split)
    if not dialogues:
        raise CheckpointError(f"{original.train_config.corpus}: no {split} dialogues to check the packed model on")
    log(f"measuring perplexity on {len(dialogues)} {split} dialogues: float32, then {dtype}")
    before = perplexity(original, dialogues, batch_size, seed=0)
    after = perplexity(load_checkpoint(out), dialogues, batch_size, seed=0)
    change = after["value"] / before["value"] - 1.0
    if abs(change) >= MAX_PERPLEXITY_CHANGE:
        (out / MODEL_FILENAME).unlink()
        raise CheckpointError(
            f"{out}: {dtype} weights change the {split} perplexity by {change:+.2%} "
            f"({before['value']} → {after['value']}); pack without --float16"
        )
    report = {
        "source": str(source),
        "source_model_id": original.model_id,
        "dtype": dtype,
        "perplexity": {"split": split, "float32": before, dtype: after, "change": round(change, 6)},
        "bytes": {"source": (source / MODEL_FILENAME).stat().st_size, "packed": (out / MODEL_FILENAME).stat().st_size},
        "model_id": model_checksum(out),
        "sha256": {name: file_sha256(out / name) for name in (MODEL_FILENAME, *COPIED_FILES) if (out / name).exists()},
    }
    (out / PACK_FILENAME).write_text(json.dumps(report, indent=2) + "\n")
    return report
