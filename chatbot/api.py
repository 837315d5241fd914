"""The Python API: load a model and talk to it, keep conversations, train, evaluate and replay from Python.

What `import chatbot` offers (`chatbot.__all__` lists the same names, and `tests/test_api.py`
checks their signatures against `docs/api-surface.txt`):

    import chatbot

    bot = chatbot.load()                                  # the shipped model, as `chatbot chat` opens it
    print(bot.reply(["hi! what are you studying?"]).text)
    with bot.conversation() as chat:                      # stored in storage/chatbot.db, like the REPL's
        chat.say("hello")
        chat.retry()                                      # another reply; the first stays as a branch

Every reply is made by the one reply path the terminal chat, the HTTP server, `eval` and
`replay` use (`chatbot.inference.responder.Responder`, and `chatbot.dialogue.manager.DialogueManager`
for stored conversations), so a seed gives the same reply here as there. The command line's
handlers (`chatbot.cli.commands`) call `train`, `evaluate` and `replay` below, so the two cannot
drift apart. Errors are the project's own (`chatbot.errors`): every one has a one-line message
saying what, where and how to fix it.

TensorFlow is imported only when a model is loaded or trained, so `import chatbot` stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chatbot.config import TRAIN_LIMITS_VARIABLE, ModelConfig, TrainConfig, limited, model_config, train_limits
from chatbot.errors import CheckpointError, ConfigError
from chatbot.inference.decoding import DecodingConfig

Decoding = DecodingConfig  # how replies are picked: sampler, temperature, top-k, top-p, beam, lengths, candidates


@dataclasses.dataclass(frozen=True)
class Reply:
    """A reply and what made it (enough to make it again: the same history, model, settings and seed).

    Attributes:
        text: the reply as a chat shows and stores it.
        candidates: every candidate made, best first; `text` is `candidates[chosen]`.
        tokens: SentencePiece ids of the chosen candidate, end marker excluded.
        seed: the random seed it was sampled with (a fresh one unless given).
        decoding: the settings used.
        model_id: checksum of the model's files (first 16 hex digits of SHA-256).
        latency_ms: time to generate every candidate, milliseconds.
        turn_id, conversation_id: where it is stored; None for `Bot.reply`, which stores nothing.
        chosen: index of `text` among `candidates`.
    """

    text: str
    candidates: tuple[str, ...]
    tokens: tuple[int, ...]
    seed: int
    decoding: DecodingConfig
    model_id: str
    latency_ms: float
    turn_id: int | None = None
    conversation_id: int | None = None
    chosen: int = 0


def _reply(candidates, model_id: str, turn=None, conversation_id: int | None = None, chosen: int = 0) -> Reply:
    found = candidates.found[chosen]
    text = turn.text if turn is not None else candidates.texts[chosen]
    return Reply(
        text,
        tuple(candidates.texts),
        tuple(int(t) for t in found.token_ids),
        candidates.seed,
        candidates.decoding,
        model_id,
        round(candidates.latency_ms, 2),
        turn.id if turn is not None else None,
        conversation_id,
        chosen,
    )


def _decoding(decoding: DecodingConfig | None, n: int | None) -> DecodingConfig:
    decoding = decoding or DecodingConfig()
    if not isinstance(decoding, DecodingConfig):
        raise ConfigError(f"decoding must be a chatbot.Decoding, got {type(decoding).__name__}")
    return decoding if n is None else decoding.replace(num_return_sequences=n)


def find_model(path_or_name: str | Path = "default") -> Path:
    """The model directory `path_or_name` names: "default" is what `chatbot chat` opens without --model
    ($CHATBOT_MODEL, else the shipped model, else the newest under storage/models/); an existing
    directory is itself; another name is storage/models/NAME.

    Raises:
        ModelNotFoundError: "default" and no model exists (the message says how to train one).
        CheckpointError: no such model directory.
    """
    from chatbot.inference.checkpoint import check_model_dir, find_default_model
    from chatbot.paths import models_dir

    if str(path_or_name) == "default":
        return find_default_model()
    path = Path(path_or_name)
    if not path.exists() and len(path.parts) == 1 and (models_dir() / path).is_dir():
        path = models_dir() / path
    check_model_dir(path)
    return path


def database_url(db: str | Path | None) -> str | None:
    """A SQLAlchemy URL for `db`: a URL as it is, a file path as a SQLite URL, None (the default database) as None."""
    if db is None or "://" in str(db):
        return None if db is None else str(db)
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def load(path_or_name: str | Path = "default", *, context_turns: int | None = None) -> Bot:
    """A model ready to reply: the model directory's Keras model (loaded in `safe_mode`: no code runs from
    the file), its tokenizer and settings.

    Args:
        path_or_name: a model directory, a name under storage/models/, or "default" (see `find_model`).
        context_turns: turns of a history the model reads (default: its window, max_turns - 1).
    Raises:
        ModelNotFoundError, CheckpointError: no such model, or a missing or corrupt file.
        ConfigError: `context_turns` < 1.
    """
    from chatbot.inference.checkpoint import load_checkpoint

    return Bot(load_checkpoint(find_model(path_or_name)), context_turns=context_turns)


class Bot:
    """A loaded model that replies to histories and keeps conversations.

    Attributes:
        model: the `keras.Model` (an HRED, HRAN, VHRED, Seq2Seq or language model): fine-tune it with
            `fit` on `chatbot.training.dialogue_batches`, save it with `model.save`.
        tokenizer: its SentencePiece tokenizer (`encode`, `decode`).
        config, train_config: how it was built and trained.
        path, name, model_id: its directory, the directory's name, and the checksum of its files.

    Args:
        checkpoint: a loaded model directory (`chatbot.inference.checkpoint.load_checkpoint`).
        context_turns: turns of a history the model reads (default: its window).
        generator: a generator already built for this checkpoint, or anything with its `candidates`
            method (a custom sampler, say: examples/custom_sampler.py); default: the compiled one.
    Raises:
        ConfigError: `context_turns` < 1.
    """

    def __init__(self, checkpoint, *, context_turns: int | None = None, generator=None):
        from chatbot.inference.responder import Responder

        self.checkpoint = checkpoint
        self.responder = Responder(checkpoint, context_turns, generator)

    model = property(lambda self: self.checkpoint.model)
    tokenizer = property(lambda self: self.checkpoint.tokenizer)
    config: ModelConfig = property(lambda self: self.checkpoint.model_config)  # type: ignore[assignment]
    train_config: TrainConfig = property(lambda self: self.checkpoint.train_config)  # type: ignore[assignment]
    path: Path = property(lambda self: self.checkpoint.path)  # type: ignore[assignment]
    name: str = property(lambda self: self.checkpoint.path.name)  # type: ignore[assignment]
    model_id: str = property(lambda self: self.checkpoint.model_id)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<chatbot.Bot {self.name} ({self.config.model}, model id {self.model_id[:8]})>"

    def reply(
        self, history: Sequence[str], *, decoding: DecodingConfig | None = None, seed: int | None = None, n: int | None = None
    ) -> Reply:
        """A reply to `history` (texts, oldest first, alternating speakers, the last one the user's). Stateless:
        nothing is stored, and the same history, settings and seed give the same reply.

        Each text is cleaned as a typed message is (escape codes and control characters removed). The
        model reads the last `context_turns` texts, each cut to its first max_utterance_length - 2 tokens.

        Args:
            decoding: how to pick the reply (default `chatbot.Decoding()`: top-p 0.9 at temperature 0.8).
            seed: the random seed (default: a fresh one, returned in `Reply.seed`).
            n: candidates to make (default `decoding.num_return_sequences`); `Reply.candidates` has them all.
        Raises:
            ConfigError: an empty history, a text empty after cleaning, or invalid settings.
        """
        from chatbot.dialogue.conversations import cleaned_message
        from chatbot.inference.responder import new_seed

        if isinstance(history, str):
            raise ConfigError("history must be a list of texts, oldest first, e.g. ['hi! what are you studying?']")
        if not history:
            raise ConfigError("history is empty: give at least the user's message")
        texts = [cleaned_message(text).text for text in history]
        found = self.responder.candidates(texts, _decoding(decoding, n), new_seed() if seed is None else seed)
        return _reply(found, self.model_id)

    def conversation(self, db: str | Path | None = None, conversation_id: int | None = None) -> Conversation:
        """A stored conversation answered by this model, in the database `chatbot chat` uses by default
        (storage/chatbot.db) or in `db`: a SQLite file's path, or a SQLAlchemy URL (sqlite:///…, postgresql://…).

        Args:
            conversation_id: continue that conversation; None starts a new one with the first `say`.
        Raises:
            ConversationNotFoundError: no such conversation.
            StorageError: the database cannot be opened or written.
        """
        from chatbot.dialogue.manager import DialogueManager
        from chatbot.storage import open_store

        manager = DialogueManager(open_store(database_url(db), create=conversation_id is None))
        manager.attach(self.checkpoint, self.responder.context_turns, self.responder.generator)
        if conversation_id is not None:
            manager.resume(conversation_id)
        return Conversation(manager, conversation_id)


class Conversation:
    """A stored conversation, answered through the dialogue manager: every message and reply is committed
    as it is made, branches are kept, and `chatbot sessions`, `chatbot replay` and the chat page see it.

    Use it as a context manager (or call `close`) to release the database connection.
    """

    def __init__(self, manager, conversation_id: int | None = None):
        self.manager = manager
        self.id = conversation_id

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connection (the conversation stays stored)."""
        self.manager.close()

    def _exchanged(self, exchange) -> Reply:
        self.id = exchange.conversation_id
        return _reply(exchange.candidates, self.manager.responder.checkpoint.model_id, exchange.reply, self.id, exchange.chosen)

    def say(self, text: str, *, decoding: DecodingConfig | None = None, seed: int | None = None, n: int | None = None) -> Reply:
        """Store the user's message `text`, answer it from the stored context, store the reply.

        Raises:
            ConfigError: the message is empty after cleaning, or invalid settings.
            ConversationBusyError: another process kept this conversation busy (it answers in turn).
            StorageError: the database cannot be written.
        """
        return self._exchanged(self.manager.answer(self.id, text, _decoding(decoding, n), seed))

    def retry(self, *, decoding: DecodingConfig | None = None, seed: int | None = None, n: int | None = None) -> Reply:
        """A new reply in place of the last one, which stays stored as an alternative (a branch).

        Raises:
            ConfigError: nothing to retry yet.
        """
        if self.id is None:
            raise ConfigError("nothing to retry: say something first")
        return self._exchanged(self.manager.retry(self.id, _decoding(decoding, n), seed))

    def edit(self, text: str, *, turn_id: int | None = None, decoding: DecodingConfig | None = None, seed: int | None = None) -> Reply:
        """Rewrite your last message (or user turn `turn_id`) as `text` and answer it: a new branch; the
        old message and what followed it stay stored on theirs.

        Raises:
            ConfigError: no message of yours to edit, or `turn_id` is not one.
        """
        if self.id is None:
            raise ConfigError("nothing to edit: say something first")
        return self._exchanged(self.manager.edit(self.id, text, _decoding(decoding, None), seed, turn_id=turn_id))

    def branches(self) -> list:
        """The conversation's branches (`chatbot.storage.Branch`: number, turns, last text, active), numbered
        as `switch` takes them."""
        return self.manager.branches(self._id())

    def switch(self, number: int) -> list:
        """Make branch `number` (from `branches`) the active path; returns its turns.

        Raises:
            ConfigError: no such branch.
        """
        return self.manager.switch(self._id(), number)

    def history(self) -> list:
        """The active path's turns (`chatbot.storage.Turn`: id, speaker "user" or "bot", text, seed, settings)."""
        return self.manager.history(self._id())

    def transcript(self, all_branches: bool = False):
        """The conversation as stored (`chatbot.storage.Transcript`), with every branch when asked."""
        return self.manager.transcript(self._id(), all_branches)

    def _id(self) -> int:
        if self.id is None:
            raise ConfigError("the conversation has no turns yet: say something first")
        return self.id


def train(
    corpus: str | Sequence[str] = "chitchat",
    *,
    out: str | Path,
    model: str | None = None,
    preset: str = "small",
    resume: bool = False,
    distribute: str = "none",
    replicas: int = 1,
    log: Callable[[str], None] | None = None,
    verbose: int | None = None,
    **settings: Any,
):
    """Train a dialogue model into `out`, as `chatbot train` does (it calls this function).

    Args:
        corpus: corpus SPECs (`chatbot corpus stats` reads the same; see docs/corpora.md).
        model: lm, seq2seq, hred, hran or vhred (default hred, or the architecture of `init_from`'s model).
        preset: sizes: tiny (tests), small (CPU), base (GPU).
        settings: any `ModelConfig` or `TrainConfig` field (`chatbot train --help` lists them with their
            defaults, which are the same here), e.g. `epochs=4, max_minutes=40, hidden_dim=512`.
        resume: continue the run in `out` from its last backup.
        distribute, replicas: the placement (`--distribute`, `--replicas`; docs/training.md "More than one device").
        log: called with each progress line (default: printed to stderr; `lambda line: None` for silence).
        verbose: Keras's progress output: 0 none, 1 a bar, 2 a line per epoch (default: a bar on a terminal, else lines).
    Returns:
        `chatbot.training.trainer.TrainResult`: out_dir, epochs_run, best_val_perplexity, seconds, model, and what
            ran: batches_run, target_tokens, epoch_batches, cut_at (the epoch and batch a `max_minutes` budget
            stopped at, else None).
    Raises:
        ConfigError: an unknown setting or an invalid value (the message names it).
        CorpusError: the corpus cannot be read (file and line named).
        CheckpointError: `out` holds a model and `resume` is not set, or `resume` finds no run.
    """
    from chatbot.inference.checkpoint import read_config
    from chatbot.training.trainer import train as train_model

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"model"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"corpus"}
    unknown = sorted(set(settings) - model_fields - train_fields)
    if unknown:
        raise ConfigError(f"train: unknown setting {', '.join(unknown)}; settings are ModelConfig and TrainConfig fields")
    if model is None:
        model = "hred"
        if settings.get("init_from") and not resume:
            try:
                model = read_config(Path(settings["init_from"]))[0].model
            except CheckpointError as exc:
                raise CheckpointError(f"--init-from: {exc}") from None
    config = model_config(preset, model=model, **{k: v for k, v in settings.items() if k in model_fields})
    corpus = (corpus,) if isinstance(corpus, str) else tuple(corpus)
    train_config = TrainConfig(corpus=corpus, **{k: v for k, v in settings.items() if k in train_fields})
    log = log or _to_stderr
    if resume:  # a resumed run keeps its planned epochs and budget unless they are given again
        try:
            saved = read_config(Path(out))[1]
            train_config = dataclasses.replace(
                train_config, **{name: getattr(saved, name) for name in ("epochs", "max_minutes") if name not in settings}
            )
        except CheckpointError:
            pass  # no run to resume: train_model says so
    else:  # $CHATBOT_TRAIN_LIMITS caps a new run; a bad SPEC is reported before TensorFlow starts
        from chatbot.corpus import ReadOptions, resolve

        train_config, lowered = limited(train_config, train_limits(os.environ.get(TRAIN_LIMITS_VARIABLE)))
        if lowered:
            log(f"${TRAIN_LIMITS_VARIABLE} lowers this run's budget: {', '.join(lowered)}")
        for spec in corpus:
            resolve(spec, train_config.corpus_format, ReadOptions(train_config.encoding, train_config.convokit_paths))
    return train_model(Path(out), config, train_config, resume=resume, verbose=verbose, log=log, distribute=distribute, replicas=replicas)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class Report:
    """`evaluate`'s result: one row per model (and baseline), as `chatbot eval` writes it to JSON.

    Attributes:
        rows: per model: label, architecture, perplexity (value, kind, target_tokens), context probe
            (true / shuffled / none), generation metrics (distinct-1/2, lengths, BLEU, ...), samples.
            A row's label names it in the table, the plot and `perplexity()`, unique in the report: the
            model directory's name (as much of the path as tells two directories of one name apart,
            `#2` for the same one twice), or the baseline's architecture (unigram, kn-3gram).
        corpus, split, seed, decoding: what was evaluated, and how replies were made.
    """

    rows: list[dict]
    corpus: str
    split: str
    seed: int
    decoding: DecodingConfig

    def __post_init__(self) -> None:
        from chatbot.evaluation.evaluate import labelled

        object.__setattr__(self, "rows", labelled(self.rows))  # labels unique across the models compared

    def to_dict(self) -> dict:
        """The JSON `chatbot eval --output` writes."""
        return {"corpus": self.corpus, "split": self.split, "seed": self.seed, "decoding": self.decoding.to_dict(), "rows": self.rows}

    def perplexity(self) -> dict[str, float]:
        """Perplexity per row, keyed by its label: the model directory's name (e.g. `hred-chitchat`; two
        directories of one name: `a/hred`, `b/hred`), or the baseline's architecture (unigram, kn-3gram)."""
        return {row["label"]: row["perplexity"]["value"] for row in self.rows}


