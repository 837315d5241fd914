"""`chatbot corpus`: statistics of a corpus or a mixture, validation, format detection and conversion.

Each function returns the lines to print; `chatbot.cli.commands` prints them. Statistics
count tokens with the tokenizer training would use, through the token cache
(`chatbot.corpus.tokens`), so a ``corpus stats`` before ``chatbot train`` also
prepares its data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpus.dialogue import SPLITS
from chatbot.corpus.formats import Problems, ReadOptions
from chatbot.corpus.plain import JSONL
from chatbot.corpus.registry import FORMATS, Source, detect, resolve
from chatbot.corpus.writers import write_corpus


def describe(source: Source) -> str:
    """``SPEC (format NAME, …)`` with what changes how it is read."""
    notes = [f"format {source.format}"]
    if source.options.encoding:
        notes.append(f"encoding {source.options.encoding}")
    if source.format == "convokit":
        notes.append(
            "every root-to-leaf reply path" if source.options.convokit_paths == "all" else "the longest reply path per conversation"
        )
    return f"{source.spec} ({', '.join(notes)})"


def stats_lines(
    sources: list[Source], weights: tuple[float, ...] | None, vocabulary_size: int, cache: Path | None, problems: Problems
) -> Iterator[str]:
    """Dialogues, turns and tokens per split of each corpus, then of the mixture.

    Raises:
        CorpusError: a corpus cannot be read (strict `problems`).
        ConfigError: `vocabulary_size` is too small for the corpora's characters.
    """
    from chatbot.corpus.tokens import cached_tokenizer, tokenize_source, train_texts

    tokenizer = cached_tokenizer(sources, vocabulary_size, cache, lambda: train_texts(sources, strict=problems.strict))
    counts = [tokenize_source(source, tokenizer, cache, problems=problems).counts() for source in sources]
    header = f"  {'split':<6} {'dialogues':>10} {'turns':>10} {'tokens':>12} {'tokens/turn':>12}"

    def rows(count: dict) -> Iterator[str]:
        yield header
        for name in SPLITS:
            c = count[name]
            per_turn = c["tokens"] / c["turns"] if c["turns"] else 0.0
            yield f"  {name:<6} {c['dialogues']:>10} {c['turns']:>10} {c['tokens']:>12} {per_turn:>12.1f}"

    yield f"tokens: SentencePiece, {tokenizer.vocabulary_size} pieces trained on the train split of {'the mixture' if len(sources) > 1 else 'the corpus'}"
    for source, count in zip(sources, counts, strict=True):
        yield describe(source)
        yield from rows(count)
    if len(sources) > 1:
        weights = weights or (1.0,) * len(sources)
        total = {name: {key: sum(c[name][key] for c in counts) for key in ("dialogues", "turns", "tokens")} for name in SPLITS}
        yield "mixture"
        yield from rows(total)
        seen = [w * c["train"]["tokens"] for w, c in zip(weights, counts, strict=True)]
        shares = ", ".join(f"{s.spec} {w:g}× → {t / max(sum(seen), 1):.1%}" for s, w, t in zip(sources, weights, seen, strict=True))
        yield f"  train tokens per epoch by weight: {shares}"
    if problems.count:
        yield f"skipped {problems.count} malformed records (--skip-malformed); list them with `chatbot corpus validate`"


def validate_lines(source: Source) -> tuple[list[str], bool]:
    """Read every record, collecting problems: (lines to print, whether the corpus is clean)."""
    problems = Problems(strict=False)
    dialogues = turns = 0
    for dialogue in source.dialogues(problems):
        dialogues += 1
        turns += len(dialogue.turns)
    summary = f"{describe(source)}: {dialogues} dialogues, {turns} turns"
    if not problems.count:
        return [f"{summary}: ok"], True
    shown = f"; the first {len(problems.messages)} above" if problems.count > len(problems.messages) else ""
    return [*problems.messages, f"{summary}, {problems.count} malformed records skipped{shown}"], False


def detect_line(path: Path) -> tuple[str, bool]:
    """What a file or directory looks like: (line to print, whether a format was found)."""
    found = detect(path)
    if found:
        names = " or ".join(f.name for f in found)
        return f"{path}: {names}: {found[0].summary}; read it as {found[0].name}:{path}", True
    if path.is_file() and JSONL.sniff(path):
        return f"{path}: jsonl: {JSONL.summary}", True
    if path.is_file() and path.suffix.lower() == ".txt":
        return f"{path}: txt: {FORMATS['txt'].summary} (no standard corpus's markers found)", True
    kind = "directory" if path.is_dir() else "file" if path.exists() else "no such path"
    return f"{path}: no known corpus format ({kind}); formats: {', '.join(FORMATS)}", False


def convert(spec: str, format: str | None, options: ReadOptions, to: str, out: Path, max_dialogues: int | None = None) -> str:
    """Write a corpus in another format; returns the line to print. Raises CorpusError."""
    source = resolve(spec, format, options)
    count = write_corpus(itertools.islice(source.dialogues(), max_dialogues), to, out)
    return f"wrote {count} dialogues of {describe(source)} to {out} ({to})"
