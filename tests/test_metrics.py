"""Reply metrics on hand-made lists; expected values worked out by hand in the comments."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from chatbot.evaluation.metrics import (
    bleu,
    distinct_n,
    generic_reply_rate,
    mean_length,
    reply_metrics,
    unigram_distribution,
    word_entropy,
    words,
)


def test_words_lowercases_and_splits_punctuation():
    # 13a: punctuation becomes its own token, the apostrophe inside "don't" stays
    assert words("Hello, World! I don't know.") == ["hello", ",", "world", "!", "i", "don't", "know", "."]
    assert words("") == []
    assert words("  ") == []


def test_distinct_n():
    replies = [["a", "b"], ["a", "c"]]
    # unigrams a b a c: 3 distinct of 4
    assert distinct_n(replies, 1) == pytest.approx(3 / 4)
    # bigrams (a,b) (a,c): 2 distinct of 2; no bigram (b,a) across the reply boundary
    assert distinct_n(replies, 2) == pytest.approx(1.0)
    # [x y x y]: bigrams (x,y) (y,x) (x,y) -> 2 distinct of 3
    assert distinct_n([["x", "y", "x", "y"]], 2) == pytest.approx(2 / 3)
    # trigrams: none in two-word replies
    assert distinct_n(replies, 3) == 0.0


def test_distinct_n_edge_cases():
    assert distinct_n([], 1) == 0.0
    assert distinct_n([[], []], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n([["a"]], 0)


def test_unigram_distribution():
    assert unigram_distribution([["a", "b"], ["a"], []]) == Counter({"a": 2, "b": 1})
    assert unigram_distribution([]) == Counter()


def test_word_entropy_exact():
    counts = Counter({"a": 3, "b": 1})
    # N = 4, V = 2, denominator N + V + 1 = 7
    # p(a) = 4/7, p(b) = 2/7, p(z, unseen) = 1/7
    # -mean(log2 4/7, log2 2/7, log2 1/7) = (3 log2 7 - 2 - 1 - 0) / 3 = log2 7 - 1
    assert word_entropy([["a", "b"], ["z"]], counts) == pytest.approx(math.log2(7) - 1)
    # only "a": -log2(4/7) = log2 7 - 2
    assert word_entropy([["a", "a"]], counts) == pytest.approx(math.log2(7) - 2)
    # rarer words score higher than frequent ones
    assert word_entropy([["z"]], counts) > word_entropy([["a"]], counts)


def test_word_entropy_edge_cases():
    assert word_entropy([], Counter({"a": 1})) == 0.0
    assert word_entropy([[]], Counter({"a": 1})) == 0.0
    # empty training counts: every word has p = 1/1, entropy 0
    assert word_entropy([["a"]], Counter()) == 0.0


def test_mean_length():
    # (2 + 0 + 4) / 3 = 2
    assert mean_length([["a", "b"], [], ["a", "b", "c", "d"]]) == pytest.approx(2.0)
    assert mean_length([]) == 0.0


def test_generic_reply_rate():
    replies = ["I don't know", "i don't  know ", "hello there", " I DON'T KNOW", "good morning"]
    # after normalization "i don't know" occurs 3 times of 5; the others once (not generic)
    rate, most_frequent = generic_reply_rate(replies)
    assert rate == pytest.approx(3 / 5)
    assert most_frequent == [("i don't know", 3)]


def test_generic_reply_rate_ties_and_top():
    replies = ["b", "a", "b", "a", "c", "c", "c", "d"]
    # c: 3, then a: 2 and b: 2 tied -> alphabetical; d once is not generic
    rate, most_frequent = generic_reply_rate(replies)
    assert most_frequent == [("c", 3), ("a", 2), ("b", 2)]
    assert rate == pytest.approx(7 / 8)
    # top=2 keeps c and a: (3 + 2) / 8
    rate, most_frequent = generic_reply_rate(replies, top=2)
    assert most_frequent == [("c", 3), ("a", 2)]
    assert rate == pytest.approx(5 / 8)


def test_generic_reply_rate_edge_cases():
    assert generic_reply_rate([]) == (0.0, [])
    assert generic_reply_rate(["a", "b", "c"]) == (0.0, [])
    with pytest.raises(ValueError):
        generic_reply_rate(["a"], top=0)


def test_bleu():
    references = ["the cat sat on the mat", "how are you doing today"]
    assert bleu(references, references) == pytest.approx(100.0)
    # lowercase=True: case differences do not matter
    assert bleu([r.upper() for r in references], references) == pytest.approx(100.0)
    partial = bleu(["the cat sat on a mat", "how are you doing today"], references)
    assert 0.0 < partial < 100.0
    assert bleu(["completely unrelated words here", "nothing in common at all"], references) < partial
    assert bleu([], []) == 0.0
    with pytest.raises(ValueError):
        bleu(["a"], ["a", "b"])


def test_reply_metrics():
    generated = ["I don't know.", "I don't know.", "The cat sat on the mat"]
    references = ["I really don't know.", "Maybe.", "the cat sat on the mat"]
    train = unigram_distribution(words(t) for t in ["i know", "the cat"])
    result = reply_metrics(generated, references, train)
    assert set(result) == {
        "distinct_1",
        "distinct_2",
        "mean_length_words",
        "word_entropy_bits",
        "generic_reply_rate",
        "most_frequent_replies",
        "bleu",
    }
    # words: [i don't know .] x2 + [the cat sat on the mat] -> 14 words
    # distinct unigrams: i don't know . the cat sat on mat = 9 -> 9/14
    assert result["distinct_1"] == round(9 / 14, 4)
    # bigrams: 3 + 3 + 5 = 11; distinct: 3 + 5 ("the cat", "cat sat", "sat on", "on the", "the mat") = 8
    assert result["distinct_2"] == round(8 / 11, 4)
    assert result["mean_length_words"] == round(14 / 3, 4)
    # train: i 1, know 1, the 1, cat 1 -> N = 4, V = 4, denominator 9
    # seen words (i, know x2 each; the x2, cat): 7 words at p = 2/9; 7 unseen at p = 1/9
    # -mean = (7 * log2(9/2) + 7 * log2 9) / 14 = (log2(9/2) + log2 9) / 2
    assert result["word_entropy_bits"] == round((math.log2(9 / 2) + math.log2(9)) / 2, 4)
    assert result["generic_reply_rate"] == round(2 / 3, 4)
    assert result["most_frequent_replies"] == [["i don't know.", 2]]
    assert 0.0 < result["bleu"] < 100.0
    with pytest.raises(ValueError):
        reply_metrics(generated, references[:2], train)
