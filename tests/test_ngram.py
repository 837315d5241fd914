"""Kneser-Ney baseline: a proper distribution, nltk's own numbers, the token-counting convention."""

import itertools
import math

import pytest
from nltk.lm import KneserNeyInterpolated

from chatbot.evaluation.ngram import KneserNeyBaseline, _InterpolatedKneserNey, _TabledKneserNey
from chatbot.text.tokenizer import BOS_ID, EOS_ID

V = 12  # ids 0..11; 4..9 appear in training, 10 and 11 never do
REPLIES = [[4, 5, 6], [4, 5, 7], [5, 6, 4, 5], [8], [9, 4, 5, 6, 6], [6, 4], [7, 7, 8, 5]]
B, E = str(BOS_ID), str(EOS_ID)


def contexts(words: list[str]) -> list[tuple[str, str]]:
    """Every pair of `words`: seen, partly seen and unseen trigram contexts."""
    return list(itertools.product(words, repeat=2))


@pytest.mark.parametrize("vocabulary_size", [V, None])
def test_distribution_sums_to_one_over_the_vocabulary(vocabulary_size):
    lm = KneserNeyBaseline(3, 0.75, vocabulary_size=vocabulary_size).fit(REPLIES)
    model = lm._model
    words = [str(i) for i in range(V)] if vocabulary_size else list(model.vocab)
    assert len(words) == (V if vocabulary_size else 8 + 1)  # 4..9, BOS, EOS, <UNK>
    for context in contexts([B, "4", "5", "6", "8", "11" if vocabulary_size else "<UNK>"]):
        probabilities = [model.unmasked_score(w, context) for w in words]
        assert min(probabilities) > 0
        assert math.fsum(probabilities) == pytest.approx(1.0, abs=1e-12)


def test_tabled_scores_equal_nltk_kneser_ney():
    lm = KneserNeyBaseline(3, 0.75, vocabulary_size=V).fit(REPLIES)
    counts, vocab = lm._model.counts, lm._model.vocab
    fast = _InterpolatedKneserNey(_TabledKneserNey, 3, 0.75, vocab, counts)
    fast.estimator.build_tables()
    stock = KneserNeyInterpolated(3, discount=0.75, vocabulary=vocab, counter=counts)
    words = [str(i) for i in range(V)]
    for context in contexts(words):
        for word in words:
            assert fast.score(word, context) == pytest.approx(stock.score(word, context), abs=1e-9)
    # The uniform floor is the only change nltk's unigram level gets: 0 there, > 0 here.
    assert stock.score("11") == 0 and lm._model.score("11") > 0


def test_training_replies_are_likelier_than_unrelated_ones():
    lm = KneserNeyBaseline(vocabulary_size=V).fit(REPLIES)
    assert lm.perplexity(REPLIES) < lm.perplexity([[9, 8, 7, 6], [11, 10, 9], [7, 6, 5, 4]])


def test_each_reply_predicts_its_pieces_and_eos():
    lm = KneserNeyBaseline(vocabulary_size=V).fit(REPLIES)
    total, tokens = lm.nll([[4, 5, 6], [8]])
    assert tokens == 6
    assert lm.perplexity([[4, 5, 6], [8]]) == pytest.approx(math.exp(total / 6))
    by_hand = -sum(
        math.log(lm._model.score(w, c))
        for w, c in [("4", (B, B)), ("5", (B, "4")), ("6", ("4", "5")), (E, ("5", "6")), ("8", (B, B)), (E, (B, "8"))]
    )
    assert total == pytest.approx(by_hand)


@pytest.mark.parametrize("vocabulary_size", [V, None])
def test_unseen_ids_get_finite_nll(vocabulary_size):
    lm = KneserNeyBaseline(vocabulary_size=vocabulary_size).fit(REPLIES)
    total, tokens = lm.nll([[11], [10, 11, 4]])
    assert tokens == 6 and 0 < total < math.inf


def test_rejects_ids_outside_a_closed_vocabulary_and_bad_settings():
    lm = KneserNeyBaseline(vocabulary_size=V).fit(REPLIES)
    with pytest.raises(ValueError):
        lm.nll([[V]])
    with pytest.raises(ValueError):
        KneserNeyBaseline(discount=0)
    with pytest.raises(ValueError):
        KneserNeyBaseline(order=1)
    with pytest.raises(RuntimeError):
        KneserNeyBaseline().nll(REPLIES)


def test_add_one_unigram_is_a_distribution_with_laplace_counts():
    from chatbot.evaluation.ngram import AddOneUnigram

    unigram = AddOneUnigram(vocabulary_size=10).fit([[4, 4, 5], [6]])  # targets: 4 4 5 EOS 6 EOS
    total, tokens = unigram.nll([[4]])  # predicts 4, then EOS
    assert tokens == 2
    assert total == pytest.approx(-math.log(3 / 16) - math.log(3 / 16))  # (2 + 1) / (6 + 10) each
    mass = sum(math.exp(-unigram.nll([[w]], ended=[False])[0]) for w in range(10))
    assert mass == pytest.approx(1.0)
