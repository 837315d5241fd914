"""Generator, dialogue manager and REPL logic against a scripted model (tests/scripted.py):
the real code paths, with replies known in advance, so every assertion can be exact."""

from __future__ import annotations

import dataclasses
import threading
import unicodedata

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from scripted import REPLIES, ScriptedModel, expected_reply, scripted_checkpoint, scripted_tokenizer

from chatbot.chat.repl import ChatREPL, ModelLoader
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ConfigError, ConversationNotFoundError
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.framing import context_array
from chatbot.inference.generation import ReplyGenerator
from chatbot.inference.responder import make_generator
from chatbot.text.tokenizer import EOS_ID

CTRL_D = "\x04"
GREEDY = DecodingConfig(sampler="greedy")


@pytest.fixture(scope="module")
def tokenizer():
    return scripted_tokenizer()


@pytest.fixture
def checkpoint(tmp_path, tokenizer):
    return scripted_checkpoint(tmp_path / "scripted", tokenizer)


@pytest.mark.parametrize("compiled", [True, False], ids=["xla", "eager"])
@pytest.mark.parametrize("sampler", ["greedy", "top_p", "beam"])
def test_every_sampler_follows_the_script_on_both_paths(checkpoint, compiled, sampler):
    generator = ReplyGenerator(checkpoint.model, (5, checkpoint.model_config.max_utterance_length), compiled=compiled)
    config = DecodingConfig(sampler=sampler, num_beams=3, no_earlier_reply_ngram=0)  # the script, unblocked
    for history in (["hello"], ["hi, how are you doing today?", "i am doing well, and you?"], ["tell me something about yourself."]):
        context = context_array(checkpoint.tokenizer.encode_batch(history), checkpoint.model_config.max_utterance_length)
        ids = generator.generate(context, config, seed=7)
        assert checkpoint.tokenizer.decode(ids) == expected_reply(checkpoint, history)


def test_the_script_answers_differently_to_different_histories(checkpoint):
    answers = {expected_reply(checkpoint, [text]) for text in ("hello", "one", "two", "three", "books", "music", "robot")}
    assert len(answers) >= 3  # otherwise the exact assertions below could not tell contexts apart


def test_a_manager_serves_conversations_before_a_model_is_attached(db_url, checkpoint):
    manager = DialogueManager.open(db_url)
    assert not manager.ready and manager.sessions() == [] and manager.upgrade_note is None
    conversation = manager.start()
    manager.add_user_turn(conversation.id, "hello")
    assert [t.text for t in manager.history(conversation.id)] == ["hello"]
    with pytest.raises(ConfigError, match="no model attached"):
        manager.answer(conversation.id, None, GREEDY, seed=1)
    with pytest.raises(ConversationNotFoundError):
        manager.resume(99)

    manager.attach(checkpoint, generator=make_generator(checkpoint))
    assert manager.ready
    exchange = manager.answer(conversation.id, None, GREEDY, seed=1)  # the message kept while the model loaded
    assert exchange.user_turn is None and exchange.reply.text == expected_reply(checkpoint, ["hello"])
    assert manager.sessions()[0].num_turns == 2


def test_replies_read_exactly_the_context_window(db_url, checkpoint):
    manager = DialogueManager.open(db_url)
    manager.attach(checkpoint, context_turns=2)
    conversation = manager.start()
    said = []
    for text in ("one", "two", "three"):
        reply = manager.answer(conversation.id, text, GREEDY, seed=3).reply
        said += [text, reply.text]
        assert reply.text == expected_reply(checkpoint, said[:-1], context_turns=2)


def test_switch_rename_and_transcript_through_the_manager(db_url, checkpoint):
    manager = DialogueManager(DialogueManager.open(db_url).store, checkpoint)
    conversation = manager.start()
    manager.answer(conversation.id, "hello", GREEDY, seed=1)
    edited = manager.edit(conversation.id, "books", GREEDY, seed=1)
    assert edited.replaced.text == "hello" and edited.reply.text == expected_reply(checkpoint, ["books"])
    assert [b.number for b in manager.branches(conversation.id)] == [1, 2]
    path = manager.switch(conversation.id, 1)
    assert [t.text for t in path] == ["hello", expected_reply(checkpoint, ["hello"])]
    with pytest.raises(ConfigError, match="from 1 to 2"):
        manager.switch(conversation.id, 3)
    assert manager.rename(conversation.id, "  a   title ").title == "a title"
    with pytest.raises(ConfigError, match="needs some text"):
        manager.rename(conversation.id, "   ")
    transcript = manager.transcript(conversation.id)
    assert [t.text for t in transcript.turns][0] == "hello" and len(transcript.branches) == 2


def type_into(manager, keys: str, loader=None, **kwargs) -> list[str]:
    lines: list[str] = []
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        session = PromptSession(input=pipe, output=DummyOutput())
        ChatREPL(manager, GREEDY, session, write=lines.append, loader=loader, **kwargs).run()
    return lines


