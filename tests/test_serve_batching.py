"""Micro-batching: a reply decoded in a batch is the reply decoded alone, token for token (really trained tiny
HRED and VHRED, several samplers and candidate counts); the inference thread gathers concurrent requests,
hands each thread its own result, and refuses work beyond its queue."""

from __future__ import annotations

import threading

import pytest
from scripted import expected_reply, scripted_checkpoint

from chatbot.errors import OverloadedError
from chatbot.inference.batch_generation import BatchReplyGenerator
from chatbot.inference.checkpoint import load_checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.generation import ReplyGenerator
from chatbot.inference.responder import Responder
from chatbot.serve.batching import BatchingGenerator

HISTORIES = [
    ["hello"],
    ["hi, how are you doing today?", "i am doing well, and you?"],
    ["what is your favorite book?"],
    ["do you like music?", "yes, very much", "what kind?"],
    ["tell me something about yourself."],
]


def batch_generator(checkpoint) -> BatchReplyGenerator:
    return BatchReplyGenerator(checkpoint.model, (checkpoint.model_config.max_turns - 1, checkpoint.model_config.max_utterance_length))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        DecodingConfig(),
        DecodingConfig(sampler="greedy"),
        DecodingConfig(sampler="top_k", temperature=1.3),
        DecodingConfig(num_return_sequences=3),
    ],
    ids=["top_p", "greedy", "top_k", "3 candidates"],
)
def test_a_batch_decodes_each_request_as_it_would_be_decoded_alone(tiny_checkpoint, config):
    generator = batch_generator(tiny_checkpoint)
    responder = Responder(tiny_checkpoint, generator=generator)
    generator.warm_up(config, batch_sizes=[8], alone=False)
    requests = [(responder.context_tokens(history), config, 7 + index) for index, history in enumerate(HISTORIES)]
    batched = generator.candidates_batch(requests)  # 5 requests padded to a batch of 8
    alone = [generator.candidates(context, c, seed) for context, c, seed in requests]
    assert [[c.token_ids for c in found] for found in batched] == [[c.token_ids for c in found] for found in alone]
    assert len({found[0].token_ids for found in batched}) > 1  # the requests did get different replies


@pytest.mark.slow
def test_a_vhred_batch_draws_each_request_s_latent_from_its_own_seed(tiny_vhred_dir):
    checkpoint = load_checkpoint(tiny_vhred_dir)
    generator = batch_generator(checkpoint)
    responder = Responder(checkpoint, generator=generator)
    config = DecodingConfig(num_return_sequences=2)
    generator.warm_up(config, batch_sizes=[4], alone=False)
    requests = [(responder.context_tokens(history), config, 30 + index) for index, history in enumerate(HISTORIES[:4])]
    batched = generator.candidates_batch(requests)
    alone = [generator.candidates(context, c, seed) for context, c, seed in requests]
    assert [[c.token_ids for c in found] for found in batched] == [[c.token_ids for c in found] for found in alone]


def test_beam_and_mmi_are_decoded_alone(tiny_checkpoint):
    generator = batch_generator(tiny_checkpoint)
    assert generator.batch_key(DecodingConfig(sampler="beam", num_beams=3)) is None
    assert generator.batch_key(DecodingConfig(mmi_weight=0.5)) is None
    assert generator.batch_key(DecodingConfig(temperature=0.7)) != generator.batch_key(DecodingConfig(temperature=0.8))
    with pytest.raises(ValueError, match="one batch key"):
        generator.candidates_batch([(None, DecodingConfig(sampler="greedy"), 1), (None, DecodingConfig(), 1)])


def test_a_batch_size_compiles_in_the_background_when_its_first_batch_comes(tmp_path):
    """A server compiles no batch program at start: the first batch of a size is decoded one by one and starts
    that size's compile; once it is done, batches of that size (and only that size) are decoded together."""
    checkpoint = scripted_checkpoint(tmp_path)
    generator = BatchReplyGenerator(checkpoint.model, (5, checkpoint.model_config.max_utterance_length), background_compile=True)
    assert generator.compiler is not None
    responder = Responder(checkpoint, generator=generator)
    config = DecodingConfig(sampler="greedy")
    requests = [(responder.context_tokens([f"message number {i}"]), config, i) for i in range(3)]
    alone = [generator.candidates(context, c, seed, eager=True) for context, c, seed in requests]
    first = generator.candidates_batch(requests)  # padded size 4: not compiled, so one by one, and its compile starts
    assert generator.batches == {} and not generator.compiler.ready()
    assert generator.compiler.wait(120)
    second = generator.candidates_batch(requests)
    assert generator.batches == {3: 1}  # decoded together
    generator.candidates_batch(requests[:2])  # size 2 was never compiled: one by one again
    assert generator.batches == {3: 1}
    assert generator.compiler.wait(120)
    assert [[c.token_ids for c in found] for found in first] == [[c.token_ids for c in found] for found in second]
    assert [[c.token_ids for c in found] for found in second] == [[c.token_ids for c in found] for found in alone]


def test_the_inference_thread_gathers_concurrent_requests_and_answers_each_thread(tmp_path):
    checkpoint = scripted_checkpoint(tmp_path)
    generator = BatchReplyGenerator(checkpoint.model, (5, checkpoint.model_config.max_utterance_length))
    config = DecodingConfig(sampler="greedy")
    generator.warm_up(config, batch_sizes=[2, 4, 8])
    batching = BatchingGenerator(generator, window_ms=200, max_batch=8, max_queue=16)
    responder = Responder(checkpoint, generator=batching)
    texts = [f"message number {i}" for i in range(8)]
    results: dict[int, str] = {}
    start = threading.Barrier(8)

    def ask(index: int) -> None:
        start.wait()
        results[index] = responder.candidates([texts[index]], config, index).texts[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    alone = Responder(checkpoint, generator=generator)
    assert results == {i: alone.candidates([texts[i]], config, i).texts[0] for i in range(8)}
    assert max(batching.batches) > 1, batching.batches  # at least some were decoded together
    batching.close()


def test_a_full_queue_refuses_at_once(tmp_path):
    checkpoint = scripted_checkpoint(tmp_path)
    generator = ReplyGenerator(checkpoint.model, (5, checkpoint.model_config.max_utterance_length), compiled=False)
    release = threading.Event()
    batching = BatchingGenerator(generator, window_ms=0, max_batch=1, max_queue=1)
    busy = threading.Event()
    # the inference thread is busy: wait until it runs the blocker, so its job no longer sits in the queue
    # (on a loaded machine the waiting request could otherwise find the blocker queued and be refused)
    blocker = threading.Thread(target=batching.run, args=(lambda: (busy.set(), release.wait()),))
    blocker.start()
    assert busy.wait(60)
    responder = Responder(checkpoint, generator=batching)
    answered = []
    waiting = threading.Thread(target=lambda: answered.append(responder.candidates(["hello"], DecodingConfig(sampler="greedy"), 1)))
    waiting.start()  # fills the one queue place
    deadline = threading.Event()
    while batching._queue.qsize() < 1 and not deadline.wait(0.01):
        pass
    with pytest.raises(OverloadedError, match="try again in a moment"):
        responder.candidates(["hello"], DecodingConfig(sampler="greedy"), 2)
    release.set()
    blocker.join(60)
    waiting.join(60)  # the eager path on a loaded machine can take more than 10 s
    assert answered and answered[0].texts[0] == expected_reply(checkpoint, ["hello"])  # the queued request was answered
    batching.close()
