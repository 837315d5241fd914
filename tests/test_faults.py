"""What people actually do to a chat: escape codes, Ctrl-C at any moment, files on stdin, long
pastes, databases that cannot be written. Nothing stored is lost and nothing prints a traceback.

The pty tests run the real `chatbot chat` over a pseudo-terminal (pexpect) with the tiny trained
model; the in-process ones drive ChatREPL with the scripted model (tests/scripted.py).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import pexpect
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import REPLIES, expected_reply, scripted_checkpoint

from chatbot.chat.repl import SETTINGS, ChatREPL, ModelLoader, changed_setting
from chatbot.chat.run import run_chat
from chatbot.chat.terminal import LineInput
from chatbot.cli.parser import build_parser
from chatbot.corpus import load_corpus
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ChatbotError, StorageError
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.generation import ReplyGenerator
from chatbot.storage import ConversationStore
from chatbot.text.messages import MAX_MESSAGE_CHARS, clean_message

REPO = Path(__file__).resolve().parent.parent
# The scripted model's five-reply table repeats within a chat: exact replies are the script's own, so the
# block on the bot's earlier n-grams (a default) is off where a test compares them.
GREEDY = DecodingConfig(sampler="greedy", no_earlier_reply_ngram=0)


# --- what a message becomes -------------------------------------------------------------------


@given(st.text())
def test_any_text_becomes_storable_text(text):
    cleaned = clean_message(text)
    assert len(cleaned.text) <= MAX_MESSAGE_CHARS
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") or ch.isspace() and ch != " " for ch in cleaned.text)
    cleaned.text.encode("utf-8")  # no lone surrogate: SQLite can store it
    assert clean_message(cleaned.text).text == cleaned.text  # cleaning twice changes nothing


def test_escape_codes_and_controls_are_removed_and_the_words_kept():
    assert clean_message("colour \x1b[31mred\x1b[0m text").text == "colour red text"
    assert clean_message("\x1b[200~pasted\x1b[201~").text == "pasted"
    assert clean_message("nul\x00 bell\x07 c1\x85 \ud800ok").text == "nul bell c1 ok"
    long = clean_message("word " * 20_000)
    assert len(long.text) == MAX_MESSAGE_CHARS and long.cut == len(("word " * 20_000).strip()) - MAX_MESSAGE_CHARS


# --- the command parser and the corpus readers, fuzzed -------------------------------------------


@given(st.sampled_from(sorted(SETTINGS)), st.text(max_size=20))
def test_a_settings_command_gives_settings_or_one_line(name, argument):
    try:
        decoding = changed_setting(DecodingConfig(), name, argument)
    except ChatbotError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("usage: ", "--"))  # the usage, or the option's range
    else:
        assert isinstance(decoding, DecodingConfig)


# A file name each format's reader expects, so the fuzz reaches past "not this file".
FORMAT_FILES = {
    "txt": "corpus.txt",
    "jsonl": "corpus.jsonl",
    "dailydialog": "dialogues_train.txt",
    "cornell": "movie_lines.txt",
    "ubuntu": "train.csv",
    "parlai": "episodes.txt",
    "convokit": "utterances.jsonl",
    "personachat": "train_self_original.txt",
}


@settings(max_examples=48, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), format=st.sampled_from(sorted(FORMAT_FILES)), bom=st.booleans())
def test_every_reader_gives_dialogues_or_one_line_on_any_bytes(data, format, bom):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FORMAT_FILES[format]
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        if format == "cornell":  # its reader needs both files; fuzz the lines file
            (Path(folder) / "movie_conversations.txt").write_bytes(b"u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L1', 'L2']\n")
        try:
            dialogues = load_corpus(f"{format}:{path}").dialogues
        except ChatbotError as exc:
            assert "\n" not in str(exc) and str(Path(folder)) in str(exc)
        else:
            assert all(len(d.turns) >= 2 and all(t.text for t in d.turns) for d in dialogues)


# --- Ctrl-C and unanswered messages (in process) -------------------------------------------------


class InterruptOnce:
    """The scripted model, but the first reply is interrupted as by Ctrl-C while it is generated."""

    def __init__(self, model):
        self.model, self.interrupted = model, False
        self.vocabulary_size, self.latent_dim = model.vocabulary_size, 0

    def encode_context(self, context_tokens):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return self.model.encode_context(context_tokens)

    def decode_step(self, token_ids, state):
        return self.model.decode_step(token_ids, state)


def run_lines(manager, lines: list[str], loader=None, **kwargs) -> list[str]:
    written: list[str] = []
    source = LineInput(io.BytesIO("".join(line + "\n" for line in lines).encode()), write=written.append)
    ChatREPL(manager, GREEDY, source, write=written.append, loader=loader, **kwargs).run()
    return written


@pytest.fixture
def checkpoint(tmp_path):
    return scripted_checkpoint(tmp_path / "scripted")


def test_ctrl_c_mid_reply_keeps_the_message_and_retry_answers_it(db_url, checkpoint):
    generator = ReplyGenerator(InterruptOnce(checkpoint.model), (5, 24), compiled=False)
    manager = DialogueManager.open(db_url)
    manager.attach(checkpoint, generator=generator)
    lines = run_lines(manager, ["hello", "/retry"])
    assert "(reply cancelled: your message is kept; /retry answers it)" in lines
    turns = manager.history(1)
    assert [(t.speaker, t.text) for t in turns] == [("user", "hello"), ("bot", expected_reply(checkpoint, ["hello"]))]

    # a conversation left with an unanswered message says so when resumed
    manager.store.add_turn(1, "user", "are you there?")
    resumed = run_lines(manager, [], conversation_id=1)
    assert "(your last message has no reply yet: /retry answers it)" in resumed


class InterruptedLoad:
    """A model load the person interrupts with Ctrl-C every time the chat waits for it."""

    def ready(self) -> bool:
        return False

    def result(self):
        raise KeyboardInterrupt

    def finish(self, compile_seconds: float = 5.0) -> bool:
        return True


def test_ctrl_c_while_loading_keeps_the_message_and_twice_gives_up_on_the_model(db_url):
    manager = DialogueManager.open(db_url)
    lines = run_lines(manager, ["first", "second", "third", "/history"], loader=InterruptedLoad())
    assert "(stopped waiting for the model: your message is kept and answered once the model is ready)" in lines
    assert "(model loading cancelled: your messages are kept; stored conversations can still be read)" in lines
    assert "(no model loaded: your message is kept; restart the chat and /retry answers it)" in lines
    assert [t.text for t in manager.history(1)] == ["first", "second", "third"]
    assert any("user: third" in line for line in lines)  # /history works without a model


def test_messages_of_only_escape_codes_are_refused_and_long_ones_cut_with_a_notice(db_url, checkpoint):
    manager = DialogueManager(DialogueManager.open(db_url).store, checkpoint)
    lines = run_lines(manager, ["\x1b[31m\x1b[0m", "x" * (MAX_MESSAGE_CHARS + 1000)])
    assert any(line.startswith("error: empty message") for line in lines)
    assert f"(note: your message has {MAX_MESSAGE_CHARS + 1000:,} characters; the first {MAX_MESSAGE_CHARS:,} are stored)" in lines
    assert len(manager.history(1)[0].text) == MAX_MESSAGE_CHARS


def test_a_load_that_fails_stores_nothing_and_the_chat_says_one_line(db_url):
    def load():
        raise StorageError("nothing to load")

    manager = DialogueManager.open(db_url)
    lines = run_lines(manager, ["hello"], loader=ModelLoader(load))
    assert "error: nothing to load" in lines and manager.sessions() == []


# --- storage faults before the prompt ------------------------------------------------------------


def chat_args(db: str, *extra: str):
    return build_parser().parse_args(["chat", "--model", "/nonexistent/model", "--db", db, *extra])


def test_a_read_only_database_is_refused_before_the_model_is_looked_at(tmp_path):
    path = tmp_path / "chat.db"
    ConversationStore(f"sqlite:///{path}").close()
    with pytest.raises(StorageError, match="read-only"):
        run_chat(chat_args(f"sqlite:///file:{path}?mode=ro&uri=true"))


def test_a_corrupt_database_is_refused_with_one_line(tmp_path):
    path = tmp_path / "chat.db"
    store = ConversationStore(f"sqlite:///{path}")
    for index in range(400):  # enough rows for several pages, so damage lands inside the file
        store.add_turn(store.create_conversation().id, "user", f"message {index} " * 20)
    store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[8192:16384] = b"\xff" * 8192  # overwrite two pages in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError) as raised:
        run_chat(chat_args(f"sqlite:///{path}"))
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


@pytest.mark.slow
def test_a_database_locked_by_another_writer_is_refused_with_one_line(tmp_path):
    path = tmp_path / "chat.db"
    ConversationStore(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with pytest.raises(StorageError, match="locked by another process"):
            run_chat(chat_args(f"sqlite:///{path}"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- files on stdin ------------------------------------------------------------------------------


def test_messages_from_a_file_on_stdin_are_all_answered_and_stored(tmp_path, tiny_model_dir, db_url, monkeypatch, capsys):
    # In process: `main` reads the real sys.stdin, here a file (not a terminal), as the installed command does.
    # The real process on a pipe and on --input FILE: tests/test_cli.py and test_kill_9_of_a_chat_... below.
    from chatbot.cli.parser import main

    messages = tmp_path / "notes.txt"
    messages.write_text("hello there\ncolour \x1b[31mred\x1b[0m text\n/history\nbye\n")
    with open(messages) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert not sys.stdin.isatty()
        assert main(["chat", "--model", str(tiny_model_dir), "--db", db_url, "--seed", "5"]) == 0
    result = capsys.readouterr()
    lines = result.out.splitlines()
    assert [line for line in lines if line.startswith("you> ")] == [
        "you> hello there",
        "you> colour red text",  # echoed as stored: no escape codes in a piped transcript
        "you> /history",
        "you> bye",
    ]
    assert len([line for line in lines if line.startswith("bot> ")]) == 3
    assert "\x1b[?" not in result.out and "Traceback" not in result.err  # no terminal control clutter
    stored = [(t.speaker, t.text) for t in ConversationStore(db_url).turns(1)]
    assert [text for speaker, text in stored if speaker == "user"] == ["hello there", "colour red text", "bye"]
    # --input FILE with --output jsonl: test_kill_9_of_a_chat_mid_conversation_keeps_every_committed_turn


# --- the real command over a pseudo-terminal -------------------------------------------------------


def spawn_chat(model_dir, db_url, home: Path, *extra: str) -> pexpect.spawn:
    # A pty answers no cursor-position request (CPR) as a terminal would; without this prompt-toolkit
    # waits for the answer and drops keys typed meanwhile, which no person at a terminal sees.
    env = dict(os.environ, CHATBOT_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "chatbot", "chat", "--model", str(model_dir), "--db", db_url, *extra],
        env=env,
        cwd=str(REPO),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 200),
    )
    child.logfile_read = open(home / "pty.log", "w")  # what the terminal showed, for a failing test
    child.expect("you>")
    return child


def leave(child: pexpect.spawn) -> str:
    child.expect("you>")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


def test_over_a_terminal_an_unwritable_database_stops_the_chat_before_the_prompt(tmp_path, tiny_model_dir):
    path = tmp_path / "chat.db"
    ConversationStore(f"sqlite:///{path}").close()
    env = dict(os.environ, CHATBOT_HOME=str(tmp_path), PROMPT_TOOLKIT_NO_CPR="1")
    db = f"sqlite:///file:{path}?mode=ro&uri=true"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "chatbot", "chat", "--model", str(tiny_model_dir), "--db", db],
        env=env,
        cwd=str(REPO),
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert child.before.strip() == f"chatbot: error: {path}: the database is read-only; check the file's permissions or pass another --db"


@pytest.mark.slow
def test_over_a_terminal_escape_codes_and_ctrl_c_at_the_pick(tmp_path, tiny_model_dir, db_url):
    # Ctrl-C while the model loads is test_a_real_ctrl_c_during_the_model_load_...: over a terminal it races
    # the load (the loader's TensorFlow import holds the GIL, so the signal is handled late), and a busy
    # machine often finished loading first.
    child = spawn_chat(tiny_model_dir, db_url, tmp_path, "--seed", "3")
    child.send("hello there\r")  # answered once the model has loaded
    child.expect_exact("bot> ")
    child.expect("you>")
    child.send("colour \x1b[31mred\x1b[0m text\r")  # what a copy from a coloured terminal pastes
    child.expect_exact("bot> ")
    child.expect("you>")
    child.send("/candidates 2\r")
    child.expect("you>")
    child.send("one more\r")
    child.expect_exact("pick 1-2")
    child.sendintr()
    child.expect_exact("pick cancelled: nothing stored")
    child.expect("you>")
    child.send("/retry\r")
    child.expect_exact("pick 1-2")
    child.send("2\r")
    child.expect_exact("bot> ")
    output = leave(child)
    assert "Traceback" not in output and "Unhandled exception" not in output
    turns = [(t.speaker, t.text) for t in ConversationStore(db_url).turns(1)]
    assert [t for t in turns if t[0] == "user"] == [("user", "hello there"), ("user", "colour red text"), ("user", "one more")]
    assert turns[-1][0] == "bot" and turns[-2] == ("user", "one more")  # the cancelled pick stored nothing; /retry did


@pytest.mark.parametrize("ready_before_the_next_line", [True, False], ids=["ready-then-typed", "typed-while-loading"])
def test_a_real_ctrl_c_during_the_model_load_keeps_the_message_and_answers_it_once_loaded(db_url, checkpoint, ready_before_the_next_line):
    """A real SIGINT, sent while the chat's main thread is blocked in the real ModelLoader's wait for a load
    running in its thread: the wait is interrupted, the message is kept, and it is answered first once the
    model is ready, whether the next line comes after the load or while it still runs (then that line
    waits for the model, and the kept message is answered before it). The load is held until the signal
    was handled, so the order is fixed, not raced."""
    import signal
    import threading
    import time

    assert threading.current_thread() is threading.main_thread(), "a signal is handled on the main thread only"
    release = threading.Event()

    def load():
        assert release.wait(60), "the chat never stopped waiting for the model"
        shape = (checkpoint.model_config.max_turns - 1, checkpoint.model_config.max_utterance_length)
        return checkpoint, ReplyGenerator(checkpoint.model, shape, compiled=False)

    sent = threading.Event()

    def interrupt_the_wait():
        """SIGINT (what Ctrl-C at a terminal sends) once the main thread is blocked in ModelLoader.result."""
        main_thread = threading.main_thread().ident
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            innermost = frame = sys._current_frames().get(main_thread)
            while frame is not None and frame.f_code is not ModelLoader.result.__code__:
                frame = frame.f_back
            if frame is not None and innermost.f_code.co_name == "wait":  # blocked in the loader's Event.wait
                os.kill(os.getpid(), signal.SIGINT)
                sent.set()
                return
            time.sleep(0.01)
        release.set()  # never waited: let the load end, and the assertions below say what happened

    loader = ModelLoader(load)
    manager = DialogueManager.open(db_url)
    written: list[str] = []

    def write(line: str) -> None:
        written.append(line)
        if line.startswith("(stopped waiting for the model"):
            if ready_before_the_next_line:
                release.set()
                assert loader.finish()  # the person types the next line after the model is ready
            else:
                threading.Timer(0.5, release.set).start()  # the next line is typed while the model still loads

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in the `chatbot` process
    interrupter = threading.Thread(target=interrupt_the_wait, daemon=True)
    interrupter.start()
    try:
        source = LineInput(io.BytesIO(b"hello\nhow are you?\n"), write=written.append)
        ChatREPL(manager, GREEDY, source, write=write, loader=loader).run()
    finally:
        interrupter.join(5)
        signal.signal(signal.SIGINT, previous)
    assert sent.is_set(), written
    waited = written.index("(loading the model …)")
    stopped = written.index("(stopped waiting for the model: your message is kept and answered once the model is ready)")
    assert waited < stopped and not any("cancelled" in line for line in written), written
    first = expected_reply(checkpoint, ["hello"])
    second = expected_reply(checkpoint, ["hello", first, "how are you?"])
    turns = [(t.speaker, t.text) for t in manager.history(1)]
    assert turns == [("user", "hello"), ("bot", first), ("user", "how are you?"), ("bot", second)]
    assert written.index(f"bot> {first}") > stopped


def test_replies_table_is_what_the_scripted_model_answers(checkpoint):
    assert expected_reply(checkpoint, ["hello"]) in REPLIES


# --- many writers, and kill -9 ------------------------------------------------------------------


@pytest.mark.slow
def test_four_writers_for_three_seconds_lose_and_reorder_nothing():
    result = subprocess.run(
        [sys.executable, "benchmarks/store_concurrency.py", "--processes", "4", "--seconds", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failures: 0" in result.stdout and "every committed turn stored, positions gap-free, integrity ok" in result.stdout


# The writers are forks of one process that imported the store once: importing it was nearly all of each
# writer's cost (half a second of CPU, twenty times). A writer commits and prints in a loop; the process it was
# forked from relays what it printed, until it is killed, then says "end".
WRITERS = """
import os, sys
from chatbot.storage import ConversationStore
for _ in sys.stdin:  # a line: one more writer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        printed = os.fdopen(write, "w")
        store = ConversationStore(sys.argv[1])
        conversation = store.create_conversation().id
        while True:
            turn = store.add_turn(conversation, "user", "a message that must survive " * 20)
            print(turn.id, file=printed, flush=True)  # printed only after the commit returned
    os.close(write)
    print(pid, flush=True)
    with os.fdopen(read) as printed:
        for line in printed:
            print(line, end="", flush=True)
    os.waitpid(pid, 0)
    print("end", flush=True)
