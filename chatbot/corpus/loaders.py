"""The named corpora: Chit-Chat and chatterbot-corpus from their packages, and the stored conversations.

Like every reader, these return dialogues whose texts are whitespace-normalised
and whose consecutive same-speaker messages are joined into one turn.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path

import yaml

from chatbot.corpus.dialogue import Dialogue, Utterance, content_id, merge_runs
from chatbot.corpus.plain import alternating
from chatbot.errors import CorpusError
from chatbot.text.normalize import normalize_text


def chitchat_file() -> Path:
    """The ``dataset.json`` of the installed ``chitchat-dataset`` package. Raises CorpusError when it is missing."""
    try:
        import chitchat_dataset
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise CorpusError("corpus 'chitchat' needs the chitchat-dataset package: pip install chitchat-dataset") from exc
    return Path(chitchat_dataset.__file__).with_name("dataset.json")


def read_chitchat() -> Iterator[Dialogue]:
    """The Chit-Chat Challenge corpus (BYU PCC lab) shipped by the ``chitchat-dataset`` package, streamed.

    7,168 conversations, 258,145 messages; the 4,017 with two turns or more are read. The dialogue id
    is the corpus's own conversation id; a turn is the run of consecutive messages from one sender.
    The file is one JSON object (40 MB, parsed at once); each dialogue is normalised only when it is
    reached, so a reader that stops after the first few (``--max-dialogues``) skips the rest's work.
    """
    with chitchat_file().open(encoding="utf-8") as handle:
        raw = json.load(handle)
    for conversation_id, conversation in raw.items():
        messages = (
            Utterance(message["sender"], normalize_text(message["text"])) for group in conversation["messages"] for message in group
        )
        turns = merge_runs(m for m in messages if m.text)
        if len(turns) >= 2:
            yield Dialogue(conversation_id, turns)


def chatterbot_languages() -> list[str]:
    """The languages the installed ``chatterbot-corpus`` package ships."""
    root = importlib.resources.files("chatterbot_corpus") / "data"
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


def chatterbot_directory(language: str) -> Path:
    """The folder of one language's YAML files. Raises CorpusError for a language the package lacks."""
    languages = chatterbot_languages()
    if language not in languages:
        raise CorpusError(f"chatterbot-corpus has no language {language!r}; choose one of: {', '.join(languages)}")
    return Path(str(importlib.resources.files("chatterbot_corpus") / "data" / language))


def load_chatterbot(language: str) -> list[Dialogue]:
    """The YAML conversations of ``chatterbot-corpus`` for one language (e.g. ``english``, ``japanese``)."""
    root = chatterbot_directory(language)
    dialogues = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yml", ".yaml")):
            continue
        document = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
        for conversation in document.get("conversations") or []:
            texts = [normalize_text(str(t)) for t in conversation if t is not None]
            texts = [t for t in texts if t]
            if len(texts) >= 2:
                dialogues.append(Dialogue(f"chatterbot:{language}:{content_id(texts)}", alternating(texts)))
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
    from chatbot.storage import open_store

    store = open_store(url, create=False)
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
