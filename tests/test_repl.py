"""The chat REPL driven like a person at a terminal: prompt-toolkit pipe input and a real database.

`chat` runs the whole `chatbot chat` path with a tiny model really trained; `chat_scripted`
runs the same REPL, manager and background loader with the scripted model of
tests/scripted.py (the real inference contract, replies from a fixed table), which is
what the command and branch logic needs, in a fraction of the time.
"""

import argparse
import io
import json
import os
import subprocess
import sys

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from scripted import expected_reply, scripted_checkpoint

from chatbot.chat.repl import ChatREPL, ModelLoader
from chatbot.chat.run import run_chat
from chatbot.chat.terminal import LineInput
from chatbot.cli.parser import build_parser
from chatbot.dialogue.manager import DialogueManager
from chatbot.inference.decoding import decoding_from_args
from chatbot.inference.generation import ReplyGenerator
from chatbot.inference.responder import default_context_turns
from chatbot.storage import ConversationStore
from tests.conftest import REPO

CTRL_C, CTRL_D = "\x03", "\x04"


def chat(model_dir, db_url, keys: str, *extra: str) -> list[str]:
    """Run `chatbot chat` with `keys` typed; returns the printed lines."""
    args: argparse.Namespace = build_parser().parse_args(["chat", "--model", str(model_dir), "--db", db_url, *extra])
    lines: list[str] = []
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        session = PromptSession(input=pipe, output=DummyOutput())
        assert run_chat(args, prompt_session=session, write=lines.append) == 0
    return lines


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return scripted_checkpoint(tmp_path_factory.mktemp("models") / "scripted")


def chat_scripted(checkpoint, db_url, keys: str, *extra: str) -> list[str]:
    """`chat` with the scripted model, loaded in the background through a ModelLoader as run_chat does."""
    args = build_parser().parse_args(["chat", "--db", db_url, *extra])
    turns = default_context_turns(checkpoint) if args.context_turns is None else args.context_turns
    shape = (turns, checkpoint.model_config.max_utterance_length)
    loader = ModelLoader(lambda: (checkpoint, ReplyGenerator(checkpoint.model, shape, compiled=False)))
    lines: list[str] = []
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        session = PromptSession(input=pipe, output=DummyOutput())
        repl = ChatREPL(
            DialogueManager.open(db_url),
            decoding_from_args(args),
            session,
            write=lines.append,
            conversation_id=args.resume,
            seed=args.seed,
            loader=loader,
            context_turns=args.context_turns,
        )
        assert repl.run() == 0
    assert loader.finish()
    return lines


def bot_lines(lines):
    return [line for line in lines if line.startswith("bot> ")]


def test_a_conversation_is_saved_turn_by_turn(tiny_model_dir, db_url):
    lines = chat(tiny_model_dir, db_url, "hello\n\nhow are you?\n" + CTRL_D)
    assert len(bot_lines(lines)) == 2  # the empty line did nothing
    assert lines[-1] == f"saved as conversation 1; continue with: chatbot chat --resume 1 --db {db_url}"  # the --db given
    store = ConversationStore(db_url)
    turns = store.turns(1)
    assert [(t.speaker, t.text) for t in turns[::2]] == [("user", "hello"), ("user", "how are you?")]
    assert [f"bot> {t.text}" for t in turns[1::2]] == bot_lines(lines)


def test_new_resume_and_history(scripted, db_url):
    chat_scripted(scripted, db_url, "first conversation\n/new\nsecond conversation\n/quit\n")
    store = ConversationStore(db_url)
    assert [s.title for s in store.list_conversations()] == ["second conversation", "first conversation"]

    lines = chat_scripted(scripted, db_url, "/resume 1\nback again\n/history\n" + CTRL_D)
    assert "resumed conversation 1 (2 turns); the last ones:" in lines
    assert "you> first conversation" in lines
    assert [t.text for t in store.turns(1)][::2] == ["first conversation", "back again"]
    history = [line for line in lines if line[:1].isdigit() and ". [" in line]
    assert len(history) == 4 and "user: back again" in history[2]
    assert "(model scripted" in history[3] and "seed" in history[3]