"""


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_committed_turn(tmp_path):
    import random
    import signal
    import time

    url = f"sqlite:///{tmp_path / 'chat.db'}"
    ConversationStore(url).close()
    rng = random.Random(0)
    seen: set[int] = set()
    writers = subprocess.Popen([sys.executable, "-c", WRITERS, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for _ in range(20):
            writers.stdin.write("\n")
            writers.stdin.flush()
            writer = int(writers.stdout.readline())
            printed = [writers.stdout.readline()]  # the writer is committing from here on
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(writer, signal.SIGKILL)
            while (line := writers.stdout.readline()) not in ("end\n", ""):
                printed.append(line)
            assert line == "end\n", "the writers' parent ended"
            seen.update(int(line) for line in printed if line.strip())
        writers.stdin.close()
        assert writers.wait(60) == 0
    finally:
        writers.kill()  # a writer left running dies at its next print (its pipe's reader is gone)
        writers.wait()
    with sqlite3.connect(tmp_path / "chat.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in connection.execute("SELECT id FROM turns")}
    assert seen and seen <= stored


@pytest.mark.slow
def test_kill_9_of_a_chat_mid_conversation_keeps_every_committed_turn(tmp_path, tiny_model_dir, db_url):
    import signal
    import time

    messages = tmp_path / "messages.txt"
    messages.write_text("".join(f"message number {i}\n" for i in range(200)))
    env = dict(os.environ, CHATBOT_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    command = ["chat", "--model", str(tiny_model_dir), "--db", db_url, "--input", str(messages), "--output", "jsonl"]
    loading = subprocess.Popen(
        [sys.executable, "-m", "chatbot", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env
    )
    time.sleep(0.8)  # opening the database, importing TensorFlow: before any reply
    os.kill(loading.pid, signal.SIGKILL)
    loading.wait()
    chat = subprocess.Popen(
        [sys.executable, "-m", "chatbot", *command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env
    )
    records = []
    for line in chat.stdout:  # one JSON object per reply, written after its commit
        records.append(json.loads(line))
        if len(records) == 3:
            time.sleep(0.05)  # somewhere in the next reply or commit
            os.kill(chat.pid, signal.SIGKILL)
            break
    chat.wait()
    assert [(r["conversation_id"], r["position"]) for r in records] == [(1, 1), (1, 3), (1, 5)]
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = ConversationStore(db_url).turns(1)
    replies = [r["reply"] for r in records]
    assert [t.text for t in stored if t.speaker == "bot"][:3] == replies  # every reply shown was committed first
    assert [t.id for t in stored if t.speaker == "bot"][:3] == [r["turn_id"] for r in records]
    assert [t.text for t in stored if t.speaker == "user"][:3] == ["message number 0", "message number 1", "message number 2"]


# --- storage faults during a chat -------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_a_lock_and_a_deleted_file_during_a_chat_each_get_one_line(tmp_path, checkpoint):
    from sqlalchemy import event

    path = tmp_path / "chat.db"
    manager = DialogueManager(DialogueManager.open(f"sqlite:///{path}").store, checkpoint)
    before = run_lines(manager, ["hello"])
    assert f"bot> {expected_reply(checkpoint, ['hello'])}" in before

    # Full: SQLite's own page limit gives the same SQLITE_FULL a full disk gives.
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    manager.store.engine.dispose()
    limit = lambda connection, record: connection.execute(f"PRAGMA max_page_count={pages + 1}")  # noqa: E731
    event.listen(manager.store.engine, "connect", limit)
    lines = run_lines(manager, ["a long message " * 4000, "/history"], conversation_id=1)
    assert any(line.startswith("error: ") and "the disk is full" in line for line in lines), lines
    assert any("user: hello" in line for line in lines)  # /history still works: the REPL went on
    event.remove(manager.store.engine, "connect", limit)
    manager.store.engine.dispose()

    # Locked by another writer beyond the busy timeout (5 s): one line, and the next message is stored.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    lines = run_lines(manager, ["are you there?"], conversation_id=1)
    holder.execute("ROLLBACK")
    holder.close()
    assert any(line.startswith("error: ") and "locked by another process" in line for line in lines)
    run_lines(manager, ["and now?"], conversation_id=1)
    assert [t.text for t in manager.history(1) if t.speaker == "user"] == ["hello", "and now?"]

    # Deleted underneath: said, instead of writing into a file nobody will see again.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    lines = run_lines(manager, ["still here?"], conversation_id=1)
    assert any(line.startswith("error: ") and "deleted or moved" in line for line in lines)


# --- fuzzed: every REPL command line, and the renderers -------------------------------------------

COMMANDS = [
    "/resume",
    "/switch",
    "/title",
    "/top-k",
    "/top-p",
    "/beam",
    "/temperature",
    "/candidates",
    "/edit",
    "/retry",
    "/history",
    "/branches",
    "/sessions",
    "/new",
    "/settings",
    "/greedy",
    "/sample",
    "/help",
    "/bogus",
    "",
]


@pytest.fixture(scope="module")
def fuzz_repl(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    checkpoint = scripted_checkpoint(folder / "scripted")
    manager = DialogueManager.open(f"sqlite:///{folder / 'chat.db'}")
    shape = (checkpoint.model_config.max_turns - 1, checkpoint.model_config.max_utterance_length)
    manager.attach(checkpoint, generator=ReplyGenerator(checkpoint.model, shape, compiled=False))
    written: list[str] = []
    repl = ChatREPL(manager, GREEDY, LineInput(io.BytesIO(b""), write=None), write=written.append)
    repl.handle("hello there")
    return repl, written


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), argument=st.text(max_size=25))
def test_any_command_line_answers_or_says_one_line(fuzz_repl, command, argument):
    repl, written = fuzz_repl
    before = len(written)
    try:
        keep_going = repl.handle(f"{command} {argument}" if command else argument)
    except ChatbotError as exc:
        assert "\n" not in str(exc)
    else:
        assert keep_going or command == "" and argument.strip() in ("/quit", "/exit")
    assert all(isinstance(line, str) for line in written[before:])
    repl.decoding = GREEDY  # keep replies quick for the next example
    if repl.conversation_id is None:
        repl.handle("hello again")


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(turns=st.lists(texts, min_size=1, max_size=6), title=texts)
def test_transcripts_sessions_and_exports_render_any_stored_text(turns, title):
    from chatbot.chat.views import session_lines, transcript_lines
    from chatbot.dialogue.export import export_text

    store = ConversationStore("sqlite://")
    conversation = store.create_conversation().id
    for index, text in enumerate(turns):
        store.add_turn(conversation, "user" if index % 2 == 0 else "bot", text)
    if title.strip():
        store.rename_conversation(conversation, title)
    lines = transcript_lines(store.transcript(conversation, all_branches=True))
    assert len(lines) == len(turns) + 1 and all(text in "\n".join(lines) for text in turns)
    assert len(session_lines(store.list_conversations())) == 2
    for form in ("jsonl", "md", "txt"):
        assert "".join(export_text(store.active_paths(), form, store.models()))
    store.close()


class SlowGenerator:
    """The real generator, after `seconds` of pretended work: the first chat is still generating when the second writes."""

    def __init__(self, generator, seconds: float):
        self.generator, self.seconds = generator, seconds
        self.started = threading.Event()

    def candidates(self, *args, **kwargs):
        self.started.set()
        time.sleep(self.seconds)
        return self.generator.candidates(*args, **kwargs)


def test_two_chats_on_one_conversation_are_answered_in_turn(db_url, checkpoint):
    """The second chat's message waits for the first chat's reply, then is answered with it in its context."""
    from chatbot.inference.responder import make_generator

    slow = SlowGenerator(make_generator(checkpoint), 0.5)
    first = DialogueManager(DialogueManager.open(db_url).store, checkpoint, generator=slow)
    second = DialogueManager(DialogueManager.open(db_url).store, checkpoint)
    conversation = first.start().id
    answering = threading.Thread(target=first.answer, args=(conversation, "hello", GREEDY, 1))
    answering.start()
    slow.started.wait(10)  # the first chat is generating...
    reply = second.answer(conversation, "are you there?", GREEDY, seed=1).reply  # ...when the second one writes
    answering.join(10)
    said = ["hello", expected_reply(checkpoint, ["hello"]), "are you there?"]
    assert [t.text for t in first.history(conversation)] == [*said, expected_reply(checkpoint, said)] == [*said, reply.text]
    lines = run_lines(first, ["/retry"], conversation_id=conversation)  # nothing unanswered: a fresh alternative
    assert any(line.startswith("(the earlier reply is kept as an alternative") for line in lines)


def test_a_chat_that_finds_its_conversation_busy_stores_nothing_and_says_so(db_url, checkpoint):
    from chatbot.errors import ConversationBusyError

    manager = DialogueManager(DialogueManager.open(db_url).store, checkpoint, busy_wait=0.2)
    conversation = manager.start().id
    other = DialogueManager.open(db_url).store.tickets
    with other.turn(conversation, wait=1.0):  # another process is answering in this conversation
        with pytest.raises(ConversationBusyError, match="answering another message"):
            manager.answer(conversation, "hello", GREEDY, seed=1)
        assert manager.history(conversation) == []
        lines = run_lines(manager, ["hello"], conversation_id=conversation)
        assert any(line.startswith(f"error: conversation {conversation} is answering another message") for line in lines)
    assert manager.answer(conversation, "hello", GREEDY, seed=1).reply is not None  # free again
