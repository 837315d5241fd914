"""Does a chat loop? Ten-turn chats with a model, counting bot replies that repeat an earlier one.

For each user script (ten messages a person might send, one of them a follow-up about something
said earlier), each seed and each setting of `--no-earlier-reply-ngram` (0 = off, and the
default), the chat runs through the real reply path (`DialogueManager.answer`, an SQLite store
in a temporary folder, the model's default decoding otherwise), and counts bot replies that

- repeat an earlier bot reply of the chat word for word, or
- open with the same first five words as an earlier bot reply ("the same opener"),

and the distinct-1/distinct-2 of all bot replies (Li et al. 2016: distinct n-grams over all
n-grams). One table per run, the settings side by side, and `--transcript` prints one chat of
each setting to read.

Run:  .venv/bin/python benchmarks/chat_repeats.py [--model storage/models/default] [--seeds 5]
          [--sampler top_p|greedy] [--output FILE.json] [--transcript]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run

from chatbot.dialogue.manager import DialogueManager
from chatbot.inference.checkpoint import find_default_model, load_checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.storage import ConversationStore

SCRIPTS = [
    [
        "hi! how are you doing today?",
        "i'm good. i just got back from class",
        "i'm studying computer science. what's your major?",
        "that sounds interesting. do you like it?",
        "what do you want to do after you graduate?",
        "i want to work at a tech company in seattle",
        "do you have any plans for the weekend?",
        "i might go hiking if the weather is nice",
        "what did you say your major was again?",
        "cool. well, it was nice talking to you",
    ],
    [
        "hey, what's up?",
        "not much, just watching a movie",
        "it's a comedy about two brothers. do you like movies?",
        "what kind of music do you listen to?",
        "i love jazz and a bit of rock",
        "have you ever been to a concert?",
        "where are you from originally?",
        "i grew up in a small town in idaho",
        "where did i say i grew up?",
        "ok, i have to go. talk to you later!",
    ],
]


def distinct(replies: list[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of the replies' words (Li et al. 2016)."""
    grams = [tuple(words[i : i + n]) for words in replies for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def chat(manager: DialogueManager, script: list[str], decoding: DecodingConfig, seed: int) -> list[str]:
    conversation = manager.start()
    return [manager.answer(conversation.id, message, decoding, seed=seed * 100 + turn).reply.text for turn, message in enumerate(script)]


def repeats(replies: list[str]) -> tuple[int, int]:
    """(replies equal to an earlier one, replies whose first five words open an earlier one)."""
    same = opener = 0
    for index, reply in enumerate(replies):
        earlier = replies[:index]
        same += reply.lower() in (r.lower() for r in earlier)
        words = reply.lower().split()[:5]
        opener += len(words) == 5 and any(r.lower().split()[:5] == words for r in earlier)
    return same, opener


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sampler", default="top_p", choices=["top_p", "greedy"])
    parser.add_argument("--output", default=None)
    parser.add_argument("--transcript", action="store_true")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model or find_default_model())
    default = DecodingConfig(sampler=args.sampler)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; model {checkpoint.path} ({checkpoint.model_config.architecture}); {args.sampler}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        manager = DialogueManager(ConversationStore(f"sqlite:///{Path(folder) / 'chats.db'}"), checkpoint)
        for setting in (0, default.no_earlier_reply_ngram):
            decoding = default.replace(no_earlier_reply_ngram=setting)
            chats = [chat(manager, script, decoding, seed) for script in SCRIPTS for seed in range(args.seeds)]
            counted = [repeats(replies) for replies in chats]
            words = [reply.lower().split() for replies in chats for reply in replies]
            row = {
                "no_earlier_reply_ngram": setting,
                "chats": len(chats),
                "replies": len(words),
                "repeated_replies": sum(same for same, _ in counted),
                "repeated_openers": sum(opener for _, opener in counted),
                "chats_with_a_repeat": sum(1 for same, opener in counted if same or opener),
                "distinct_1": round(distinct(words, 1), 3),
                "distinct_2": round(distinct(words, 2), 3),
            }
            rows.append(row)
            if args.transcript:
                print(f"\n--no-earlier-reply-ngram {setting}:")
                for message, reply in zip(SCRIPTS[0], chats[0], strict=True):
                    print(f"  user: {message}\n  bot:  {reply}")
        manager.store.close()
    print("\n" + " ".join(f"{k:>22}" for k in rows[0]))
    for row in rows:
        print(" ".join(f"{v!s:>22}" for v in row.values()))
    if args.output:
        Path(args.output).write_text(json.dumps({"model": str(checkpoint.path), "sampler": args.sampler, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    _common.run(main)