def test_resume_flag_continues_with_earlier_turns_in_context(scripted, db_url):
    chat_scripted(scripted, db_url, "one\ntwo\n" + CTRL_D)
    lines = chat_scripted(scripted, db_url, "three\n" + CTRL_D, "--resume", "1")
    assert lines[0] == "resumed conversation 1 (4 turns); the last ones:"
    turns = ConversationStore(db_url).turns(1)
    assert [t.speaker for t in turns] == ["user", "bot"] * 3
    texts = [t.text for t in turns]
    # the reply after resuming answers the whole stored history, not just "three"
    assert texts[5] == expected_reply(scripted, texts[:5]) and lines[-2] == f"bot> {texts[5]}"
    assert expected_reply(scripted, texts[:5]) != expected_reply(scripted, texts[4:5])  # the check can tell them apart


def test_settings_ctrl_c_and_errors_stay_in_the_loop(scripted, db_url):
    keys = "/temperature 0.5\n/temperature hot\nhalf a line" + CTRL_C + "/resume 99\n/bogus\n/sessions\n/help\n" + CTRL_D
    lines = chat_scripted(scripted, db_url, keys)
    assert "decoding: top-p 0.9 · temperature 0.5 · ≤40 tokens · no-repeat 3-gram · no earlier-reply 5-gram" in lines
    assert "error: usage: /temperature T with T > 0, got 'hot'" in lines
    assert any(line.startswith("error: no conversation with id 99") for line in lines)
    assert "unknown command /bogus; /help lists the commands" in lines
    assert "no conversations yet; start one with `chatbot chat`" in lines  # Ctrl-C dropped the half line
    assert any(line.startswith("commands:") for line in lines)
    assert ConversationStore(db_url).list_conversations() == []


def test_temperature_is_stored_with_the_reply(scripted, db_url):
    chat_scripted(scripted, db_url, "/temperature 0.5\nhi\n" + CTRL_D, "--seed", "3")
    bot = ConversationStore(db_url).turns(1)[1]
    assert '"temperature": 0.5' in bot.decoding and bot.seed == 3


def test_long_message_is_truncated_with_a_notice(scripted, db_url):
    lines = chat_scripted(scripted, db_url, "tell me " + "more " * 100 + "\n" + CTRL_D)
    total = len(scripted.tokenizer.encode("tell me " + " ".join(["more"] * 100)))
    assert f"(note: the model reads the first 22 of this message's {total} tokens; the rest does not reach it)" in lines
    assert not any("(note:" in line for line in chat_scripted(scripted, db_url, "hi there\n" + CTRL_D))
    assert len(bot_lines(lines)) == 1


def test_unknown_resume_id_fails_before_loading(tmp_path, db_url):
    from chatbot.errors import ConversationNotFoundError, StorageError

    args = build_parser().parse_args(["chat", "--model", str(tmp_path / "none"), "--db", db_url, "--resume", "7"])
    with pytest.raises(StorageError, match="no such database"):  # resuming creates no database (issue 27, item 10)
        run_chat(args)
    assert not (tmp_path / "chat.db").exists()
    ConversationStore(db_url).close()
    with pytest.raises(ConversationNotFoundError, match="no conversation with id 7"):
        run_chat(args)


