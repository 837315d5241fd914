"""ConvoKit corpora (Chang et al. 2020): reply trees in ``utterances.jsonl``, linearised into dialogues.

A ConvoKit corpus folder holds ``utterances.jsonl`` (one utterance per line: ``id``,
``speaker`` (older releases: ``user``), ``conversation_id`` (older: ``root``),
``reply_to`` (null for a conversation's first utterance), ``text``, ``timestamp``,
``meta``) besides ``conversations.json``, ``speakers.json``, ``corpus.json`` and
``index.json``. https://convokit.cornell.edu/documentation/data_format.html

A conversation is a tree of replies. ``--convokit-paths longest`` (the default) reads
each conversation as one dialogue along its longest root-to-leaf chain (ties: the
earliest leaf by timestamp, then the first in the file); ``all`` reads every
root-to-leaf chain as a dialogue. Empty texts are dropped from a chain and a
speaker's consecutive utterances become one turn. The file is read once, keeping a
small tuple per utterance grouped by conversation (not its ``meta``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import Dialogue, Utterance, merge_runs, split_of
from chatbot.corpus.formats import Format, Problems, ReadOptions, head_json, is_text, json_lines, open_text
from chatbot.errors import CorpusError
from chatbot.text.normalize import normalize_text

UTTERANCES = "utterances.jsonl"
CONVERSATIONS = "conversations.json"


@dataclasses.dataclass(frozen=True, slots=True)
class _Node:
    id: str
    speaker: str
    reply_to: str | None
    text: str  # "" for an empty text, and for one reported as holding control characters
    timestamp: float | None
    line: int


def _utterances(path: Path, options: ReadOptions, problems: Problems) -> dict[str, list[_Node]]:
    """Every well-formed utterance of the file, grouped by conversation (in order of first appearance)."""
    conversations: dict[str, list[_Node]] = {}
    for number, value in json_lines(path, options, problems):
        where = f"{path}:{number}"
        if not isinstance(value, dict) or value.get("id") is None or not isinstance(value.get("text"), str):
            problems.report(where, "an utterance needs an 'id' and a 'text' string")
            continue
        reply_to = value.get("reply_to", value.get("reply-to"))
        conversation = value.get("conversation_id", value.get("root"))
        if conversation is None and reply_to is not None:
            problems.report(where, "a reply needs a 'conversation_id' (the id of its conversation's first utterance)")
            continue
        text = normalize_text(value["text"])  # first: a Reddit comment's newlines are no control characters
        if not is_text(text):
            problems.report(where, "control characters in the text (binary data?); remove them")
            text = ""  # kept in the tree so its replies still hang on it
        speaker = value.get("speaker", value.get("user"))
        timestamp = value.get("timestamp")
        node = _Node(
            str(value["id"]),
            "unknown" if speaker is None else str(speaker),
            None if reply_to is None else str(reply_to),
            text,
            float(timestamp) if isinstance(timestamp, int | float) and not isinstance(timestamp, bool) else None,
            number,
        )
        conversations.setdefault(str(value["id"] if conversation is None else conversation), []).append(node)
    return conversations


def _chains(nodes: list[_Node], path: Path, paths: str, problems: Problems) -> Iterator[list[_Node]]:
    """The root-to-leaf chains of one conversation's reply tree: the longest, or all (in file order of their leaves).

    Reports duplicate ids and replies to unknown ids; what hangs below those is left out.
    """
    by_id: dict[str, _Node] = {}
    for node in nodes:
        if node.id in by_id:
            problems.report(
                f"{path}:{node.line}", f"utterance id {node.id!r} appears twice (first on line {by_id[node.id].line}); ids must be unique"
            )
        else:
            by_id[node.id] = node
    children: dict[str, list[_Node]] = {}
    roots = []
    for node in by_id.values():
        if node.reply_to is None:
            roots.append(node)
        elif node.reply_to in by_id:
            children.setdefault(node.reply_to, []).append(node)
        else:
            problems.report(f"{path}:{node.line}", f"replies to {node.reply_to!r}, which is no utterance of its conversation; fix reply_to")
    depth = {root.id: 1 for root in roots}
    parent: dict[str, _Node] = {}
    leaves = []
    queue = list(roots)
    for node in queue:  # breadth first from the roots (the queue grows as it goes): no recursion, and a reply cycle is never reached
        below = children.get(node.id)
        if not below:
            leaves.append(node)
        for child in below or ():
            depth[child.id], parent[child.id] = depth[node.id] + 1, node
            queue.append(child)
    if paths == "all":
        chosen = sorted(leaves, key=lambda n: n.line)
    else:
        never = float("inf")
        chosen = [min(leaves, key=lambda n: (-depth[n.id], never if n.timestamp is None else n.timestamp, n.line))] if leaves else []
    for leaf in chosen:
        chain = [leaf]
        while chain[-1].id in parent:
            chain.append(parent[chain[-1].id])
        yield chain[::-1]


def _metadata(folder: Path, options: ReadOptions, problems: Problems) -> dict:
    """conversations.json's object (conversation id → {"meta": ...}), or {} when there is none."""
    path = folder / CONVERSATIONS
    if not path.is_file():
        return {}
    try:
        with open_text(path, options) as handle:
            value = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.report(str(path), f"not JSON ({exc}); fix or remove the file (it only adds each conversation's meta)")
        return {}
    if not isinstance(value, dict):
        problems.report(str(path), "expected an object of conversation ids; fix or remove the file")
        return {}
    return value


def read(path: Path, options: ReadOptions, problems: Problems) -> Iterator[Dialogue]:
    """A ConvoKit corpus folder (or its utterances.jsonl), one dialogue per chain, conversations in file order."""
    file = path / UTTERANCES if path.is_dir() else path
    if not file.is_file():
        raise CorpusError(f"{path}: no {UTTERANCES} in this folder; give a ConvoKit corpus folder")
    conversations = _utterances(file, options, problems)
    metadata = _metadata(file.parent, options, problems)
    for conversation, nodes in conversations.items():
        meta = metadata.get(conversation)
        meta = meta.get("meta") if isinstance(meta, dict) else None
        for chain in _chains(nodes, file, options.convokit_paths, problems):
            turns = merge_runs(Utterance(n.speaker, n.text, {"utterance_id": n.id}) for n in chain if n.text)
            if len(turns) < 2:
                continue
            dialogue_id = f"convokit:{conversation}" + (f":{chain[-1].id}" if options.convokit_paths == "all" else "")
            # Every path of one conversation shares its opening turns: all of them go to the conversation's split.
            split = split_of(f"convokit:{conversation}") if options.convokit_paths == "all" else None
            yield Dialogue(dialogue_id, turns, {"conversation_id": conversation, **({"meta": meta} if meta else {})}, split)


def sniff(path: Path) -> bool:
    """A folder holding utterances.jsonl, or a .jsonl file whose first line is a ConvoKit utterance."""
    try:
        if path.is_dir():
            return (path / UTTERANCES).is_file()
    except OSError:
        return False
    if path.suffix.lower() != ".jsonl":
        return False
    value = head_json(path)
    return isinstance(value, dict) and ("reply_to" in value or "reply-to" in value) and ("conversation_id" in value or "root" in value)


FORMAT = Format("convokit", "a ConvoKit corpus (utterances.jsonl with reply_to trees)", read, sniff, directory=True)
