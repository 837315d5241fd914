"""The models learn, and use what they are given (issue 13's probes, kept as tests).

A synthetic corpus in which each reply is a fixed function of the previous turn
(it echoes the turn's first word) can only be learned through the context path:
a tiny HRED must reach near-zero loss on it, the same HRED with its context
removed must not, and shuffling contexts must hurt the trained model. On a real
corpus a tiny model must leave the unigram plateau within its step budget.
"""

import math
from collections import Counter

import keras
import numpy as np
import pytest

from chatbot.config import model_config
from chatbot.corpus import load_corpus
from chatbot.models import HRED, build_model
from chatbot.text.tokenizer import BOS_ID, EOS_ID, Tokenizer
from chatbot.training.data import WindowBatches, dialogue_windows

pytestmark = pytest.mark.slow  # trains models until they learn

WORDS = 40
VOCABULARY_SIZE = 4 + WORDS  # the reserved ids, then the words
CHANCE = math.log(WORDS) / 2  # nats per target token without the context: the echoed word is a guess, EOS is certain
STEPS = 256  # 4 epochs of 64 batches (measured: the fixed HRED reaches 0.05 of CHANCE, the old one stays at 1.0)


def echo_windows(count: int, seed: int) -> list:
    """Two-turn dialogues: a random utterance of 3-6 words, then a reply that is its first word."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(count):
        words = [int(w) for w in rng.integers(4, VOCABULARY_SIZE, size=rng.integers(3, 7))]
        windows.append([[BOS_ID, *words, EOS_ID], [BOS_ID, words[0], EOS_ID]])
    return windows


class ContextFreeHRED(HRED):
    """HRED whose decoder always gets the empty-history context: the context path removed."""

    def loss_terms(self, tokens, training=False, context_mode="true"):
        return super().loss_terms(tokens, training, context_mode="none")


def mean_loss(model, batches, context_mode="true") -> float:
    """Nats per target token over the batches (VHRED: of its bound, reconstruction + KL)."""
    nll = tokens = 0.0
    for batch in batches.dataset():
        terms = model.loss_terms(batch, training=False, context_mode=context_mode)
        nll, tokens = nll + float(model.bound_nll(terms)), tokens + float(terms["tokens"])
    return nll / tokens


def train_on_echo(model) -> None:
    model.compile(optimizer=keras.optimizers.Adam(3e-3, global_clipnorm=1.0))
    model.fit(WindowBatches(echo_windows(2048, seed=0), 32, seed=0).dataset().repeat(), steps_per_epoch=STEPS, epochs=1, verbose=0)


@pytest.fixture(scope="module")
def echo_valid():
    return WindowBatches(echo_windows(256, seed=1), 64, shuffle=False)


@pytest.fixture(scope="module")
def echo_hred():
    keras.utils.set_random_seed(0)
    model = build_model(model_config("tiny", vocabulary_size=VOCABULARY_SIZE))
    train_on_echo(model)
    return model


def test_the_context_path_learns_a_rule_of_the_previous_turn(echo_hred, echo_valid):
    assert mean_loss(echo_hred, echo_valid) < 0.15 * CHANCE


def test_without_the_context_the_same_model_cannot(echo_valid):
    keras.utils.set_random_seed(0)
    config = model_config("tiny", vocabulary_size=VOCABULARY_SIZE)
    model = ContextFreeHRED(
        vocabulary_size=VOCABULARY_SIZE,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        context_dim=config.context_dim,
        decoder_dim=config.decoder_dim,
        tie_embeddings=True,
        scale_embeddings=True,
        center_context=True,
    )
    model.build()
    train_on_echo(model)
    assert mean_loss(model, echo_valid) > 0.9 * CHANCE


def test_shuffled_contexts_raise_the_trained_models_perplexity(echo_hred, echo_valid):
    true = mean_loss(echo_hred, echo_valid)
    assert mean_loss(echo_hred, echo_valid, "shuffled") > true + 1.0  # nats per token: a guess is worse than chance
    assert mean_loss(echo_hred, echo_valid, "none") > true + 0.5


def test_the_models_before_the_fix_stay_at_chance(echo_valid):
    """Regression guard: Keras's uniform ±0.05 embeddings, untied, uncentred context (issue 13)."""
    keras.utils.set_random_seed(0)
    model = build_model(
        model_config("tiny", vocabulary_size=VOCABULARY_SIZE, tie_embeddings=False, scale_embeddings=False, center_context=False)
    )
    train_on_echo(model)
    assert mean_loss(model, echo_valid) > 0.9 * CHANCE


@pytest.mark.parametrize("architecture", ["lm", "hred"])
def test_a_tiny_model_leaves_the_unigram_plateau(architecture):
    """On a real corpus the training loss falls below the entropy of the training tokens' unigram
    distribution: the model uses the previous tokens, not only their frequencies. (VHRED shares
    HRED's embeddings, context path and decoder; it is left out to keep the suite short, and its
    full-corpus run is in docs/training.md, Results.)"""
    corpus = load_corpus("chatterbot:english")
    train = corpus.split("train")
    tokenizer = Tokenizer.train([t.text for d in train for t in d.turns], 400)
    config = model_config("tiny", model=architecture, vocabulary_size=tokenizer.vocabulary_size)
    windows = dialogue_windows(train, tokenizer, config.max_turns, config.max_utterance_length)
    counts = Counter(t for w in windows for u in w[1:] for t in u[1:])
    total = sum(counts.values())
    unigram_entropy = -sum(c / total * math.log(c / total) for c in counts.values())  # nats per target token
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3, global_clipnorm=1.0))
    batches = WindowBatches(windows, 32, seed=0)
    model.fit(batches.dataset().repeat(), steps_per_epoch=100, epochs=1, verbose=0)  # measured: hred 0.57, lm 0.65 of it
    loss = mean_loss(model, WindowBatches(windows, 64, shuffle=False))
    assert loss < 0.8 * unigram_entropy, (loss, unigram_entropy)