def test_settings_commands_change_decoding_for_the_rest_of_the_conversation(scripted, db_url):
    keys = "/greedy\nhello\n/beam 3\nhow are you?\n/top-k 5\n/top-p 0.5\n/sample\n/temperature 1.2\n/settings\nbye\n/beam x\n" + CTRL_D
    lines = chat_scripted(scripted, db_url, keys)
    settings = [line for line in lines if line.startswith("decoding: ")]
    assert settings[0].startswith("decoding: greedy · ≤40 tokens")
    assert settings[1].startswith("decoding: beam 3 · length penalty 1.0")
    assert settings[2].startswith("decoding: top-k 5 · temperature 0.8")
    assert settings[3].startswith("decoding: top-p 0.5 · temperature 0.8")
    assert settings[4].startswith("decoding: sampling · temperature 0.8")
    assert settings[5] == settings[6]  # /settings shows what /temperature set
    assert settings[5].startswith("decoding: sampling · temperature 1.2")
    assert "error: usage: /beam N with N >= 1, got 'x'" in lines
    stored = [json.loads(t.decoding) for t in ConversationStore(db_url).turns(1) if t.speaker == "bot"]
    assert [d["sampler"] for d in stored] == ["greedy", "beam", "sample"]
    assert stored[1]["num_beams"] == 3 and stored[2]["temperature"] == 1.2


def test_candidates_are_shown_and_the_pick_is_stored(scripted, db_url):
    lines = chat_scripted(scripted, db_url, "/candidates 3\nhello there\nseven\n2\n" + CTRL_D, "--seed", "4")
    shown = [line for line in lines if line.startswith("  ") and ". " in line and "(score " in line]
    assert [line.split(".")[0].strip() for line in shown] == ["1", "2", "3"]
    assert "type a number from 1 to 3, or Enter for 1" in lines  # "seven" is not a choice
    picked = shown[1].split(". ", 1)[1].rsplit("   (score", 1)[0]
    assert bot_lines(lines) == [f"bot> {picked}"]
    bot = ConversationStore(db_url).turns(1)[1]
    assert bot.text == picked and bot.seed == 4
    assert json.loads(bot.decoding)["chosen"] == 1 and json.loads(bot.decoding)["num_return_sequences"] == 3
    history = chat_scripted(scripted, db_url, "/history\n" + CTRL_D, "--resume", "1")
    assert any("picked 2 of 3" in line and picked in line for line in history)


def test_retry_keeps_the_earlier_reply_as_an_alternative(scripted, db_url):
    lines = chat_scripted(scripted, db_url, "/retry\nhello there\n/retry\n/retry\n" + CTRL_D, "--seed", "8")
    assert "error: nothing to retry yet: send a message first" in lines
    replies = bot_lines(lines)
    assert len(replies) == 3
    store = ConversationStore(db_url)
    path = store.turns(1)
    assert [t.speaker for t in path] == ["user", "bot"] and f"bot> {path[1].text}" == replies[-1]
    kept = store.alternatives(path[1].id)
    assert [f"bot> {t.text}" for t in kept] == replies and len({t.seed for t in kept}) == 3
    assert [t.active for t in kept] == [False, False, True]
    history = chat_scripted(scripted, db_url, "/history\n" + CTRL_D, "--resume", "1")
    assert any("2 alternatives here, on branches 1, 2" in line for line in history)


def test_edit_branches_switch_and_title(scripted, db_url):
    keys = (
        "/edit\n/branches\nhello there\nwhat is your name?\n/edit where do you live?\n/branches\n"
        "/switch 9\n/switch 1\n/title\n/title  Names   and places \n" + CTRL_D
    )
    lines = chat_scripted(scripted, db_url, keys, "--seed", "3")
    assert "error: nothing to edit yet: send a message first" in lines
    assert "error: no branches yet" in lines
    switched = lines.index("switched to branch 1 (4 turns); the last ones:")
    assert len(bot_lines(lines[:switched])) == 3
    assert lines[switched + 3] == "you> what is your name?"
    assert "(your earlier message is kept on another branch: what is your name?; /branches lists them)" in lines
    listing = [line for line in lines if line[:4] in ("* 1.", "  1.", "* 2.", "  2.")]
    assert listing[0].startswith("  1. 4 turns · differs from turn 3: what is your name?")
    assert listing[1].startswith("* 2. 4 turns · the active path · ends bot: ")
    assert "error: usage: /switch N with N from 1 to 2 (see /branches)" in lines
    assert "title: hello there" in lines and "title: Names and places" in lines

    store = ConversationStore(db_url)
    path = store.turns(1)
    assert [t.text for t in path][:3] == ["hello there", path[1].text, "what is your name?"]  # branch 1 is active again
    edited = store.alternatives(path[2].id)
    assert [t.text for t in edited] == ["what is your name?", "where do you live?"]
    assert store.get_conversation(1).title == "Names and places"
    replay = chat_scripted(scripted, db_url, "/history\n" + CTRL_D, "--resume", "1")
    assert any("1 alternative here, on branch 2" in line for line in replay)


