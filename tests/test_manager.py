"""The dialogue manager (`chatbot.dialogue.manager`) with really trained tiny models: stored turns, seeds,
message cleaning, decoding settings, replay and concurrent exchanges."""

import numpy as np
import pytest

from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ConfigError
from chatbot.evaluation.replay import ModelCache, regenerate
from chatbot.inference.checkpoint import load_checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.storage import ConversationStore
from chatbot.text.messages import MAX_MESSAGE_CHARS


def test_turns_persist_and_a_restart_rebuilds_the_same_context(tiny_checkpoint, store_url):
    manager = DialogueManager(ConversationStore(store_url), tiny_checkpoint, context_turns=5)
    conversation = manager.start()
    for text in ["hello", "how are you?", "what do you like to do?"]:
        exchange = manager.answer(conversation.id, text, DecodingConfig())
        assert exchange.user_turn.position + 1 == exchange.reply.position
        assert exchange.reply.text
    before = manager.responder.context_tokens([t.text for t in manager.history(conversation.id)])
    manager.store.close()

    # A new process: fresh store and manager over the same database file.
    restarted = DialogueManager(ConversationStore(store_url), tiny_checkpoint, context_turns=5)
    turns = restarted.history(conversation.id)
    assert [t.speaker for t in turns] == ["user", "bot"] * 3
    bot = turns[1]
    assert bot.model_id == restarted.model_id and bot.seed is not None and bot.latency_ms > 0
    assert '"top_p": 0.9' in bot.decoding and bot.created_at is not None
    after = restarted.responder.context_tokens([t.text for t in restarted.history(conversation.id)])
    np.testing.assert_array_equal(before, after)
    assert after.shape[1] == 6  # all 6 stored turns: the model reads the last 5, earlier replies are looked for in 24
    assert restarted.responder.generator.padded(after)[0].shape[1] == 5


def test_same_seed_same_reply(tiny_checkpoint, db_url):
    manager = DialogueManager(ConversationStore(db_url), tiny_checkpoint)
    conversation = manager.start()
    manager.answer(conversation.id, "good morning", DecodingConfig(), seed=11)
    decoding = DecodingConfig(temperature=1.0, top_p=1.0)
    replies = {manager.retry(conversation.id, decoding, seed=5).reply.text for _ in range(3)}
    assert len(replies) == 1
    others = {manager.retry(conversation.id, decoding, seed=s).reply.text for s in range(6, 16)}
    assert len(others) > 1  # different seeds do sample different replies


def test_user_turn_is_committed_before_generation(tiny_checkpoint, store_url):
    """If generation fails, the user's message is already stored: nothing typed is lost."""
    manager = DialogueManager(ConversationStore(store_url), tiny_checkpoint)
    conversation = manager.start()

    def failing_candidates(*_args, **_kwargs):
        raise RuntimeError("generation crashed")

    manager.responder.candidates = failing_candidates
    with pytest.raises(RuntimeError):
        manager.answer(conversation.id, "are you there?", DecodingConfig())
    assert [t.text for t in manager.history(conversation.id)] == ["are you there?"]
    assert manager.store.tickets.holders(conversation.id) == []  # the conversation is free again


def test_messages_are_cleaned_and_long_ones_flagged(tiny_checkpoint, store_url):
    manager = DialogueManager(ConversationStore(store_url), tiny_checkpoint)
    conversation = manager.start()
    with pytest.raises(ConfigError, match="empty message"):
        manager.answer(conversation.id, " \x00\x07 ", DecodingConfig())
    exchange = manager.answer(conversation.id, "hello\x00 there \x1b[31m" + "word " * 15_000, DecodingConfig())
    assert exchange.window is not None and exchange.window[0] < exchange.window[1]
    assert exchange.removed == 6 and exchange.cut == len("hello there " + "word " * 15_000) - 1 - MAX_MESSAGE_CHARS
    assert exchange.user_turn.text.startswith("hello there word")
    assert len(exchange.user_turn.text) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    "values",
    [
        dict(temperature=0),
        dict(top_p=0),
        dict(top_p=1.5),
        dict(max_reply_tokens=0),
        dict(sampler="nucleus"),
        dict(top_k=0),
        dict(min_reply_tokens=50),
        dict(sampler="beam", num_beams=2, num_return_sequences=3),
        dict(no_repeat_ngram=-1),
    ],
)
def test_invalid_decoding_settings(values):
    with pytest.raises(ConfigError):
        DecodingConfig(**values)


@pytest.mark.parametrize("turns", [0, -3])
def test_context_of_no_turns_is_refused(tiny_checkpoint, db_url, turns):
    with pytest.raises(ConfigError, match="--context-turns must be at least 1"):
        DialogueManager(ConversationStore(db_url), tiny_checkpoint, context_turns=turns)


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # SQLite: tests/test_cli.py replays through the command
def test_replay_regenerates_every_stored_reply_exactly(tiny_checkpoint, store_url):
    """What `chatbot replay --regenerate` runs: each stored reply again from its stored model, settings and seed."""
    manager = DialogueManager(ConversationStore(store_url), tiny_checkpoint, context_turns=3)
    conversation = manager.start()
    for text in ["hello", "what do you like?"]:
        manager.answer(conversation.id, text, DecodingConfig(temperature=0.9, top_k=20))
    manager.store.close()
    store = ConversationStore(store_url)  # another process, later
    results = regenerate(store, conversation.id, ModelCache())
    assert len(results) == 2 and all(r.identical and r.problem is None for r in results), [
        (r.text, r.turn.text, r.problem) for r in results
    ]


def test_concurrent_exchanges_on_one_conversation_queue_without_deadlock(store_url, tmp_path):
    """Eight threads, each with its own store (its own connections), answer in one conversation at once:
    every exchange is stored whole, one after another (on PostgreSQL the tickets' foreign key once made
    two of them deadlock)."""
    import threading

    from scripted import scripted_checkpoint

    from chatbot.inference.responder import make_generator

    checkpoint = scripted_checkpoint(tmp_path)
    generator = make_generator(checkpoint)
    managers = [DialogueManager(ConversationStore(store_url), checkpoint, generator=generator, busy_wait=60) for _ in range(8)]
    conversation = managers[0].start().id
    errors: list[BaseException] = []

    def talk(index: int) -> None:
        try:
            for step in range(3):
                managers[index].answer(conversation, f"thread {index} step {step}", DecodingConfig(sampler="greedy"), seed=step)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    turns = managers[0].history(conversation)
    assert [t.speaker for t in turns] == ["user", "bot"] * 24 and [t.position for t in turns] == list(range(48))
    assert all(bot.parent_id == user.id for user, bot in zip(turns[::2], turns[1::2], strict=True))
    for manager in managers:
        manager.close()


def test_the_dialogue_manager_answers_with_a_vhred_and_a_seed_repeats_the_reply(tiny_vhred_dir, db_url):
    manager = DialogueManager(ConversationStore(db_url), load_checkpoint(tiny_vhred_dir))
    replies = [manager.answer(None, "what is your favorite book?", DecodingConfig(), seed=11).reply for _ in range(2)]
    assert replies[0].text and replies[0].seed == 11
    assert replies[0].text == replies[1].text  # same history, settings and seed
    stored = manager.history(replies[0].conversation_id)
    assert [t.speaker for t in stored] == ["user", "bot"]
