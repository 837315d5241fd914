"""Readers for every supported corpus: registered names and files.

A corpus SPEC is a registered name (``chitchat``, ``chatterbot:LANG``), the
stored conversations (``db:`` for the default database, ``db:URL`` for another),
or a file path (``.txt`` or ``.jsonl``; ``format=`` overrides the extension).
Every reader returns dialogues whose texts are whitespace-normalised and
whose consecutive same-speaker messages are joined into one turn.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path

import yaml

from chatbot.corpus.dialogue import Dialogue, Utterance, content_id, merge_runs, normalize_text
from chatbot.errors import CorpusError

FILE_FORMATS = ("txt", "jsonl")
# Speakers given to formats that carry none: turns alternate between them.
_ALTERNATING = ("speaker1", "speaker2")


def _alternating(texts: list[str]) -> tuple[Utterance, ...]:
    return tuple(Utterance(_ALTERNATING[i % 2], t) for i, t in enumerate(texts))


def _is_text(text: str) -> bool:
    """False for text carrying control characters other than tab (binary data pasted as text)."""
    return not any(ord(ch) < 32 and ch != "\t" for ch in text)


def load_chitchat() -> list[Dialogue]:
    """The Chit-Chat Challenge corpus (BYU PCC lab) shipped by the ``chitchat-dataset`` package.

    7,168 conversations, 258,145 messages. The dialogue id is the corpus's own
    conversation id; a turn is the run of consecutive messages from one sender.
    """
    try:
        import chitchat_dataset
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise CorpusError("corpus 'chitchat' needs the chitchat-dataset package: pip install chitchat-dataset") from exc
    path = Path(chitchat_dataset.__file__).with_name("dataset.json")
    with path.open(encoding="utf-8") as handle:
        raw = json.load(handle)
    dialogues = []
    for conversation_id, conversation in raw.items():
        messages = (
            Utterance(message["sender"], normalize_text(message["text"])) for group in conversation["messages"] for message in group
        )
        turns = merge_runs(m for m in messages if m.text)
        if len(turns) >= 2:
            dialogues.append(Dialogue(conversation_id, turns))
    return dialogues


def chatterbot_languages() -> list[str]:
    """The languages the installed ``chatterbot-corpus`` package ships."""
    root = importlib.resources.files("chatterbot_corpus") / "data"
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


def load_chatterbot(language: str) -> list[Dialogue]:
    """The YAML conversations of ``chatterbot-corpus`` for one language (e.g. ``english``, ``japanese``)."""
    languages = chatterbot_languages()
    if language not in languages:
        raise CorpusError(f"chatterbot-corpus has no language {language!r}; choose one of: {', '.join(languages)}")
    root = importlib.resources.files("chatterbot_corpus") / "data" / language
    dialogues = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yml", ".yaml")):
            continue
        document = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            texts = [normalize_text(str(t)) for t in conversation if t is not None]
            texts = [t for t in texts if t]
            if len(texts) >= 2:
                dialogues.append(Dialogue(f"chatterbot:{language}:{content_id(texts)}", _alternating(texts)))
    return dialogues


def load_stored(url: str | None = None) -> list[Dialogue]:
    """The stored conversations of a chatbot database, each along its active path.

    Speakers stay ``user`` and ``bot``; the dialogue id is ``session-N`` (as in
    `chatbot sessions export`), so a conversation falls in the same split either way.
    Conversations of fewer than two turns are left out.

    Raises:
        StorageError: the database cannot be opened.
        CorpusError: it holds no conversation of two turns or more.
    """
    from chatbot.paths import default_database_url
    from chatbot.storage import ConversationStore

    store = ConversationStore(url or default_database_url())
    try:
        dialogues = [
            Dialogue(f"session-{conversation.id}", merge_runs(Utterance(turn.speaker, turn.text) for turn in path))
            for conversation, path in store.active_paths()
            if len(path) >= 2
        ]
    finally:
        store.close()
    if not dialogues:
        raise CorpusError(f"db:{url or ''}: no stored conversation has two turns yet; chat first (`chatbot chat`)")
    return dialogues


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) pairs; undecodable or binary lines raise CorpusError naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus file: {exc.strerror}") from exc
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not UTF-8 text (byte {exc.start + 1}); convert the file to UTF-8") from exc
        if not _is_text(line):
            raise CorpusError(f"{path}:{number}: control characters in a line (binary data?); remove them")
        yield number, line


def load_text(path: Path) -> list[Dialogue]:
    """Plain text: one utterance per line, a blank line between dialogues; speakers alternate."""
    dialogues: list[Dialogue] = []
    texts: list[str] = []
    start = 1

    def close() -> None:
        if len(texts) == 1:
            raise CorpusError(
                f"{path}:{start}: a dialogue with a single utterance; a dialogue needs at least two lines "
                "(a blank line separates dialogues)"
            )
        if texts:
            dialogues.append(Dialogue(content_id(texts), _alternating(list(texts))))

    for number, line in _read_lines(path):
        text = normalize_text(line)
        if text:
            if not texts:
                start = number
            texts.append(text)
        else:
            close()
            texts = []
    close()
    return dialogues


def _jsonl_turns(path: Path, number: int, value: object) -> tuple[str | None, tuple[Utterance, ...]]:
    """Parse one JSONL record into (explicit id or None, turns)."""
    where = f"{path}:{number}"
    dialogue_id = None
    if isinstance(value, dict):
        if "turns" not in value:
            raise CorpusError(f"{where}: an object needs a 'turns' list (got keys: {', '.join(sorted(value)) or 'none'})")
        dialogue_id = value.get("id")
        if dialogue_id is not None:
            dialogue_id = str(dialogue_id)
        value = value["turns"]
    if not isinstance(value, list):
        raise CorpusError(f"{where}: expected a list of turns or an object with 'turns', got {type(value).__name__}")
    turns = []
    for index, turn in enumerate(value, start=1):
        if isinstance(turn, str):
            speaker, text = _ALTERNATING[(index - 1) % 2], turn
        elif isinstance(turn, dict) and isinstance(turn.get("text"), str):
            speaker, text = str(turn.get("speaker") or _ALTERNATING[(index - 1) % 2]), turn["text"]
        else:
            raise CorpusError(f"{where}: turn {index} must be a string or an object with a 'text' string")
        text = normalize_text(text)
        if not text:
            raise CorpusError(f"{where}: turn {index} is empty")
        if not _is_text(text):
            raise CorpusError(f"{where}: turn {index} holds control characters (binary data?)")
        turns.append(Utterance(speaker, text))
    if len(turns) < 2:
        raise CorpusError(f"{where}: a dialogue needs at least two turns, got {len(turns)}")
    return dialogue_id, merge_runs(turns)


def load_jsonl(path: Path) -> list[Dialogue]:
    """JSONL: one dialogue per line, a list of strings or an object ``{"id"?, "turns": [...]}``.

    A turn is a string or ``{"speaker": ..., "text": ...}``. Blank lines are skipped.
    """
    dialogues = []
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        dialogue_id, turns = _jsonl_turns(path, number, value)
        dialogues.append(Dialogue(dialogue_id or content_id(t.text for t in turns), turns))
    return dialogues


def load_dialogues(spec: str, format: str | None = None) -> list[Dialogue]:
    """Read a corpus SPEC into dialogues.

    Raises:
        CorpusError: unknown name, missing file, unknown format, or a malformed
            line (the message names the file and the line number).
    """
    if spec == "chitchat":
        return load_chitchat()
    if spec.startswith("chatterbot:"):
        return load_chatterbot(spec.split(":", 1)[1])
    if spec == "db" or spec.startswith("db:"):
        return load_stored(spec[3:] or None)
    path = Path(spec)
    if not path.exists():
        raise CorpusError(f"unknown corpus {spec!r}: not a registered name (chitchat, chatterbot:LANG, db:[URL]) and no such file")
    if path.is_dir():
        raise CorpusError(f"{spec}: is a directory; give a .txt or .jsonl file")
    kind = format or path.suffix.lstrip(".").lower()
    if kind == "txt":
        dialogues = load_text(path)
    elif kind == "jsonl":
        dialogues = load_jsonl(path)
    else:
        raise CorpusError(f"{spec}: unknown corpus format {kind!r}; use a .txt or .jsonl file or --format {{txt,jsonl}}")
    if not dialogues:
        raise CorpusError(f"{spec}: no dialogues found")
    return dialogues
