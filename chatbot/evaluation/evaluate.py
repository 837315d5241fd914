"""`chatbot eval`: perplexity on a split and metrics of generated replies.

Perplexity is per target token (SentencePiece pieces plus the end marker),
over every turn after the first of each dialogue in the split, exactly the
targets of training. For VHRED it is the ELBO bound exp((reconstruction + KL)
/ tokens), an upper bound on the true perplexity (Serban et al. 2017, sec. 4).

Replies are generated for up to `num_contexts` (dialogue, turn) pairs drawn
with the seed; the i-th reply uses seed + i, so a rerun gives identical numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections import Counter
from pathlib import Path

from chatbot.corpus import Dialogue, Problems, ReadOptions, resolve
from chatbot.errors import ConfigError, CorpusError
from chatbot.evaluation.metrics import reply_metrics, unigram_distribution, words
from chatbot.inference.checkpoint import METRICS_FILENAME, Checkpoint, load_checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

NUM_SAMPLES = 3  # contexts whose replies are kept verbatim in the report


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    corpus: str
    split: str = "test"
    corpus_format: str | None = None
    encoding: str | None = None  # see TrainConfig
    convokit_paths: str = "longest"
    skip_malformed: bool = False
    num_contexts: int = 200  # contexts replies are generated for
    max_dialogues: int | None = None  # read only the first N dialogues of the train and the evaluated split (quick runs)
    context_turns: int | None = None  # turns of history per context (default: the model's max_turns - 1)
    batch_size: int = 64  # windows per perplexity batch
    seed: int = 1234


@dataclasses.dataclass
class EvalData:
    """The corpus read once for every model of a comparison."""

    train: list[Dialogue]
    split: list[Dialogue]  # the evaluated split
    train_word_counts: Counter  # words of the training replies, for word entropy

    @classmethod
    def load(cls, config: EvalConfig) -> EvalData:
        """Raises CorpusError when the corpus cannot be read or a needed split is empty."""
        options = ReadOptions(config.encoding, config.convokit_paths)
        splits: dict[str, list[Dialogue]] = {"train": [], config.split: []}
        cap = config.max_dialogues
        for dialogue in resolve(config.corpus, config.corpus_format, options).dialogues(Problems(strict=not config.skip_malformed)):
            kept = splits.get(dialogue.split)
            if kept is not None and (cap is None or len(kept) < cap):
                kept.append(dialogue)
                if cap is not None and all(len(found) == cap for found in splits.values()):
                    break  # the first `cap` of each split: the rest of the corpus is not read
        for name, dialogues in splits.items():
            if not dialogues:
                raise CorpusError(f"{config.corpus}: the {name} split is empty")
        counts = unigram_distribution(words(u.text) for d in splits["train"] for u in d.turns[1:])
        return cls(splits["train"], splits[config.split], counts)


def perplexity(checkpoint: Checkpoint, dialogues: list[Dialogue], batch_size: int, seed: int, context_mode: str = "true") -> dict:
    """Per-token perplexity (or its ELBO bound) of a model on the targets of `dialogues`.

    Args:
        context_mode: "true" (the real history), "shuffled" (each reply scored after
            another dialogue's history) or "none" (after an empty history); see
            `chatbot.models.base.probe_context`.
    Returns:
        {"value", "kind", "nats_per_token", "target_tokens"} (+ reconstruction and KL for VHRED).
    """
    import keras
    import numpy as np

    from chatbot.training.data import WindowBatches, dialogue_windows

    model, config = checkpoint.model, checkpoint.model_config
    windows = dialogue_windows(dialogues, checkpoint.tokenizer, config.max_turns, config.max_utterance_length)
    if getattr(model, "seed_generator", None) is not None:  # VHRED's posterior noise: same draws every run
        state = model.seed_generator.state
        state.assign(np.array([seed, 0]).astype(state.dtype))
    batches = WindowBatches(windows, batch_size, shuffle=False)
    terms_of = lambda tokens: model.loss_terms(tokens, training=False, context_mode=context_mode)  # noqa: E731
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One trace for every batch shape (the dataset's own spec: batch, turns and utterance length unknown),
        # not one per shape; autograph=False: loss_terms is TensorFlow ops already (training calls it unconverted).
        feed = batches.dataset()
        terms_of = tf.function(terms_of, input_signature=[feed.element_spec], autograph=False)
    else:  # JAX (`chatbot pack` after a JAX-only training): eager steps over NumPy batches
        feed = batches.batches(0)  # (unshuffled: every epoch is the same)
    totals: dict[str, float] = {}
    for batch in feed:
        for name, value in terms_of(batch).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    tokens = totals["tokens"]
    bound = float(model.bound_nll(totals))
    result = {
        "value": round(math.exp(bound / tokens), 3),
        "kind": "upper bound (ELBO: reconstruction + KL)" if "kl" in totals else "exact",
        "nats_per_token": round(bound / tokens, 5),
        "target_tokens": int(tokens),
    }
    if "kl" in totals:
        result["reconstruction_perplexity"] = round(math.exp(totals["nll"] / tokens), 3)
        result["kl_nats_per_reply"] = round(totals["kl"] / totals["replies"], 4)
    return result


def context_probe(checkpoint: Checkpoint, dialogues: list[Dialogue], batch_size: int, seed: int, true: dict | None = None) -> dict:
    """How much the model uses the dialogue: perplexity with the true, shuffled and no context.

    Shuffled: every reply is scored after the history of another dialogue (half a
    batch away); none: with the conditioning zeroed, i.e. no information about the
    dialogue (the average context for centred models; see `probe_context`). A model that reads its context has
    a higher perplexity with shuffled contexts; one that ignores it (the `lm`
    baseline, or a collapsed context RNN) has the same. The gains are in nats per
    target token (for VHRED, of the ELBO bound).

    Args:
        true: the true-context result of `perplexity`, when already computed.
    Returns:
        {"true", "shuffled", "none": perplexities; "gain_over_shuffled_nats",
         "gain_over_none_nats": nats per token; "shuffled_increase": relative (0.1 = 10% higher)}.
    """
    true = true or perplexity(checkpoint, dialogues, batch_size, seed)
    shuffled = perplexity(checkpoint, dialogues, batch_size, seed, context_mode="shuffled")
    empty = perplexity(checkpoint, dialogues, batch_size, seed, context_mode="none")
    return {
        "true": true["value"],
        "shuffled": shuffled["value"],
        "none": empty["value"],
        "gain_over_shuffled_nats": round(shuffled["nats_per_token"] - true["nats_per_token"], 5),
        "gain_over_none_nats": round(empty["nats_per_token"] - true["nats_per_token"], 5),
        "shuffled_increase": round(shuffled["value"] / true["value"] - 1.0, 5),
    }


def sample_contexts(dialogues: list[Dialogue], count: int, context_turns: int, seed: int) -> list[tuple[list[str], str]]:
    """Up to `count` (context texts, reference reply) pairs, chosen by `seed` among every turn after a dialogue's first."""
    pairs = [(d, t) for d in dialogues for t in range(1, len(d.turns))]
    random.Random(seed).shuffle(pairs)
    return [([u.text for u in d.turns[max(0, t - context_turns) : t]], d.turns[t].text) for d, t in pairs[:count]]


def generated_replies(
    checkpoint: Checkpoint, contexts, decoding: DecodingConfig, seed: int, context_turns: int
) -> tuple[list[str], list[int]]:
    """The reply text (the best candidate, as a chat would show it) and its length in tokens for each
    context; context i uses seed + i. Made by the `Responder` every front end replies through."""
    from chatbot.inference.responder import Responder

    responder = Responder(checkpoint, context_turns)
    texts, lengths = [], []
    for index, (history, _) in enumerate(contexts):
        found = responder.candidates(history, decoding, seed + index)
        texts.append(found.texts[0])
        lengths.append(len(found.found[0].token_ids))
    return texts, lengths


def training_summary(model_dir: Path) -> dict:
    """Epochs, wall time (seconds), target tokens and throughput (tokens/second) from metrics.json."""
    path = Path(model_dir) / METRICS_FILENAME
    if not path.exists():
        return {}
    epochs = json.loads(path.read_text()).get("epochs", [])
    seconds = sum(e.get("seconds", 0.0) for e in epochs)
    tokens = sum(e.get("tokens", 0.0) for e in epochs)
    return {
        "epochs": len(epochs),
        "seconds": round(seconds, 1),
        "target_tokens": int(tokens),
        "target_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }


def evaluate_model(
    model_dir: Path | str,
    config: EvalConfig,
    decoding: DecodingConfig,
    data: EvalData,
    log=lambda line: None,
    checkpoint: Checkpoint | None = None,
) -> dict:
    """One row of the results table for a model directory (`checkpoint`: the directory already loaded).

    Raises:
        CheckpointError: the model cannot be loaded. CorpusError: the corpus or split cannot be read.
    """
    checkpoint = checkpoint or load_checkpoint(model_dir)
    model_config = checkpoint.model_config
    context_turns = config.context_turns or model_config.max_turns - 1
    if context_turns < 1:
        raise ConfigError(f"--context-turns must be at least 1, got {context_turns}")
    dialogues = data.split
    started = time.monotonic()
    log(f"{model_dir}: perplexity on {len(dialogues)} {config.split} dialogues")
    ppl = perplexity(checkpoint, dialogues, config.batch_size, config.seed)
    log(f"{model_dir}: perplexity with shuffled and with no context (the context probe)")
    probe = context_probe(checkpoint, dialogues, config.batch_size, config.seed, true=ppl)
    contexts = sample_contexts(dialogues, config.num_contexts, context_turns, config.seed)
    log(f"{model_dir}: generating {len(contexts)} replies")
    texts, lengths = generated_replies(checkpoint, contexts, decoding, config.seed, context_turns)
    generation = reply_metrics(texts, [reference for _, reference in contexts], data.train_word_counts)
    generation["mean_length_tokens"] = round(sum(lengths) / max(len(lengths), 1), 3)
    generation["contexts"] = len(contexts)
    return {
        "model": str(model_dir),
        "label": Path(model_dir).name,  # made unique across a report's rows by `labelled`
        "model_id": checkpoint.model_id,
        "architecture": model_config.architecture,
        "corpus": config.corpus,
        "split": config.split,
        "max_dialogues": config.max_dialogues,
        "perplexity": ppl,
        "context": probe,
        "generation": generation,
        "decoding": decoding.to_dict(),
        "seed": config.seed,
        "context_turns": context_turns,
        "training": training_summary(Path(model_dir)),
        "samples": [
            {"context": history, "reference": reference, "reply": reply}
            for (history, reference), reply in list(zip(contexts, texts, strict=True))[:NUM_SAMPLES]
        ],
        "eval_seconds": round(time.monotonic() - started, 1),
    }


def reply_targets(dialogues: list[Dialogue], tokenizer, model_config) -> tuple[list[list[int]], list[bool]]:
    """Pieces of every target reply as the neural models predict them (framed for training, cut to
    max_utterance_length), without BOS/EOS, and whether each ends with EOS (False: cut)."""
    from chatbot.training.data import dialogue_windows

    windows = dialogue_windows(dialogues, tokenizer, model_config.max_turns, model_config.max_utterance_length)
    framed = [u for w in windows for u in w[1:]]
    return [[t for t in u if t not in (BOS_ID, EOS_ID, PAD_ID)] for u in framed], [u[-1] == EOS_ID for u in framed]


def count_baseline_perplexity(tokenizer, model_config, train: list[Dialogue], split: list[Dialogue], order: int = 3) -> dict:
    """Perplexity of a count model of the replies over a model's SentencePiece tokens, on the same
    targets the neural models predict: interpolated Kneser-Ney for `order` >= 2, add-one unigram for 1.

    Returns:
        {"value", "kind", "nats_per_token", "target_tokens"}, as `perplexity`.
    """
    from chatbot.evaluation.ngram import AddOneUnigram, KneserNeyBaseline

    model: AddOneUnigram | KneserNeyBaseline
    if order == 1:
        model = AddOneUnigram(tokenizer.vocabulary_size)
    else:
        model = KneserNeyBaseline(order=order, vocabulary_size=tokenizer.vocabulary_size)
    model.fit(*reply_targets(train, tokenizer, model_config))
    nll, tokens = model.nll(*reply_targets(split, tokenizer, model_config))
    return {"value": round(math.exp(nll / tokens), 3), "kind": "exact", "nats_per_token": round(nll / tokens, 5), "target_tokens": tokens}


def ngram_row(checkpoint: Checkpoint, config: EvalConfig, data: EvalData, order: int = 3, log=lambda line: None) -> dict:
    """A baseline row over the model's SentencePiece tokens: the interpolated Kneser-Ney n-gram
    (`order` >= 2; the HRED paper's baseline) or the add-one unigram (`order` 1)."""
    started = time.monotonic()
    name = "add-one unigram" if order == 1 else f"Kneser-Ney {order}-gram"
    log(f"fitting the {name} baseline on the train split")
    architecture = "unigram" if order == 1 else f"kn-{order}gram"
    return {
        "model": "add-one unigram" if order == 1 else f"kneser-ney {order}-gram",
        "label": architecture,
        "model_id": None,
        "architecture": architecture,
        "corpus": config.corpus,
        "split": config.split,
        "max_dialogues": config.max_dialogues,
        "perplexity": count_baseline_perplexity(checkpoint.tokenizer, checkpoint.model_config, data.train, data.split, order),
        "generation": None,
        "tokenizer_of": str(checkpoint.path),
        "eval_seconds": round(time.monotonic() - started, 1),
    }


def labelled(rows: list[dict]) -> list[dict]:
    """`rows` (of one report) with a unique "label" each: the name the table, the plot and
    `Report.perplexity` show. A model's label is its directory's name; where two directories share
    it, as much of their paths as tells them apart (`runs/a/hred`, `runs/b/hred` → `a/hred`, `b/hred`);
    the same directory twice is numbered (`hred`, `hred #2`). A baseline's label is its architecture.
    Rows without a label (reports written before labels) get one."""
    names = [row.get("label") or (Path(row["model"]).name if row.get("model_id") else row["architecture"]) for row in rows]
    for name in set(names):
        group = [i for i, other in enumerate(names) if other == name and rows[i].get("model_id")]
        paths = {Path(rows[i]["model"]).parts for i in group}
        if len(paths) < 2:
            continue
        depth = 2
        while depth < max(map(len, paths)) and len({parts[-depth:] for parts in paths}) < len(paths):
            depth += 1
        for i in group:
            names[i] = str(Path(*Path(rows[i]["model"]).parts[-depth:]))
    shared, seen = Counter(names), Counter[str]()
    labels = []
    for name in names:
        seen[name] += 1
        labels.append(f"{name} #{seen[name]}" if shared[name] > 1 and seen[name] > 1 else name)
    return [{**row, "label": label} for row, label in zip(rows, labels, strict=True)]


def row_title(row: dict) -> str:
    """A row's label with its architecture, as the eval table names it: `hred-chitchat (hred)`; a
    baseline, or a directory named after its architecture, is its label alone (`kn-3gram`)."""
    label = row.get("label") or row["architecture"]
    return label if label == row["architecture"] else f"{label} ({row['architecture']})"
