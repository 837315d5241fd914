"""Metrics of generated replies, used by `chatbot eval`.

Pure Python (no TensorFlow). Every metric works on words as produced by
:func:`words`: lowercased text split the way sacrebleu's "13a" tokenizer does,
so BLEU and the word-level metrics agree on what a word is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

_TOKENIZER_13A = Tokenizer13a()


def words(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and punctuation.

    Uses sacrebleu's "13a" tokenizer (the WMT ``mteval-v13a`` rules: punctuation
    and symbols become separate tokens, apostrophes inside words are kept),
    then splits on whitespace. Units: tokens. Raises nothing for any ``str``.
    """
    return _TOKENIZER_13A(text.lower()).split()


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(replies: Sequence[Sequence[str]], n: int) -> float:
    """Corpus-level distinct-n (Li et al. 2016, "A Diversity-Promoting Objective
    Function for Neural Conversation Models").

    Number of distinct n-grams across all replies divided by the total number of
    n-grams across all replies; n-grams never cross reply boundaries. A ratio in
    [0, 1]; 0.0 when there are no n-grams. Raises ValueError if ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [gram for reply in replies for gram in _ngrams(reply, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_distribution(texts_as_word_lists: Iterable[Sequence[str]]) -> Counter[str]:
    """Word counts over the given word lists (e.g. the training turns passed through
    :func:`words`), the reference distribution of :func:`word_entropy`. Raises nothing."""
    counts: Counter[str] = Counter()
    for text in texts_as_word_lists:
        counts.update(text)
    return counts


def word_entropy(replies: Sequence[Sequence[str]], reference_counts: Counter[str]) -> float:
    """Mean per-word entropy of the generated words under the training unigram
    distribution, in bits per word (Serban et al. 2017, "A Hierarchical Latent
    Variable Encoder-Decoder Model for Generating Dialogues" (VHRED), "word entropy").

    ``-mean(log2 p(w))`` over every generated word ``w``, with add-one smoothing
    over the training vocabulary plus one unknown slot:
    ``p(w) = (count(w) + 1) / (N + V + 1)``, N = total training words, V = distinct
    training words. Higher means rarer, less generic words. 0.0 when there are no
    generated words. Raises nothing.
    """
    total = sum(reference_counts.values())
    denominator = total + len(reference_counts) + 1
    generated = [word for reply in replies for word in reply]
    if not generated:
        return 0.0
    return -sum(math.log2((reference_counts[w] + 1) / denominator) for w in generated) / len(generated)


def mean_length(replies: Sequence[Sequence[str]]) -> float:
    """Mean number of tokens per reply (units: tokens); 0.0 for no replies. Raises nothing."""
    return sum(len(reply) for reply in replies) / len(replies) if replies else 0.0


def _normalize(reply: str) -> str:
    return " ".join(reply.lower().split())


def generic_reply_rate(replies: Sequence[str], top: int = 10) -> tuple[float, list[tuple[str, int]]]:
    """Share of replies that are one of the ``top`` most frequent replies of the same list.

    Replies are compared as normalized strings (stripped, lowercased, whitespace
    collapsed). Only replies that occur at least twice count as generic. A measure
    of the "I don't know" problem described by Li et al. 2016 ("A Diversity-Promoting
    Objective Function for Neural Conversation Models").

    Returns ``(share, most_frequent)``: share is a ratio in [0, 1] (0.0 for no
    replies); most_frequent lists ``(reply, count)`` by count descending, then text.
    Raises ValueError if ``top < 1``.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if not replies:
        return 0.0, []
    counts = Counter(_normalize(reply) for reply in replies)
    repeated = sorted(((text, c) for text, c in counts.items() if c >= 2), key=lambda item: (-item[1], item[0]))
    most_frequent = repeated[:top]
    return sum(c for _, c in most_frequent) / len(replies), most_frequent


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (Papineni et al. 2002, "BLEU: a Method for Automatic Evaluation of
    Machine Translation") as computed by sacrebleu's ``corpus_bleu`` (Post 2018):
    one reference per hypothesis, default "13a" tokenization, ``lowercase=True``,
    default exponential smoothing.

    Units: 0-100. 0.0 for empty lists. Note that a corpus with no 4-gram at all
    scores 0.0 (sacrebleu's default). Raises ValueError if the lists differ in length.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], lowercase=True).score)


def reply_metrics(generated: Sequence[str], references: Sequence[str], train_counts: Counter[str]) -> dict:
    """All metrics of generated replies against reference replies, for a JSON report.

    ``train_counts`` is :func:`unigram_distribution` of the training turns' :func:`words`.
    Returns ``{"distinct_1", "distinct_2", "mean_length_words", "word_entropy_bits",
    "generic_reply_rate", "most_frequent_replies", "bleu"}``; floats are rounded to
    4 decimals and ``most_frequent_replies`` is a list of ``[text, count]``.
    Raises ValueError if ``generated`` and ``references`` differ in length.
    """
    tokenized = [words(reply) for reply in generated]
    rate, most_frequent = generic_reply_rate(generated)
    return {
        "distinct_1": round(distinct_n(tokenized, 1), 4),
        "distinct_2": round(distinct_n(tokenized, 2), 4),
        "mean_length_words": round(mean_length(tokenized), 4),
        "word_entropy_bits": round(word_entropy(tokenized, train_counts), 4),
        "generic_reply_rate": round(rate, 4),
        "most_frequent_replies": [[text, count] for text, count in most_frequent],
        "bleu": round(bleu(generated, references), 4),
    }
