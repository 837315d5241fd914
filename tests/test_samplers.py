"""Samplers against fake step functions whose preferred sequences are known (as keras-hub tests its samplers),
then the generator on a real tiny model (its compiled path against the eager one: tests/test_seed_paths.py)."""

from itertools import pairwise

import numpy as np
import pytest
import tensorflow as tf

from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.samplers import Knobs, make_sampler, ngram_bans, sequences
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

VOCAB = 12
SPECIALS = (PAD_ID, UNK_ID, BOS_ID)


def fake_step(table):
    """A step function reading logits from `table[step, previous_token]` `(T, V, V)`; the state is the step."""
    table = tf.constant(table, tf.float32)

    def step_fn(token_ids, state):
        (step,) = state
        logits = tf.gather_nd(table, tf.stack([tf.minimum(step, table.shape[0] - 1), token_ids], -1))
        return logits, (step + 1,)

    return step_fn


def run(table, seed=0, context=None, **settings):
    """Decode with a fake step; returns [(ids, log_prob, score, ended)] in batch order."""
    config = DecodingConfig(**{"max_reply_tokens": 6, "no_repeat_ngram": 0, **settings})
    sampler = make_sampler(config, VOCAB)
    batch = config.num_beams if config.sampler == "beam" else config.num_return_sequences
    context = np.zeros((batch, 4), np.int32) if context is None else np.repeat(np.asarray([context], np.int32), batch, 0)
    output = sampler(fake_step(table), (tf.zeros([batch], tf.int32),), tf.constant(context), tf.constant(seed), Knobs.of(config))
    return sequences(output)


def preferring(sequence, strength=4.0, steps=8):
    """Logits that prefer `sequence` then the end token, whatever the previous token."""
    table = np.zeros((steps, VOCAB, VOCAB), np.float32)
    for step, token in enumerate(list(sequence) + [EOS_ID] * (steps - len(sequence))):
        table[step, :, token] = strength
    table[:, :, list(SPECIALS)] = -10.0
    return table


def best(results):
    return max(results, key=lambda r: r[2])


def test_greedy_returns_the_preferred_sequence():
    ids, log_prob, _, ended = run(preferring([5, 6, 7]), sampler="greedy")[0]
    assert ids == [5, 6, 7] and ended
    assert log_prob < 0


def test_beam_finds_a_better_sequence_than_greedy():
    table = np.full((4, VOCAB, VOCAB), -10.0, np.float32)
    table[0, BOS_ID, 4], table[0, BOS_ID, 5] = np.log(0.5), np.log(0.4)  # greedy takes 4 ...
    table[1, 4, 4:12] = np.log(1 / 8)  # ... after which nothing is likely
    table[1, 5, 6] = np.log(0.95)  # 5 leads to a confident 6: 0.38 > 0.5 / 8
    table[2:, :, EOS_ID] = 0.0
    greedy = run(table, sampler="greedy")[0]
    beam = best(run(table, sampler="beam", num_beams=3, num_return_sequences=2, length_penalty=0.0))
    assert greedy[0][0] == 4
    assert beam[0] == [5, 6] and beam[3]
    assert beam[1] > greedy[1] + 1.0  # log 0.38 vs log 0.0625


def test_beam_length_penalty_and_minimum_length():
    table = preferring([5, 6, 7])
    table[1, :, EOS_ID] = 3.9  # ending after one token is almost as likely as going on
    shortest = best(run(table, sampler="beam", num_beams=4, length_penalty=0.0))
    assert shortest[0] == [5]
    assert best(run(table, sampler="beam", num_beams=4, length_penalty=0.0, min_reply_tokens=3))[0] == [5, 6, 7]


def test_top_k_never_leaves_the_k_best():
    rng = np.random.default_rng(1)
    table = np.repeat(rng.normal(size=(8, 1, VOCAB)).astype(np.float32), VOCAB, axis=1)
    table[:, :, list(SPECIALS) + [EOS_ID]] = -10.0
    allowed = np.argsort(-table[:, 0], axis=1)[:, :3]
    seen = set()
    for seed in range(30):
        ids = run(table, seed=seed, sampler="top_k", top_k=3, temperature=1.5, num_return_sequences=2)[0][0]
        assert len(ids) == 6
        for step, token in enumerate(ids):
            assert token in allowed[step]
            seen.add((step, token))
    assert len(seen) > 6  # it does sample, not only the best


