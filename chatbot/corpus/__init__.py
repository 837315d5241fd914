"""Dialogue corpora: readers, the stable split, and per-split statistics."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

from chatbot.corpus.dialogue import SPLITS, Dialogue, Utterance, split_of
from chatbot.corpus.formats import Problems, ReadOptions
from chatbot.corpus.loaders import chatterbot_languages
from chatbot.corpus.registry import FORMATS, Source, detect, resolve


@dataclasses.dataclass
class Corpus:
    """A named list of dialogues with the deterministic train/valid/test split."""

    spec: str
    dialogues: list[Dialogue]
    format: str = ""  # the reader(s) that read it, e.g. "cornell", or "chitchat+dailydialog" for several

    def split(self, name: str) -> list[Dialogue]:
        """The dialogues of one split (``train``, ``valid`` or ``test``), in corpus order."""
        return [d for d in self.dialogues if d.split == name]


def load_corpus(
    spec: str | Sequence[str],
    format: str | None = None,
    max_dialogues: int | None = None,
    options: ReadOptions | None = None,
    problems: Problems | None = None,
    splits: Sequence[str] | None = None,
) -> Corpus:
    """Read a corpus SPEC (see `chatbot.corpus.registry`), or several one after another, into memory.

    `max_dialogues` keeps the first N of each; `splits` keeps only those splits' dialogues
    (read while streaming, so a big corpus's valid split fits in memory). For corpora too big for memory, stream
    `resolve(spec).dialogues()` instead (as `chatbot train` does).

    Raises:
        CorpusError: a spec cannot be read (the message names file and line).
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    sources = [resolve(s, format, options) for s in specs]
    dialogues = [
        d for source in sources for d in itertools.islice(source.dialogues(problems), max_dialogues) if splits is None or d.split in splits
    ]
    return Corpus(" + ".join(specs), dialogues, "+".join(source.format for source in sources))


def load(
    spec: str | Sequence[str],
    *,
    format: str | None = None,
    split: str | None = None,
    encoding: str | None = None,
    convokit_paths: str = "longest",
    skip_malformed: bool = False,
) -> Iterator[Dialogue]:
    """The dialogues of corpus SPEC(s) (see `chatbot.corpus.registry`: chitchat, chatterbot:LANG, a file or folder
    in any of the eight formats, db: for stored conversations), streamed one at a time in corpus order, each
    with the split `chatbot train` gives it.

    Args:
        format: the reader (default: detected, as `chatbot corpus detect` says).
        split: "train", "valid" or "test" to keep only that split.
        encoding, convokit_paths: as the `--encoding` and `--convokit-paths` flags.
        skip_malformed: skip malformed records (counted) instead of stopping at the first.
    Raises:
        CorpusError: a spec cannot be read, or a malformed record (the message names file and line).
        ConfigError: an unknown split.
    """
    from chatbot.errors import ConfigError

    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    options = ReadOptions(encoding, convokit_paths)
    problems = Problems(strict=not skip_malformed)
    for one in [spec] if isinstance(spec, str) else spec:
        for dialogue in resolve(one, format, options).dialogues(problems):
            if split is None or dialogue.split == split:
                yield dialogue


__all__ = [
    "Corpus",
    "Dialogue",
    "FORMATS",
    "Problems",
    "ReadOptions",
    "SPLITS",
    "Source",
    "Utterance",
    "chatterbot_languages",
    "detect",
    "load",
    "load_corpus",
    "resolve",
    "split_of",
]