def test_the_repl_answers_the_script_and_edits_and_switches_branches(db_url, checkpoint):
    manager = DialogueManager(DialogueManager.open(db_url).store, checkpoint)
    first = expected_reply(checkpoint, ["hello"])
    lines = type_into(manager, "hello\n/edit books\n/branches\n/switch 1\n/title greetings\n/history\n" + CTRL_D)
    assert lines[1] == f"bot> {first}"
    after_edit = expected_reply(checkpoint, ["books"])
    assert f"bot> {after_edit}" in lines
    assert "(your earlier message is kept on another branch: hello; /branches lists them)" in lines
    assert any(line.startswith("  1. 2 turns") for line in lines) and any(line.startswith("* 2. 2 turns") for line in lines)
    assert "switched to branch 1 (2 turns); the last ones:" in lines
    assert "title: greetings" in lines
    history = [line for line in lines if line[:2] in ("1.", "2.") and ". [" in line]
    assert history[-2].endswith("user: hello") and f"bot: {first}" in history[-1]
    assert lines[-1] == "saved as conversation 1; continue with: chatbot chat --resume 1"  # no --db given to the REPL


def test_the_repl_lists_and_resumes_conversations_while_the_model_is_still_loading(db_url, checkpoint):
    manager = DialogueManager.open(db_url)
    conversation = manager.start()
    manager.add_user_turn(conversation.id, "stored earlier")
    release = threading.Event()
    seen_before_load: list[bool] = []

    def load():
        release.wait(60)
        return checkpoint, make_generator(checkpoint)

    loader = ModelLoader(load)
    lines: list[str] = []
    with create_pipe_input() as pipe:
        session = PromptSession(input=pipe, output=DummyOutput())
        repl = ChatREPL(manager, GREEDY, session, write=lines.append, loader=loader)
        for command in ("/sessions", "/resume 1", "/history"):
            assert repl.handle(command)
        seen_before_load.append(loader.ready())
        release.set()
        assert repl.handle("hello")
    assert seen_before_load == [False]  # the three commands ran while the model was loading
    assert any("stored earlier" in line for line in lines)
    assert "(loading the model …)" not in lines or lines.index("(loading the model …)") > 3
    assert lines[-1] == f"bot> {expected_reply(checkpoint, ['stored earlier', 'hello'])}"
    assert loader.finish() is True


def test_a_failed_load_stores_no_message(db_url):
    def load():
        raise ConfigError("the model cannot load")

    manager = DialogueManager.open(db_url)
    loader = ModelLoader(load)
    lines = type_into(manager, "hello\n" + CTRL_D, loader=loader)
    assert "error: the model cannot load" in lines
    assert manager.sessions() == []


def test_background_compilation_is_one_object_the_chat_can_wait_on(checkpoint):
    generator = make_generator(checkpoint, background_compile=True)
    assert generator.compiler is not None and generator.compiler.ready()
    context = context_array(checkpoint.tokenizer.encode_batch(["hello"]), checkpoint.model_config.max_utterance_length)
    first = generator.candidates(context, GREEDY, seed=1)[0]
    assert first.compiled is False  # answered eagerly while the graphs compile
    assert generator.compiler.wait(timeout=120) and generator.compiler.ready()
    again = generator.candidates(context, GREEDY, seed=1)[0]
    assert again.compiled is True and again.token_ids == first.token_ids
    assert make_generator(checkpoint).compiler is None


def test_replies_table_round_trips_through_the_tokenizer(tokenizer):
    for text in REPLIES:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_a_reply_that_decodes_to_escape_codes_is_stored_and_printed_clean(db_url, checkpoint, tokenizer):
    """SentencePiece's byte-fallback pieces decode to any byte: a model can emit ESC and other control
    characters. The reply is cleaned as a typed message is, so no terminal sees an escape sequence and an
    HTTP client that sends the history back matches the stored turn."""
    pieces = tokenizer._processor  # the SentencePiece processor: byte pieces have ids of their own
    escape, control = pieces.piece_to_id("<0x1B>"), pieces.piece_to_id("<0x02>")
    assert escape != pieces.unk_id() and tokenizer.decode([escape, control]) == "\x1b\x02"
    row = [escape] + tokenizer.encode("[31m i am fine") + [control, escape] + tokenizer.encode("]0;owned") + [EOS_ID]
    scripted = dataclasses.replace(checkpoint, model=ScriptedModel([row], tokenizer.vocabulary_size))
    manager = DialogueManager.open(db_url)
    manager.attach(scripted)
    conversation = manager.start()
    reply = manager.answer(conversation.id, "how are you?", GREEDY, seed=1).reply
    assert not any(unicodedata.category(c) == "Cc" for c in reply.text), repr(reply.text)
    assert "i am fine" in reply.text
    lines = type_into(manager, "again\n" + CTRL_D, conversation_id=conversation.id)
    assert any(line.startswith("bot> ") and "i am fine" in line for line in lines), lines
    assert not any("\x1b" in line or "\x02" in line for line in lines)