def test_top_p_never_leaves_the_nucleus():
    probabilities = np.array([0, 0, 0, 0, 0.5, 0.3, 0.15, 0.05, 0, 0, 0, 0]) + 1e-9
    table = np.broadcast_to(np.log(probabilities).astype(np.float32), (8, VOCAB, VOCAB)).copy()
    emitted = set()
    for seed in range(40):
        for ids, *_ in run(table, seed=seed, sampler="top_p", top_p=0.75, temperature=1.0, num_return_sequences=3):
            emitted.update(ids)
    assert emitted == {4, 5}  # 0.5 + 0.3 reaches 0.75: token 6 (0.15) is outside the nucleus


def test_temperature_towards_zero_equals_greedy():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(8, VOCAB, VOCAB)).astype(np.float32)
    greedy = run(table, sampler="greedy")[0][0]
    for seed in range(5):
        assert run(table, seed=seed, sampler="sample", temperature=1e-4)[0][0] == greedy


def test_same_seed_same_reply_and_seeds_differ():
    table = np.zeros((8, VOCAB, VOCAB), np.float32)
    replies = {seed: run(table, seed=seed, sampler="sample", temperature=1.0, num_return_sequences=2) for seed in range(6)}
    for seed in range(6):
        assert run(table, seed=seed, sampler="sample", temperature=1.0, num_return_sequences=2) == replies[seed]
    assert len({tuple(r[0][0]) for r in replies.values()}) > 1
    assert replies[0][0][0] != replies[0][1][0]  # two candidates, two draws


def test_repeated_ngrams_are_blocked():
    loop = preferring([5, 6, 5, 6, 5, 6, 5, 6], steps=8)
    assert run(loop, sampler="greedy", max_reply_tokens=8)[0][0] == [5, 6, 5, 6, 5, 6, 5, 6]
    blocked = run(loop, sampler="greedy", max_reply_tokens=8, no_repeat_ngram=2)[0][0]
    bigrams = list(pairwise(blocked))
    assert len(bigrams) == len(set(bigrams)) and blocked[:2] == [5, 6]


def test_ngrams_from_the_context_are_blocked():
    table = preferring([5, 6, 7])
    context = [BOS_ID, 5, 6, 7, EOS_ID, 0, 0]
    assert run(table, sampler="greedy", context=context)[0][0] == [5, 6, 7]
    ids, _, _, ended = run(table, sampler="greedy", context=context, no_context_ngram=3)[0]
    assert ids[:2] == [5, 6] and ids[2:3] != [7]
    assert run(table, sampler="greedy", context=[BOS_ID, 5, 6, EOS_ID], no_context_ngram=3)[0][0] == [5, 6, 7]


def test_ngrams_of_the_bots_earlier_replies_are_blocked_and_the_users_are_not():
    """A chat must not loop on one opener: with the context given as (every turn, the bot's earlier replies),
    a 4-gram the bot said before is blocked; the same words said by the user are not."""
    table = preferring([5, 6, 7, 8])
    said = [BOS_ID, 5, 6, 7, 8, EOS_ID, 0, 0]
    by_bot = [said, said]  # every turn, then the bot's earlier replies only
    by_user = [said, [0] * len(said)]
    ids = run(table, sampler="greedy", context=by_bot, no_earlier_reply_ngram=4)[0][0]
    assert ids[:3] == [5, 6, 7] and ids[3:4] != [8]
    assert run(table, sampler="greedy", context=by_user, no_earlier_reply_ngram=4)[0][0] == [5, 6, 7, 8]
    assert run(table, sampler="greedy", context=by_bot, no_earlier_reply_ngram=0)[0][0] == [5, 6, 7, 8]