def evaluate(
    models: str | Path | Sequence[str | Path],
    corpus: str = "chitchat",
    *,
    split: str = "test",
    contexts: int = 200,
    context_turns: int | None = None,
    ngram_baseline: bool = False,
    max_dialogues: int | None = None,
    decoding: DecodingConfig | None = None,
    seed: int = 1234,
    log: Callable[[str], None] | None = None,
    **read_options: Any,
) -> Report:
    """Score models on a corpus split, as `chatbot eval` does (it calls this function): perplexity of the
    references (teacher forcing; an upper bound for VHRED), the context probe (shuffled and no context),
    and metrics of `contexts` generated replies.

    Args:
        models: model directories or names (see `find_model`).
        ngram_baseline: add unigram and Kneser-Ney 3-gram rows over the first model's pieces.
        max_dialogues: read only the first N dialogues of the train split (the n-gram rows' fit) and of `split`,
            for a quick look; `$CHATBOT_TRAIN_LIMITS`'s `max_dialogues` lowers it too (as it does a training run's).
        read_options: `corpus_format`, `encoding`, `convokit_paths`, `skip_malformed` (as `chatbot eval`'s flags).
    Raises:
        ConfigError: `contexts` < 0 or an unknown option; CorpusError, CheckpointError: as their readers.
    """
    from chatbot.evaluation.evaluate import EvalConfig, EvalData, evaluate_model, ngram_row
    from chatbot.inference.checkpoint import load_checkpoint

    if contexts < 0:
        raise ConfigError(f"--contexts must be >= 0, got {contexts}")
    if max_dialogues is not None and max_dialogues < 1:
        raise ConfigError(f"--max-dialogues must be at least 1, got {max_dialogues}")
    known = {"corpus_format", "encoding", "convokit_paths", "skip_malformed"}
    if set(read_options) - known:
        raise ConfigError(f"evaluate: unknown option {', '.join(sorted(set(read_options) - known))}; options: {', '.join(sorted(known))}")
    paths = [find_model(m) for m in ([models] if isinstance(models, str | Path) else models)]
    config = EvalConfig(
        corpus, split, num_contexts=contexts, context_turns=context_turns, max_dialogues=max_dialogues, seed=seed, **read_options
    )
    decoding = _decoding(decoding, None)
    log = log or (lambda line: None)
    config, lowered = limited(config, train_limits(os.environ.get(TRAIN_LIMITS_VARIABLE)))
    if lowered:
        log(f"${TRAIN_LIMITS_VARIABLE} lowers this evaluation: {', '.join(lowered)} (dialogues read of the train and the {split} split)")
    data = EvalData.load(config)
    first = load_checkpoint(paths[0])  # the n-gram rows use its tokenizer: loaded once
    rows = [evaluate_model(path, config, decoding, data, log, first if index == 0 else None) for index, path in enumerate(paths)]
    if ngram_baseline:
        rows[:0] = [ngram_row(first, config, data, order=1, log=log), ngram_row(first, config, data, log=log)]
    return Report(rows, corpus, split, seed, decoding)


