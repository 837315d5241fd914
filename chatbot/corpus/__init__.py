"""Dialogue corpora: readers, the stable split, and per-split statistics."""

from __future__ import annotations

import dataclasses

from chatbot.corpus.dialogue import SPLITS, Dialogue, Utterance, split_of
from chatbot.corpus.loaders import FILE_FORMATS, chatterbot_languages, load_dialogues


@dataclasses.dataclass
class Corpus:
    """A named list of dialogues with the deterministic train/valid/test split."""

    spec: str
    dialogues: list[Dialogue]

    def split(self, name: str) -> list[Dialogue]:
        """The dialogues of one split (``train``, ``valid`` or ``test``), in corpus order."""
        return [d for d in self.dialogues if d.split == name]


def load_corpus(spec: str, format: str | None = None, max_dialogues: int | None = None) -> Corpus:
    """Read a corpus SPEC (see `load_dialogues`); `max_dialogues` keeps the first N, for quick runs.

    Raises:
        CorpusError: the spec cannot be read (the message names file and line).
    """
    dialogues = load_dialogues(spec, format)
    if max_dialogues is not None:
        dialogues = dialogues[:max_dialogues]
    return Corpus(spec, dialogues)


__all__ = [
    "Corpus",
    "Dialogue",
    "FILE_FORMATS",
    "SPLITS",
    "Utterance",
    "chatterbot_languages",
    "load_corpus",
    "split_of",
]