def test_the_generator_gives_the_bots_turns_apart(tiny_checkpoint):
    """The bot's turns are those an odd number of turns before the message answered (the last), looked for
    further back than the model reads: a reply that left the window cannot come back."""
    from chatbot.inference.decoding import EARLIER_REPLY_TURNS
    from chatbot.inference.generation import ReplyGenerator

    generator = ReplyGenerator(tiny_checkpoint.model, (3, 4), compiled=False)
    context = np.zeros((1, 6, 3), np.int32)
    for turn in range(6):  # bot, user, bot, user, bot, user: the last is the message answered
        context[0, turn] = [BOS_ID, 4 + turn, EOS_ID]
    encoder_input, ids = generator.padded(context)
    assert encoder_input[0, :, 1].tolist() == [7, 8, 9]  # the model reads the last 3 turns
    assert ids.shape == (1, 2, EARLIER_REPLY_TURNS * 4)
    every, earlier = ids[0, 0].reshape(EARLIER_REPLY_TURNS, 4), ids[0, 1].reshape(EARLIER_REPLY_TURNS, 4)
    assert every[:, 1].tolist() == [7, 8, 9] + [0] * (EARLIER_REPLY_TURNS - 3)
    assert earlier[:6, 1].tolist() == [4, 0, 6, 0, 8, 0] and not earlier[6:].any()  # turns 0, 2, 4 were the bot's
    assert not generator.padded(context[:, :1])[1][0, 1].any()  # a first message: no earlier reply


def test_unknown_token_is_suppressed_unless_allowed():
    table = preferring([5, 6])
    table[0, :, UNK_ID] = 9.0
    assert run(table, sampler="greedy")[0][0] == [5, 6]
    assert run(table, sampler="greedy", allow_unknown=True)[0][0] == [UNK_ID, 6]


def test_ngram_bans_direct():
    history = tf.constant([[5, 6, 7, 5, 6, 0]])
    bans = ngram_bans(history, tf.constant([[5, 6]]), VOCAB).numpy()[0]
    assert np.flatnonzero(bans).tolist() == [7]  # "5 6" was followed by 7 (and by padding, never banned)
    assert np.flatnonzero(ngram_bans(history, tf.zeros((1, 0), tf.int32), VOCAB).numpy()[0]).tolist() == [5, 6, 7]


@pytest.mark.slow
def test_mmi_rerank_rescores_the_same_candidates(tiny_checkpoint):
    """MMI-antiLM keeps the sampled candidates and adds -lambda * log U(T) >= 0 to each score."""
    from chatbot.inference.framing import context_array
    from chatbot.inference.generation import MMI_CANDIDATES, ReplyGenerator

    context = context_array(tiny_checkpoint.tokenizer.encode_batch(["what is your favorite book?"]), 24)
    generator = ReplyGenerator(tiny_checkpoint.model, (5, 24))
    plain = generator.candidates(context, DecodingConfig(num_return_sequences=MMI_CANDIDATES), seed=9)
    reranked = generator.candidates(context, DecodingConfig(num_return_sequences=MMI_CANDIDATES, mmi_weight=0.5), seed=9)
    by_tokens = {c.token_ids: c for c in plain}
    assert sorted(by_tokens) == sorted(c.token_ids for c in reranked)
    bonuses = [c.score - by_tokens[c.token_ids].score for c in reranked]
    assert all(b >= 0 for b in bonuses) and max(bonuses) > 0
    assert [c.log_probability for c in reranked] == [by_tokens[c.token_ids].log_probability for c in reranked]
    assert generator.candidates(context, DecodingConfig(mmi_weight=0.5), seed=9)[0] == reranked[0]


def test_decoding_flags():
    import argparse

    from chatbot.errors import ConfigError
    from chatbot.inference.decoding import add_decoding_arguments, decoding_from_args

    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    parse = lambda *flags: decoding_from_args(parser.parse_args(list(flags)))  # noqa: E731
    assert parse() == DecodingConfig()
    assert (
        parse("--beam", "3", "--candidates", "2").to_dict() == DecodingConfig(sampler="beam", num_beams=3, num_return_sequences=2).to_dict()
    )
    assert parse("--top-k", "7").sampler == "top_k" and parse("--greedy").sampler == "greedy"
    assert parse("--sampler", "sample", "--no-context-ngram", "2", "--allow-unknown").no_context_ngram == 2
    with pytest.raises(ConfigError, match="conflicting decoding flags: greedy and beam"):
        parse("--greedy", "--beam", "2")
    with pytest.raises(ConfigError, match="--top-p must be in"):
        parse("--top-p", "2")