@dataclasses.dataclass(frozen=True)
class ReplayReport:
    """`replay`'s result: every stored reply of the conversations, regenerated.

    Attributes:
        conversations: the conversations replayed (`chatbot.storage.Conversation`: id, title, ...).
        results: per conversation id, one `chatbot.evaluation.replay.Regenerated` per stored reply (the
            stored turn, the regenerated text, `identical`, and why not when it differs).
    """

    conversations: list
    results: dict[int, list]

    @property
    def identical(self) -> bool:
        """Every regenerated reply equals the stored one."""
        return all(r.identical for results in self.results.values() for r in results)

    def counts(self) -> tuple[int, int]:
        """(replies identical, replies regenerated)."""
        results = [r for rs in self.results.values() for r in rs]
        return sum(r.identical for r in results), len(results)


def replay(
    conversation_id: int | Sequence[int] | None = None,
    db: str | Path | None = None,
    *,
    all_branches: bool = False,
    log: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Regenerate every stored reply of conversations with the model, settings and seed stored with it, as
    `chatbot replay --regenerate` does (it calls this function).

    Args:
        conversation_id: one id, several, or None for every conversation in the database.
        db: a SQLite file's path or a SQLAlchemy URL (default: storage/chatbot.db).
        all_branches: every branch, not only the active path.
    Raises:
        ConversationNotFoundError: an unknown id (before any model loads).
        CheckpointError: a stored model cannot be found or loaded.
        StorageError: the database cannot be opened.
    """
    from chatbot.evaluation.replay import ModelCache, regenerate
    from chatbot.storage import open_store

    log = log or (lambda line: None)
    store = open_store(database_url(db), create=False)
    try:
        if store.upgrade_note:
            log(store.upgrade_note)
        ids = None if conversation_id is None else [conversation_id] if isinstance(conversation_id, int) else list(conversation_id)
        conversations = store.conversations(ids)  # unknown ids fail here, before any model loads
        models = ModelCache(log)
        return ReplayReport(conversations, {c.id: regenerate(store, c.id, models, all_branches=all_branches) for c in conversations})
    finally:
        store.close()


__all__ = [
    "Bot",
    "Conversation",
    "Decoding",
    "Reply",
    "Report",
    "ReplayReport",
    "evaluate",
    "find_model",
    "load",
    "replay",
    "train",
]
