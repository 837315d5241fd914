"""Tokenized corpora on disk: memory-mapped token arrays, built once per corpus and tokenizer.

A corpus of a million dialogues is read once, as a stream, tokenized in chunks and
written as four flat arrays; training then reads windows straight from the
memory-mapped files, so neither the text nor the token ids are ever held as Python
objects. The folder is named by the corpus's content (`Source.fingerprint`: the
format, the decoding options and every byte of its files), the tokenizer's bytes
and the dialogue limit, so a second run on the same corpus opens it in milliseconds
and a changed file or tokenizer can never be served stale data. Folders are written
under a temporary name and renamed when complete, so a run killed mid-way leaves
nothing half-built behind. The tokenizer trained on a corpus is cached the same way.

Arrays (``N_tok`` tokens, ``N_utt`` utterances, ``N_dia`` dialogues):
    ``tokens.bin``: `(N_tok,)` int32 token ids, unframed (no BOS/EOS).
    ``utterances.bin``: `(N_utt + 1,)` int64 offsets into tokens.
    ``dialogues.bin``: `(N_dia + 1,)` int64 offsets into utterances.
    ``splits.bin``: `(N_dia,)` uint8, the index of each dialogue's split in `SPLITS`.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from chatbot.corpus.dialogue import SPLITS, Dialogue
from chatbot.corpus.formats import Problems
from chatbot.corpus.registry import Source
from chatbot.text.tokenizer import Tokenizer

FORMAT_VERSION = 1
_ARRAYS = {"tokens": np.int32, "utterances": np.int64, "dialogues": np.int64, "splits": np.uint8}
# Dialogues tokenized per SentencePiece call: large enough to amortise the call, small enough to stay light.
_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """One corpus's token arrays (see the module docstring), memory-mapped read-only.

    Attributes:
        directory: the folder holding the arrays and ``meta.json``.
        spec: the corpus SPEC it was built from.
    """

    directory: Path
    spec: str
    tokens: np.ndarray
    utterances: np.ndarray
    dialogues: np.ndarray
    splits: np.ndarray

    @classmethod
    def open(cls, directory: Path) -> TokenizedCorpus:
        """Map a finished folder. Raises OSError or ValueError when it is not one."""
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: token cache version {meta.get('version')}, expected {FORMAT_VERSION}")
        arrays = {}
        for name, dtype in _ARRAYS.items():
            path = directory / f"{name}.bin"
            # np.memmap refuses empty files; an empty array needs no mapping.
            arrays[name] = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
        return cls(directory, meta["spec"], **arrays)

    @property
    def num_dialogues(self) -> int:
        return len(self.splits)

    def split_mask(self, split: str | None) -> np.ndarray:
        """`(N_dia,)` bool: the dialogues of one split (None: all)."""
        return np.ones(len(self.splits), bool) if split is None else self.splits == SPLITS.index(split)

    def counts(self) -> dict[str, dict[str, int]]:
        """Dialogues, turns and tokens per split."""
        turns = np.diff(self.dialogues)
        tokens_per_dialogue = np.diff(np.asarray(self.utterances)[np.asarray(self.dialogues)])
        return {
            name: {
                "dialogues": int(mask.sum()),
                "turns": int(turns[mask].sum()),
                "tokens": int(tokens_per_dialogue[mask].sum()),
            }
            for name in SPLITS
            for mask in [self.split_mask(name)]
        }


def _write_arrays(directory: Path, dialogues: Iterable[Dialogue], tokenizer: Tokenizer) -> int:
    """Stream dialogues into the four array files; returns the number of dialogues."""
    files = {name: (directory / f"{name}.bin").open("wb") for name in _ARRAYS}
    token_count = utterance_count = dialogue_count = 0
    try:
        files["utterances"].write(np.zeros(1, np.int64).tobytes())
        files["dialogues"].write(np.zeros(1, np.int64).tobytes())
        iterator = iter(dialogues)
        while chunk := list(itertools.islice(iterator, _CHUNK)):
            texts = [turn.text for dialogue in chunk for turn in dialogue.turns]
            ids = tokenizer.encode_batch(texts)
            lengths = np.fromiter((len(u) for u in ids), np.int64, len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
            files["tokens"].write(flat.tobytes())
            files["utterances"].write((token_count + np.cumsum(lengths)).tobytes())
            turns = np.fromiter((len(d.turns) for d in chunk), np.int64, len(chunk))
            files["dialogues"].write((utterance_count + np.cumsum(turns)).tobytes())
            files["splits"].write(np.fromiter((SPLITS.index(d.split) for d in chunk), np.uint8, len(chunk)).tobytes())
            token_count += int(lengths.sum())
            utterance_count += len(ids)
            dialogue_count += len(chunk)
    finally:
        for handle in files.values():
            handle.close()
    return dialogue_count


def _publish(build: Callable[[Path], dict], target: Path) -> None:
    """Run `build(temporary folder)`, then rename the folder to `target` (atomic; a concurrent twin wins harmlessly)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        meta = build(temporary)
        (temporary / "meta.json").write_text(json.dumps({"version": FORMAT_VERSION, **meta}, indent=1), encoding="utf-8")
        try:
            os.rename(temporary, target)
        except OSError:
            if not (target / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def cache_key(*parts: object) -> str:
    """A short hex key over the given parts (fingerprints, tokenizer bytes, limits)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def tokenize_source(
    source: Source,
    tokenizer: Tokenizer,
    cache: Path | None,
    max_dialogues: int | None = None,
    problems: Problems | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> TokenizedCorpus:
    """The token arrays of a corpus: from `cache` when built before, else built (and cached).

    A source without a fingerprint (``db:``) or `cache` None builds into a temporary
    folder that lives as long as the process.

    Raises:
        CorpusError: the corpus cannot be read (strict `problems`).
    """
    fingerprint = source.fingerprint()
    if cache is None or fingerprint is None:
        scratch = Path(tempfile.mkdtemp(prefix="chatbot-tokens-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # lives as long as the process
        target = scratch / "corpus"
    else:
        target = cache / "tokens" / cache_key(fingerprint, tokenizer.model_proto, max_dialogues)
        try:
            found = TokenizedCorpus.open(target)
            log(f"{source.spec}: token cache {target} ({found.num_dialogues} dialogues, {len(found.tokens)} tokens)")
            return found
        except (OSError, ValueError, KeyError):
            shutil.rmtree(target, ignore_errors=True)

    def build(directory: Path) -> dict:
        count = _write_arrays(directory, itertools.islice(source.dialogues(problems), max_dialogues), tokenizer)
        return {"spec": source.spec, "format": source.format, "fingerprint": fingerprint, "dialogues": count}

    log(f"{source.spec}: tokenizing into {target}")
    _publish(build, target)
    return TokenizedCorpus.open(target)


def train_texts(sources: list[Source], max_dialogues: int | None = None, strict: bool = True) -> Iterator[str]:
    """Utterance texts of the mixture's train split, streamed (every split when none is train):
    what the tokenizer trains on.

    Raises:
        CorpusError: a malformed record, when `strict`.
    """
    seen = 0
    for source in sources:
        for dialogue in itertools.islice(source.dialogues(Problems(strict=strict)), max_dialogues):
            if dialogue.split == "train":
                seen += 1
                yield from (turn.text for turn in dialogue.turns)
    if not seen:
        for source in sources:
            for dialogue in itertools.islice(source.dialogues(Problems(strict=False)), max_dialogues):
                yield from (turn.text for turn in dialogue.turns)


def cached_tokenizer(
    sources: list[Source],
    vocabulary_size: int,
    cache: Path | None,
    texts: Callable[[], Iterator[str]],
    max_dialogues: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Tokenizer:
    """The tokenizer trained on `texts()` (the mixture's train split), reused when the corpora are unchanged.

    Raises:
        ConfigError: `vocabulary_size` is too small for the corpus's characters.
    """
    fingerprints = [source.fingerprint() for source in sources]
    label = " + ".join(source.spec for source in sources)
    if cache is None or None in fingerprints:
        log(f"training the tokenizer on the train split of {label} (vocabulary ≤ {vocabulary_size})")
        return Tokenizer.train(texts(), vocabulary_size)
    path = cache / "tokenizers" / f"{cache_key(fingerprints, vocabulary_size, max_dialogues)}.model"
    if path.exists():
        log(f"tokenizer of {label} from the cache: {path}")
        return Tokenizer.load(path)
    log(f"training the tokenizer on the train split of {label} (vocabulary ≤ {vocabulary_size})")
    tokenizer = Tokenizer.train(texts(), vocabulary_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    tokenizer.save(partial)
    os.replace(partial, path)
    return tokenizer
