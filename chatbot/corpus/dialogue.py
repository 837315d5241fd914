"""Dialogues, utterances and the deterministic train/valid/test split."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

SPLITS = ("train", "valid", "test")

# Share of dialogues per split, in percent of the hash space (about 90/5/5).
_TRAIN_PERCENT = 90
_VALID_PERCENT = 5


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One turn of a dialogue: the run of consecutive messages of one speaker.

    `metadata` holds what a corpus says about the turn besides its text (DailyDialog's
    dialogue act and emotion, Cornell's line id); `corpus convert --to jsonl` keeps it.
    """

    speaker: str
    text: str
    metadata: dict[str, Any] | None = dataclasses.field(default=None, hash=False)


@dataclasses.dataclass(frozen=True)
class Dialogue:
    """A whole conversation. `id` is stable across machines and runs; it decides the split.

    `official_split` (``train``, ``valid`` or ``test``) is the corpus's own split where it
    ships one (DailyDialog's and Ubuntu's folders or files); it wins over the hash of `id`.
    `metadata` holds what the corpus says about the whole dialogue (PersonaChat's personas,
    Ubuntu's distractor replies for recall@k, a Cornell movie's title).
    """

    id: str
    turns: tuple[Utterance, ...]
    metadata: dict[str, Any] | None = dataclasses.field(default=None, hash=False)
    official_split: str | None = None

    @property
    def split(self) -> str:
        return self.official_split or split_of(self.id)


def content_id(texts: Iterable[str]) -> str:
    """A stable id for a dialogue that has none of its own: a hash of its turns' text."""
    digest = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()
    return digest[:16]


def split_of(dialogue_id: str) -> str:
    """Which split a dialogue belongs to: a SHA-256 of its id, so identical everywhere."""
    bucket = int.from_bytes(hashlib.sha256(dialogue_id.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < _TRAIN_PERCENT:
        return "train"
    if bucket < _TRAIN_PERCENT + _VALID_PERCENT:
        return "valid"
    return "test"


def merge_runs(turns: Iterable[Utterance]) -> tuple[Utterance, ...]:
    """Join consecutive utterances of the same speaker into one turn (texts joined by a space).

    The joined turn keeps the metadata of the run's first utterance.
    """
    merged: list[Utterance] = []
    for turn in turns:
        if merged and merged[-1].speaker == turn.speaker:
            merged[-1] = dataclasses.replace(merged[-1], text=f"{merged[-1].text} {turn.text}")
        else:
            merged.append(turn)
    return tuple(merged)


# Zero-width characters (space, joiners, BOM) carry no meaning for the model.
