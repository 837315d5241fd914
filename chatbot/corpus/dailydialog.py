"""DailyDialog (Li et al. 2017): one dialogue per line, every turn ended by ``__eou__``.

http://yanran.li/dailydialog (CC BY-NC-SA 4.0). The release is a folder with ``train/``,
``validation/`` and ``test/`` subfolders (official split) holding ``dialogues_SPLIT.txt``
and, line by line beside it, ``dialogues_act_SPLIT.txt`` and ``dialogues_emotion_SPLIT.txt``:
one integer label per turn. The reader takes that folder, a folder holding the files
directly, or one ``dialogues*.txt`` file (``dialogues_text.txt`` is the whole corpus,
unsplit). Labels become each turn's metadata ``{"act": ..., "emotion": ...}``; speakers
alternate. Texts keep the corpus's tokenization (``Hello , how are you ?``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, Utterance
from chatbot.corpus.formats import SPLIT_WORDS, Format, Problems, ReadOptions, head_lines, is_text, split_from_name, text_lines
from chatbot.corpus.plain import alternating
from chatbot.errors import CorpusError
from chatbot.text.normalize import normalize_text

EOU = "__eou__"
ACTS = {1: "inform", 2: "question", 3: "directive", 4: "commissive"}
EMOTIONS = {0: "no emotion", 1: "anger", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "surprise"}
LABELS = {"act": ACTS, "emotion": EMOTIONS}
# File-name (and subfolder) words that name an official split, in reading order.


def _key(path: Path) -> str:
    """``train`` for ``dialogues_train.txt``, ``text`` for ``dialogues_text.txt``."""
    return path.stem.lower().removeprefix("dialogues_").removeprefix("dialogues")


def _is_text_file(path: Path) -> bool:
    name = path.name.lower()
    return (
        path.is_file()
        and name.startswith("dialogues")
        and name.endswith(".txt")
        and not name.startswith(("dialogues_act", "dialogues_emotion"))
    )


def _texts_in(folder: Path) -> list[Path]:
    """The text files of a folder: the split-named ones (train, validation, test order) when any, else all."""
    found = sorted(p for p in folder.iterdir() if _is_text_file(p))
    order = list(SPLIT_WORDS)
    split_named = sorted((p for p in found if _key(p) in SPLIT_WORDS), key=lambda p: order.index(_key(p)))
    return split_named or found


def _layout(path: Path) -> list[tuple[Path, str | None]]:
    """(text file, official split) pairs to read, in order."""
    if path.is_file():
        return [(path, split_from_name(_key(path)))]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such DailyDialog file or folder")
    pairs: list[tuple[Path, str | None]] = [
        (f, SPLIT_WORDS[sub.name]) for sub in sorted(path.iterdir()) if sub.is_dir() and sub.name in SPLIT_WORDS for f in _texts_in(sub)
    ]
    pairs.sort(key=lambda pair: list(SPLIT_WORDS.values()).index(str(pair[1])))
    if not pairs:
        pairs = [(f, split_from_name(_key(f))) for f in _texts_in(path)]
    if not pairs:
        raise CorpusError(f"{path}: no dialogues*.txt file here or in train/, validation/, test/; is this the DailyDialog folder?")
    return pairs


def _side(text: Path, kind: str) -> Path | None:
    """``dialogues_act_train.txt`` beside ``dialogues_train.txt`` (``dialogues_act.txt`` beside ``dialogues_text.txt``)."""
    key = _key(text)
    if not text.name.lower().startswith("dialogues"):
        return None
    side = text.with_name(f"dialogues_{kind}.txt" if key == "text" else f"dialogues_{kind}_{key}.txt")
    return side if side.is_file() else None


def _lines(path: Path | None, options: ReadOptions) -> Iterator[tuple[int, str] | None]:
    """The lines of a label file, then None forever (None forever when there is no file)."""
    return itertools.chain(text_lines(path, options) if path else (), itertools.repeat(None))


def _labels(kind: str, side: Path, line: tuple[int, str] | None, turns: int, where: str, problems: Problems) -> list[str] | None:
    """The label names of one dialogue's turns, or None after reporting what is wrong."""
    if line is None:
        problems.report(where, f"no line for this dialogue in {side.name} (it ended early); it needs one line per dialogue")
        return None
    number, text = line
    names = []
    for value in text.split():
        try:
            names.append(LABELS[kind][int(value)])
        except (ValueError, KeyError):
            problems.report(
                f"{side}:{number}", f"{kind} label {value!r} is not one of {min(LABELS[kind])}-{max(LABELS[kind])}; fix or remove it"
            )
            return None
    if len(names) != turns:
        problems.report(where, f"{turns} turns but {len(names)} {kind} labels on line {number} of {side.name}; give one label per turn")
        return None
    return names


def _turns(line: str, where: str, problems: Problems) -> list[str] | None:
    if EOU not in line:
        problems.report(where, f"no {EOU} marker; DailyDialog ends every turn with {EOU}")
        return None
    pieces = [normalize_text(p) for p in line.split(EOU)]
    if not pieces[-1]:
        pieces.pop()  # the line's final __eou__
    for index, text in enumerate(pieces, start=1):
        if not text:
            problems.report(where, f"turn {index} is empty ({EOU} twice in a row); remove the extra marker")
            return None
        if not is_text(text):
            problems.report(where, f"turn {index} holds control characters (binary data?); remove them")
            return None
    return pieces


def _read_file(text: Path, split: str | None, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    sides = {kind: _side(text, kind) for kind in LABELS}
    streams = {kind: _lines(side, options) for kind, side in sides.items()}
    prefix = f"dailydialog:{split or _key(text) or 'dialogues'}"
    for number, line in text_lines(text, options):
        label_lines = {kind: next(stream) for kind, stream in streams.items()}
        if not line.strip():
            continue
        where = f"{text}:{number}"
        texts = _turns(line, where, problems)
        if texts is None:
            continue
        labels = {kind: _labels(kind, side, label_lines[kind], len(texts), where, problems) for kind, side in sides.items() if side}
        if any(names is None for names in labels.values()):
            continue
        if len(texts) < 2:
            continue
        turns = alternating(texts)
        if labels:
            found = {kind: names for kind, names in labels.items() if names is not None}
            metas = [{kind: names[i] for kind, names in found.items()} for i in range(len(texts))]
            turns = tuple(Utterance(t.speaker, t.text, meta) for t, meta in zip(turns, metas, strict=True))
        yield Dialogue(f"{prefix}:{number}", turns, official_split=split)


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """The dialogues of a DailyDialog folder or ``dialogues*.txt`` file (see the module docstring)."""
    for text, split in _layout(path):
        yield from _read_file(text, split, options, problems)


def sniff(path: Path) -> bool:
    """A ``.txt`` file whose first lines hold ``__eou__`` (but no ``__eot__``: Ubuntu), or a DailyDialog folder."""
    try:
        if path.is_dir():
            return (
                (path / "dialogues_text.txt").is_file()
                or (path / "train" / "dialogues_train.txt").is_file()
                or any(path.glob("dialogues_*.txt"))
            )
        if path.suffix.lower() != ".txt":
            return False
    except OSError:
        return False
    lines = head_lines(path, 10)
    return bool(lines) and not lines[0].startswith("Context,") and EOU in lines[0] and not any("__eot__" in line for line in lines)


FORMAT = Format("dailydialog", "DailyDialog (turns separated by __eou__)", read, sniff, directory=True)