def test_edit_without_text_prefills_the_last_message(scripted, db_url):
    # Enter on the prefilled prompt would resend it; typing over it (Ctrl-U clears the line) replaces it.
    lines = chat_scripted(scripted, db_url, "hello there\n/edit\n\x15good morning\n" + CTRL_D, "--seed", "4")
    assert len(bot_lines(lines)) == 2
    texts = [t.text for t in ConversationStore(db_url).turns(1)]
    assert texts[0] == "good morning" and len(texts) == 2


def test_a_corrupt_model_fails_with_one_line_and_stores_nothing(tmp_path, tiny_model_dir, db_url):
    import shutil

    from chatbot.errors import CheckpointError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="cannot load the model"):
        chat(broken, db_url, "hello\n" + CTRL_D)
    assert ConversationStore(db_url).list_conversations() == []


# --- a file or pipe on stdin: the transcript shows what was stored -------------------------------

COLOURED = "hi \x1b[31mred\x1b[0m  there\n/bogus\x1b[0m\n"


def test_piped_lines_are_echoed_as_stored_without_escape_codes(scripted, db_url):
    # In process, fast: the same LineInput a pipe gets, over the scripted model.
    lines: list[str] = []
    manager = DialogueManager.open(db_url)
    manager.attach(scripted)
    source = LineInput(io.BytesIO(COLOURED.encode()), write=lines.append)
    assert ChatREPL(manager, decoding_from_args(build_parser().parse_args(["chat"])), source, write=lines.append).run() == 0
    assert [line for line in lines if line.startswith("you> ")] == ["you> hi red there", "you> /bogus"]
    assert "unknown command /bogus; /help lists the commands" in lines
    assert not any("\x1b" in line for line in lines), lines
    assert [t.text for t in ConversationStore(db_url).turns(1)][0] == "hi red there"  # the echo is the stored text


@pytest.mark.slow
def test_piped_chat_prints_a_transcript_without_control_codes(tiny_model_dir, db_url, tmp_path):
    # The real command with a pipe on stdin (not a terminal), as `printf … | chatbot chat` runs it.
    environment = {**os.environ, "CHATBOT_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "chatbot", "chat", "--model", str(tiny_model_dir), "--db", db_url, "--seed", "1"]
    result = subprocess.run(command, input=COLOURED.encode(), capture_output=True, env=environment, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.decode()
    assert "\x1b" not in out, out
    assert [line for line in out.splitlines() if line.startswith("you> ")] == ["you> hi red there", "you> /bogus"]
    assert ConversationStore(db_url).turns(1)[0].text == "hi red there"


def test_one_seed_replays_a_whole_chat_and_no_seed_does_not(scripted, tmp_path):
    """`--seed S` seeds the first reply and the generator of every later reply's seed (and /retry's), so the same
    messages get the same replies: the README's chat is replayed so by the documentation test."""
    keys = "hello\nhow are you?\n/retry\nbye\n" + CTRL_D

    def seeds(name: str, *extra: str) -> list[int]:
        url = f"sqlite:///{tmp_path / name}"
        chat_scripted(scripted, url, keys, "--sampler", "sample", *extra)
        store = ConversationStore(url)
        return [t.seed for t in store.tree(1) if t.speaker == "bot"]

    first, again = seeds("a.db", "--seed", "7"), seeds("b.db", "--seed", "7")
    assert len(first) == 4 and first == again and first[0] == 7 and len(set(first)) == 4
    assert seeds("c.db", "--seed", "8")[1:] != first[1:]  # later seeds follow the given one
