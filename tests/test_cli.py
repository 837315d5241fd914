"""The `chatbot` command line: real subprocess runs where the exit code and stderr matter."""

import os
import subprocess
import sys

import pytest

from chatbot.cli.parser import main
from chatbot.corpus import SPLITS
from chatbot.errors import ModelNotFoundError
from chatbot.inference.checkpoint import SHIPPED_MODEL_DIR, find_default_model
from chatbot.storage import ConversationStore
from tests.conftest import CORPORA, REPO


def run(*args, env=None, input=None):
    # The launcher runs the first python3 on PATH (as in an activated virtualenv): make it this one.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    environment = {**os.environ, "PATH": path, **(env or {})}
    return subprocess.run(
        [os.path.join(REPO, "bin", "chatbot"), *args], capture_output=True, text=True, env=environment, timeout=300, input=input
    )


@pytest.mark.slow
def test_replay_prints_every_turn_with_its_settings(tiny_checkpoint, db_url, capsys):
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.inference.decoding import DecodingConfig
    from chatbot.inference.generation import ReplyGenerator
    from chatbot.inference.responder import default_context_turns

    # The two replies run eagerly (the graphs' own code, op by op): replay prints a reply's settings the same
    # whichever way it was made, and two eager replies cost less than compiling the graphs for them.
    shape = (default_context_turns(tiny_checkpoint), tiny_checkpoint.model_config.max_utterance_length)
    generator = ReplyGenerator(tiny_checkpoint.model, shape, compiled=False)
    manager = DialogueManager(ConversationStore(db_url), tiny_checkpoint, generator=generator)
    conversation = manager.start()
    manager.answer(conversation.id, "hello there", DecodingConfig(), seed=21)
    manager.answer(conversation.id, "what is new?", DecodingConfig(temperature=0.6), seed=22)

    assert main(["replay", str(conversation.id), "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"conversation {conversation.id} · hello there · started ")
    assert "4 turns" in lines[0]
    assert lines[1].endswith("user: hello there")
    assert "bot: " in lines[2] and "(model tiny (" in lines[2]
    assert "top-p 0.9 · temperature 0.8 · ≤40 tokens · no-repeat 3-gram · no earlier-reply 5-gram · seed 21" in lines[2]
    assert "temperature 0.6" in lines[4] and "seed 22" in lines[4]

    assert main(["sessions", "--db", db_url]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["id", "started", "(UTC)"]
    assert listing[1].split()[0] == str(conversation.id) and " 4 " in listing[1] and "hello there" in listing[1]


def test_unknown_id_is_one_line_and_nonzero(db_url):
    result = run("replay", "999", "--db", db_url)  # issue 27, item 10: a missing database is not created
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no such database" in result.stderr
    ConversationStore(db_url).close()
    result = run("replay", "999", "--db", db_url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"chatbot: error: no conversation with id 999 in {db_url.removeprefix('sqlite:///')} (never created, or deleted); "
        "`chatbot sessions list` shows the stored ones"
    ]


@pytest.mark.slow
def test_malformed_corpus_exits_nonzero_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('["a", "b"]\n["c", "d"]\n{not json}\n')
    result = run("corpus", "validate", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}:3: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert lines[1] == f"{path} (format jsonl): 2 dialogues, 4 turns, 1 malformed records skipped"
    assert "Traceback" not in result.stderr
    # Training stops at the first malformed record, with the same line.
    result = run("train", "--corpus", str(path), "--out", str(tmp_path / "model"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"{path}:3: invalid JSON (Expecting property name enclosed in double quotes at column 2)")
    assert not (tmp_path / "model").exists()  # nothing written, so a fixed corpus trains into the same --out


def test_corpus_stats_per_split(capsys):
    assert main(["corpus", "stats", f"{CORPORA}/sample.jsonl", "--vocabulary-size", "100"]) == 1
    assert "--vocabulary-size 100 is too small for this corpus" in capsys.readouterr().err
    assert main(["corpus", "stats", f"{CORPORA}/sample.jsonl", "--vocabulary-size", "400"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()[0] in SPLITS}
    assert set(rows) == {"train", "valid", "test"}
    assert sum(int(r[1]) for r in rows.values()) == 3  # dialogues
    assert sum(int(r[2]) for r in rows.values()) == 4 + 4 + 4  # turns


def test_without_any_model_the_message_says_which_command_trains_one(tmp_path, monkeypatch):
    # A checkout always has the shipped model, so the no-model path is reached by pointing past it.
    monkeypatch.setenv("CHATBOT_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no trained model in .*chatbot train --corpus chitchat --model hred"):
        find_default_model(shipped=tmp_path / "not-shipped")
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "mine" / "model.keras").write_bytes(b"")
    assert find_default_model(shipped=tmp_path / "not-shipped") == tmp_path / "models" / "mine"
    assert find_default_model() == SHIPPED_MODEL_DIR  # the shipped model comes before the user's models


def test_bad_database_file_is_one_line(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database" * 500)
    result = run("sessions", "--db", f"sqlite:///{path}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"chatbot: error: {path}: not a SQLite database (or corrupt); move it away or pass another --db"


def test_module_entry_point_shows_help():
    result = subprocess.run([sys.executable, "-m", "chatbot", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    for command in ("chat", "train", "corpus", "sessions", "replay"):
        assert command in result.stdout


@pytest.mark.slow
def test_leaving_the_chat_while_the_model_still_loads_exits_cleanly(tiny_model_dir, tmp_path):
    # End of input at once: the REPL ends while TensorFlow is still being imported in the loader
    # thread; the interpreter used to abort ("terminate called without an active exception", 134).
    result = run("chat", "--model", str(tiny_model_dir), "--db", f"sqlite:///{tmp_path / 'c.db'}", input="")
    assert result.returncode == 0, result.stderr[-500:]
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr


def test_train_flags_not_given_are_none_so_a_resumed_run_keeps_its_own():
    """`--resume` without `--epochs`/`--max-minutes` continues the run's planned epochs and budget
    (api.train reads them from its config.json): the parser must say they were not given."""
    from chatbot.cli.parser import build_parser

    args = build_parser().parse_args(["train", "--out", "m", "--resume"])
    assert args.epochs is None and args.max_minutes is None and args.seed is None
    assert build_parser().parse_args(["train", "--out", "m", "--epochs", "6"]).epochs == 6


@pytest.mark.parametrize(
    "argv",
    [["train", "--out", "m", "--max-min", "1"], ["corpus", "stats", "chitchat", "--corpus-w", "1"], ["replay", "1", "--regen"]],
)
def test_an_abbreviated_flag_is_refused_not_guessed(argv, capsys):
    """`--max-min` is not read as `--max-minutes`: a flag added later would change what an old command line means."""
    from chatbot.cli.parser import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and f"unrecognized arguments: {argv[-2] if argv[-1] == '1' else argv[-1]}" in capsys.readouterr().err


START = """
import sys
from chatbot.cli.native_logs import native_logs_silenced
from chatbot.inference.lean_import import skip_optional_imports
skip_optional_imports()  # what chatbot.cli.parser.main does (and each server worker) before TensorFlow starts
with native_logs_silenced():
    import keras
    import tensorflow as tf
    tf.get_logger().warning("a TensorFlow warning")
    tf.get_logger().error("a TensorFlow error")
    print("our own line", file=sys.stderr)
print(keras.backend.backend(), sorted(name for name in ("jax", "matplotlib") if name in sys.modules))
import jax, matplotlib.pyplot  # skipped for TensorFlow's and Keras's optional importers only
print("imported later")
"""


def start(**env: str) -> subprocess.CompletedProcess:
    """The START script in its own interpreter, stderr a pipe (as in a CI log), CHATBOT_DEBUG only from `env`."""
    environment = {name: value for name, value in os.environ.items() if name not in ("CHATBOT_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    done = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, env={**environment, **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("backend, imported", [("tensorflow", "[]"), ("jax", "['jax']")])
def test_a_start_is_quiet_and_skips_only_the_optional_jax_and_pyplot_imports_of_tensorflow_and_keras(backend, imported):
    # TensorFlow's native start-up lines go to fd 2, its Python logger's handler to the real stderr even while
    # fd 2 is silenced: both are dropped, its errors and ours still show. JAX and pyplot are not imported for
    # TensorFlow's and Keras's optional uses (about 1.2 CPU s less per start); the JAX backend still imports
    # JAX, and a program's own imports of both still work.
    done = start(KERAS_BACKEND=backend)
    assert done.stderr.splitlines() == ["ERROR:tensorflow:a TensorFlow error", "our own line"]
    assert done.stdout.splitlines() == [f"{backend} {imported}", "imported later"]


def test_chatbot_debug_shows_tensorflow_s_start_up_lines_and_warnings():
    debug = start(CHATBOT_DEBUG="1")
    assert "a TensorFlow warning" in debug.stderr and "cuda" in debug.stderr.lower()  # what a quiet start drops
