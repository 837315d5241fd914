"""`chatbot pack`: a trained model directory reduced to what chatting needs, for shipping.

The packed directory holds the model without optimizer state (optionally with
float16 weights: half the bytes), its tokenizer, config, metrics and curves, and
``pack.json``: the perplexity of the original and the packed model on the
validation split, measured side by side, and the SHA-256 of every file.
Packing fails, and leaves nothing behind, when float16 weights change the
perplexity by 1% or more.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from chatbot.errors import CheckpointError
from chatbot.inference.checkpoint import (
    CONFIG_FILENAME,
    CURVES_FILENAME,
    METRICS_FILENAME,
    MODEL_FILENAME,
    load_checkpoint,
    model_checksum,
    sha256_of,
)
from chatbot.text.tokenizer import FILENAME as TOKENIZER_FILENAME

PACK_FILENAME = "pack.json"
COPIED_FILES = (TOKENIZER_FILENAME, CONFIG_FILENAME, METRICS_FILENAME, CURVES_FILENAME)
MAX_PERPLEXITY_CHANGE = 0.01  # relative change allowed by float16 weights


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
        the contents of pack.json: perplexities (`source`, `packed`, relative `change`), byte sizes (bytes), SHA-256s.
    Raises:
        CheckpointError: `source` cannot be loaded, `out` exists and is not an empty directory,
            the split has no dialogue to measure on, writing fails, or the float16 perplexity
            differs by `MAX_PERPLEXITY_CHANGE` or more. Nothing is left at `out` on failure
            (the copy is assembled in a hidden sibling directory and renamed at the end).
        CorpusError: the training corpus cannot be read to measure the perplexity.
    """
    from chatbot.corpus import ReadOptions, load_corpus
    from chatbot.evaluation.evaluate import perplexity
    from chatbot.models import build_model, dtype_policy
    from chatbot.training.data import dialogue_windows

    source, out = Path(source), Path(out)
    original = load_checkpoint(source)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists and is not an empty directory; choose another --out or remove it first")
    # Everything that can fail on the input is checked before anything is written.
    train_config = original.train_config
    options = ReadOptions(train_config.encoding, train_config.convokit_paths)
    corpus = load_corpus(train_config.corpus, train_config.corpus_format, max_dialogues, options, splits=[split])
    dialogues = corpus.split(split)
    config = original.model_config
    if not dialogue_windows(dialogues, original.tokenizer, config.max_turns, config.max_utterance_length):
        raise CheckpointError(
            f"{corpus.spec}: no {split} dialogue with two or more turns to check the packed model on"
            + ("; raise --max-dialogues" if max_dialogues is not None else "")
        )
    dtype = "float16" if float16 else "float32"
    staging = out.with_name(f".{out.name}.packing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        with dtype_policy(dtype):
            packed_model = build_model(config)
        packed_model.set_weights([w.astype(dtype) for w in original.model.get_weights()])
        packed_model.save(staging / MODEL_FILENAME)  # never compiled: no optimizer state is written
        for name in COPIED_FILES:
            if (source / name).exists():
                shutil.copyfile(source / name, staging / name)
        log(f"measuring perplexity on {len(dialogues)} {split} dialogues: the source, then the {dtype} copy")
        before = perplexity(original, dialogues, batch_size, seed=0)
        after = perplexity(load_checkpoint(staging), dialogues, batch_size, seed=0)
        change = after["value"] / before["value"] - 1.0
        if abs(change) >= MAX_PERPLEXITY_CHANGE:
            raise CheckpointError(
                f"{out}: {dtype} weights change the {split} perplexity by {change:+.2%} "
                f"({before['value']} → {after['value']}); pack with --float32 instead"
            )
        report = {
            "source": str(source),
            "source_model_id": original.model_id,
            "dtype": dtype,
            "perplexity": {"split": split, "source": before, "packed": after, "change": round(change, 6)},
            "bytes": {"source": (source / MODEL_FILENAME).stat().st_size, "packed": (staging / MODEL_FILENAME).stat().st_size},
            "model_id": model_checksum(staging),
            "sha256": {name: sha256_of(staging / name) for name in (MODEL_FILENAME, *COPIED_FILES) if (staging / name).exists()},
        }
        (staging / PACK_FILENAME).write_text(json.dumps(report, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot write the packed model ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
