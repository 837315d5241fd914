"""One seed, one reply (issue 27, item 14): the eager path and the compiled path give the same tokens.

The chat answers a setting eagerly while its XLA graphs compile in the background, and compiled
afterwards (`ReplyGenerator(background_compile=True)`), so the same `--seed` gave another first reply
in a terminal than piped whenever the two paths disagreed: every sampled reply did, from its first
token (the uniforms, `samplers._philox_uniforms`). Here every sampler, and MMI reranking, decodes
on both paths of one generator the way the chat does (the compiled function, then its Python
function op by op) on the tiny trained model, and every candidate is compared, not only the best.
"""

from itertools import pairwise

import numpy as np
import pytest

from chatbot.inference.decoding import DecodingConfig

GREETING = ["hi! how are you?", "i am fine, thank you. and you?"]
QUESTION = ["what is your favorite book?"]
# name: (settings, [(history, seed)]). Greedy and beam search draw nothing: other histories, not seeds.
# The sampled ones draw eight candidates per seed, the number MMI reranks, so that they share one
# encoder graph and top-p shares MMI's decoder (compiling is what costs time here); 2**31 - 1 is the largest seed the chat draws, and
# the API takes any integer, negative ones too.
CASES = {
    "greedy": (dict(sampler="greedy"), [(GREETING, 0), (QUESTION, 0)]),
    "temperature": (dict(sampler="sample", temperature=1.0, num_return_sequences=8), [(GREETING, 0), (GREETING, 2**31 - 1)]),
    "top_k": (dict(sampler="top_k", top_k=20, num_return_sequences=8), [(GREETING, 1), (QUESTION, -1)]),
    "top_p": (dict(sampler="top_p", num_return_sequences=8), [(GREETING, 2), (QUESTION, 3)]),
    "beam": (dict(sampler="beam", num_beams=4, num_return_sequences=4), [(GREETING, 0), (QUESTION, 0)]),
    "top_p_mmi": (dict(sampler="top_p", mmi_weight=0.5, num_return_sequences=8), [(GREETING, 4)]),
}


@pytest.fixture(scope="module")
def generator(tiny_checkpoint):
    from chatbot.inference.generation import ReplyGenerator

    return ReplyGenerator(tiny_checkpoint.model, (5, 24))


@pytest.mark.parametrize("name", list(CASES))
def test_eager_and_compiled_paths_give_the_same_candidates(tiny_checkpoint, generator, name):
    from chatbot.inference.framing import context_array

    settings, cases = CASES[name]
    config = DecodingConfig(max_reply_tokens=12, **settings)
    differ, seen = [], set()
    for history, seed in cases:
        context = context_array(tiny_checkpoint.tokenizer.encode_batch(history), 24)
        compiled = generator.candidates(context, config, seed)
        eager = generator.candidates(context, config, seed, eager=True)
        assert all(c.compiled for c in compiled) and not any(c.compiled for c in eager)
        assert len(compiled) == config.num_return_sequences and all(a.score >= b.score for a, b in pairwise(compiled))
        if [c.token_ids for c in compiled] != [c.token_ids for c in eager]:
            differ.append((history[-1], seed))
        else:  # the same candidates, scored alike (the model's floats are rounded differently on the two paths)
            np.testing.assert_allclose([c.score for c in compiled], [c.score for c in eager], rtol=1e-4)
        seen.update(c.token_ids for c in compiled)
    assert differ == [], f"{name}: the eager and compiled candidates differ for (message, seed) {differ}"
    assert len(seen) > 1  # candidates that differ among themselves: the comparison covers several draws


def test_the_uniforms_are_the_same_numbers_eagerly_and_compiled():
    """The numbers every draw reads: the same eagerly and under XLA for any seed (one per request too, as a
    server batches them), and for the seeds the chat draws (0 to 2**31 - 1) XLA's own
    `tf.random.stateless_uniform`, which the compiled path drew before: stored replies keep their tokens."""
    import tensorflow as tf

    from chatbot.inference.samplers import uniforms

    compiled = tf.function(uniforms, jit_compile=True)
    before = tf.function(
        lambda rows, step, seed: tf.random.stateless_uniform(tf.reshape(rows, [1]), seed=tf.stack([seed, step])), jit_compile=True
    )
    for seed in (0, 1, 12345, 2**31 - 1, -1, -(2**31)):
        for step in (0, 1, 39):
            for rows in (1, 8):
                args = tf.constant(rows), tf.constant(step), tf.constant(seed)
                eager = uniforms(*args).numpy()
                np.testing.assert_array_equal(eager, compiled(*args).numpy())
                assert eager.dtype == np.float32 and (eager >= 0).all() and (eager < 1).all()
                if seed >= 0:
                    np.testing.assert_array_equal(eager, before(*args).numpy())
    requests = tf.constant(8), tf.constant(3), tf.constant([5, -5], tf.int32)
    np.testing.assert_array_equal(uniforms(*requests).numpy(), compiled(*requests).numpy())


def test_replay_says_why_a_reply_sampled_eagerly_before_the_fix_differs(tiny_checkpoint, db_url):
    """Stored replies keep their `compiled` flag: a sampled reply made on the eager path before the paths
    agreed (its random numbers are gone) is explained; one made compiled, or now on either path, is not."""
    import json

    from sqlalchemy import create_engine, text

    from chatbot.dialogue.manager import DialogueManager
    from chatbot.evaluation.replay import ModelCache, regenerate
    from chatbot.inference.generation import ReplyGenerator
    from chatbot.inference.responder import default_context_turns
    from chatbot.storage import ConversationStore

    shape = (default_context_turns(tiny_checkpoint), tiny_checkpoint.model_config.max_utterance_length)
    generator = ReplyGenerator(tiny_checkpoint.model, shape, compiled=False)  # eager: nothing to compile
    store = ConversationStore(db_url)
    manager = DialogueManager(store, tiny_checkpoint, generator=generator)
    conversation = manager.start()
    exchange = manager.answer(conversation.id, "hello there", DecodingConfig(max_reply_tokens=8), seed=21)
    models = ModelCache(loaded={tiny_checkpoint.model_id: (tiny_checkpoint, generator)})
    [result] = regenerate(store, conversation.id, models)
    assert result.identical and result.problem is None
    settings = json.loads(store.turns(conversation.id)[-1].decoding)
    assert settings["compiled"] is False

    engine = create_engine(db_url)
    for compiled, note in ((False, "made on the eager path;"), (None, "made before replies stored their path;"), (True, None)):
        stored = {key: value for key, value in settings.items() if key != "compiled"} | ({} if compiled is None else {"compiled": compiled})
        with engine.begin() as connection:  # as a reply the chat made before the fix: other tokens
            connection.execute(
                text("UPDATE turns SET text = 'an older reply', decoding = :decoding WHERE speaker = 'bot'"),
                {"decoding": json.dumps(stored)},
            )
        [result] = regenerate(store, conversation.id, models)
        assert not result.identical and result.text == exchange.reply.text
        assert (result.problem is None) if note is None else (note in result.problem and "issue 27" in result.problem)
    engine.dispose()
