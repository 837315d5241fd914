"""Saved conversations as data: exact replay, comparison, branches, session management, export and
training on stored conversations, on real SQLite files.

Listing, search, rename, delete, export, branches and bad ids are storage and command logic: their
conversations are chatted with the scripted model (tests/scripted.py: the real generator, samplers and
manager over a fixed reply table) and the commands run in-process through `chatbot.cli.parser.main`. Exact
regeneration, comparison against another model, replay under other settings and fine-tuning use the
real tiny models of tests/conftest.py. `bin/chatbot` itself runs where its exit codes are the point.
Each module-scoped model keeps one compiled generator, so every decoding setting is compiled once here.
"""

import dataclasses
import io
import json
import os
import shutil
import sqlite3
import stat

import pytest
from scripted import scripted_checkpoint

from chatbot.cli.parser import main
from chatbot.corpus import load_corpus
from chatbot.dialogue.manager import DialogueManager
from chatbot.inference.checkpoint import Checkpoint, model_checksum
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.responder import make_generator
from chatbot.storage import ConversationStore
from tests.test_cli import run
from tests.test_store import snapshot, write_v1_database

MESSAGES = [
    ["hello there", "how are you?", "what do you like to do?"],
    ["good morning", "do you like music?"],
    ["what is your name?", "where do you live?", "tell me a joke"],
    ["hi", "is it raining?"],
    ["i like pizza", "what about you?", "really?"],
    ["goodbye", "see you tomorrow"],
]


@dataclasses.dataclass
class Model:
    """A checkpoint with one ReplyGenerator for every chat of this module (its XLA graphs compile once per setting)."""

    checkpoint: Checkpoint
    generator: object

    def chat(self, db_url, conversations=MESSAGES[:1], checkpoint: Checkpoint | None = None) -> DialogueManager:
        """`chatted` with this model (or `checkpoint`, a copy of it stored under another path)."""
        return chatted(checkpoint or self.checkpoint, db_url, conversations, self.generator)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Model:
    checkpoint = scripted_checkpoint(tmp_path_factory.mktemp("models") / "scripted")
    return Model(checkpoint, make_generator(checkpoint))


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Model:
    return Model(tiny_checkpoint, make_generator(tiny_checkpoint))


def chatted(checkpoint, db_url, conversations=MESSAGES[:1], generator=None) -> DialogueManager:
    """Store conversations as the chat does, with several samplers, a pick among candidates, a
    /retry and an /edit, so every kind of stored reply is exercised."""
    manager = DialogueManager(ConversationStore(db_url), checkpoint, generator=generator)
    settings = [DecodingConfig(), DecodingConfig(sampler="beam", num_beams=3, num_return_sequences=2), DecodingConfig(sampler="greedy")]
    for number, messages in enumerate(conversations):
        conversation = manager.start()
        for index, text in enumerate(messages):
            manager.answer(conversation.id, text, settings[index % len(settings)], seed=100 * number + index)
        if number == 0:
            manager.retry(conversation.id, DecodingConfig(num_return_sequences=2), seed=7, choose=lambda found: 1)  # /retry, picking 2
            manager.edit(conversation.id, "what do you do for fun?", DecodingConfig(top_p=0.5), seed=8)  # /edit
    return manager


def output_of(capsys, *argv) -> tuple[int, list[str]]:
    status = main(list(argv))
    return status, capsys.readouterr().out.splitlines()


def error_of(capsys, *argv) -> tuple[int, list[str], str]:
    """Exit status, stderr lines and stdout of `chatbot ARGV`, run in-process."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.err.splitlines(), captured.out


def read_only(db_url: str) -> tuple[str, str]:
    """The database's path and a read-only URL of it, as a copied or archived database is opened: no WAL beside it."""
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode=DELETE")
    return path, f"sqlite:///file:{path}?mode=ro&uri=true"


# --- with real models: exact regeneration, comparison, other settings, fine-tuning ---


@pytest.mark.slow
def test_regenerate_reproduces_every_reply_and_names_a_changed_model(tiny, tiny_model_dir, tiny_vhred_dir, tmp_path, db_url, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    copied = dataclasses.replace(tiny.checkpoint, path=model)  # the same files, so what load_checkpoint(model) gives
    assert copied.model_id == model_checksum(model)
    tiny.chat(db_url, checkpoint=copied).store.close()
    path, url = read_only(db_url)  # regeneration writes nothing: it works on a read-only database
    before = snapshot(path)
    status, lines = output_of(capsys, "replay", "1", "--regenerate", "--all-branches", "--db", url)
    assert status == 0, lines
    assert lines[-1] == "5 of 5 replies identical"  # 3 on the path, the first reply to the edited message and its retry
    assert sum(" identical  bot: " in line for line in lines) == 5
    assert sum(" identical  bot: " in line and "(off the active path)" not in line for line in lines) == 3
    assert any("(off the active path)" in line for line in lines)
    assert snapshot(path) == before

    shutil.copy(tiny_vhred_dir / "model.keras", model / "model.keras")  # same place, other weights
    status, lines = output_of(capsys, "replay", "1", "--regenerate", "--db", db_url)
    assert status == 1
    problems = [line for line in lines if "CANNOT REGENERATE" in line]
    assert len(problems) == 3 and "model model (" in problems[0] and f"at {model.resolve()} has changed since" in problems[0]
    assert lines[-1] == "0 of 3 replies identical, 3 could not be regenerated"

    shutil.rmtree(model)
    status, lines = output_of(capsys, "replay", "1", "--regenerate", "--db", db_url)
    assert status == 1 and "is missing; restore it there" in lines[1]


@pytest.mark.slow
def test_replay_against_another_model_side_by_side_in_md_and_json(scripted, tiny_vhred_dir, tmp_path, db_url, capsys):
    scripted.chat(db_url, MESSAGES[:2])
    stored = {c.id: [t for t in path if t.speaker == "bot"] for c, path in ConversationStore(db_url).active_paths()}
    report = tmp_path / "compare.json"
    status, lines = output_of(
        capsys, "replay", "--all", "--model", str(tiny_vhred_dir), "--greedy", "--format", "json", "--output", str(report), "--db", db_url
    )
    assert status == 0
    assert lines[0].startswith("comparing stored replies with model tiny-vhred (") and "greedy" in lines[0]
    data = json.loads(report.read_text())
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert [c["id"] for c in data["conversations"]] == [1, 2]
    for conversation in data["conversations"]:
        assert [t["stored"]["text"] for t in conversation["turns"]] == [t.text for t in stored[conversation["id"]]]
        for turn in conversation["turns"]:
            assert turn["new"]["text"] and turn["identical"] == (turn["new"]["text"] == turn["stored"]["text"])
            assert turn["context"][-1] in " ".join(lines)
    summary = data["summary"]
    assert summary["conversations"] == 2 and summary["replies"] == sum(len(v) for v in stored.values())
    assert 0 <= summary["new"]["distinct_2"] <= 1 and summary["new"]["mean_length_words"] > 0
    assert any(line.startswith(f"{summary['replies']} replies in 2 conversations · identical") for line in lines)

    markdown = tmp_path / "compare.md"
    assert (
        main(["replay", "2", "--model", str(tiny_vhred_dir), "--greedy", "--format", "md", "--output", str(markdown), "--db", db_url]) == 0
    )
    text = markdown.read_text()
    assert text.startswith("# Replay comparison: stored replies vs model tiny-vhred")
    assert "## Conversation 2: good morning" in text and "| turn | last message | stored reply | new reply | same |" in text
    assert stored[2][0].text.replace("|", "\\|") in text


@pytest.mark.slow
def test_the_stored_model_under_other_settings_is_deterministic(tiny, db_url, capsys):
    tiny.chat(db_url, MESSAGES[1:2])
    first = output_of(capsys, "replay", "1", "--beam", "2", "--db", db_url)
    second = output_of(capsys, "replay", "1", "--beam", "2", "--db", db_url)
    assert first == second and first[0] == 0
    assert first[1][0].startswith("comparing stored replies with the stored model · beam 2")


@pytest.mark.slow
def test_fine_tuning_on_stored_conversations(scripted, tiny_model_dir, tiny_checkpoint, tmp_path, db_url, capsys):
    scripted.chat(db_url, MESSAGES[:2])  # the corpus is the stored texts: any model may have chatted them
    out = tmp_path / "tuned"
    smallest = ["--epochs", "1", "--batch-size", "4", "--length-groups", "1"]
    status = main(["train", "--corpus", f"db:{db_url}", "--init-from", str(tiny_model_dir), "--out", str(out), *smallest])
    assert status == 0, capsys.readouterr().err
    from chatbot.inference.checkpoint import load_checkpoint, read_config

    tuned = load_checkpoint(out)
    assert read_config(out)[0] == tiny_checkpoint.model_config  # same architecture: every size kept
    assert tuned.tokenizer.vocabulary_size == tiny_checkpoint.tokenizer.vocabulary_size
    before, after = tiny_checkpoint.model.get_weights(), tuned.model.get_weights()
    assert len(before) == len(after)
    changed = sum(not (b == a).all() for b, a in zip(before, after, strict=True))
    # Started from the source (most weights moved only a little), then trained on the stored chats.
    assert changed > 0
    assert max(float(abs(b - a).max()) for b, a in zip(before, after, strict=True)) < 0.5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["corpus"] == f"db:{db_url}" and metrics["data"]["train_dialogues"] >= 1


@pytest.mark.slow
def test_a_chat_regenerates_exactly_including_replies_made_while_compiling(tiny_model_dir, db_url, capsys):
    from tests.test_repl import CTRL_D, chat

    chat(tiny_model_dir, db_url, "hello there\nwhat is your name?\n/beam 2\nwhere do you live?\n/retry\n" + CTRL_D, "--seed", "5")
    settings = [json.loads(t.decoding) for t in ConversationStore(db_url).tree(1) if t.speaker == "bot"]
    assert settings[0]["compiled"] is False  # the first reply ran eagerly while its graphs compiled
    from chatbot.inference.checkpoint import read_config

    window = read_config(tiny_model_dir)[0].max_turns - 1
    assert all(s["decoder_version"] == 2 and s["context_turns"] == window for s in settings), settings
    status, lines = output_of(capsys, "replay", "1", "--regenerate", "--all-branches", "--db", db_url)
    assert status == 0 and lines[-1] == "4 of 4 replies identical", lines


# --- stored conversations of the scripted model: printing, sessions, export ---------


def test_replay_marks_alternatives_and_prints_every_branch(scripted, db_url, capsys):
    scripted.chat(db_url)
    status, lines = output_of(capsys, "replay", "1", "--db", db_url)
    assert status == 0
    assert lines[0].endswith("· 6 turns · 3 branches")
    assert [line.split("] ")[1].split(":")[0] for line in lines[1:] if "] " in line] == ["user", "bot", "user", "bot", "user", "bot"]
    assert lines[5].startswith("5. [") and "user: what do you do for fun?" in lines[5]
    assert lines[6] == "   ↳ 1 alternative here, on branches 1, 2 (`chatbot replay --all-branches` or /branches shows them)"

    status, every = output_of(capsys, "replay", "1", "--all-branches", "--db", db_url)
    assert every[: len(lines)] == [
        line.replace("(`chatbot replay --all-branches` or /branches shows them)", "(shown below)") for line in lines
    ]
    assert "branch 1 · leaves the active path at turn 5 · 6 turns" in every
    assert "branch 2 · leaves the active path at turn 5 · 6 turns" in every
    branch_one = every[every.index("branch 1 · leaves the active path at turn 5 · 6 turns") + 1 :]
    assert "user: what do you like to do?" in branch_one[0] and "· greedy ·" in branch_one[1]
    branch_two = every[every.index("branch 2 · leaves the active path at turn 5 · 6 turns") + 1 :]
    assert "user: what do you like to do?" in branch_two[0] and "picked 2 of 2" in branch_two[1]

    assert output_of(capsys, "sessions", "show", "1", "--all-branches", "--db", db_url) == (0, every)


def test_sessions_list_search_rename_delete(scripted, db_url, capsys, monkeypatch):
    scripted.chat(db_url, MESSAGES[:3])
    status, lines = output_of(capsys, "sessions", "list", "--db", db_url)
    assert status == 0 and [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert lines[0].split()[:3] == ["id", "started", "(UTC)"]
    assert output_of(capsys, "sessions", "--db", db_url, "list", "--limit", "1")[1][1].split()[0] == "3"
    found = output_of(capsys, "sessions", "list", "--search", "MUSIC", "--db", db_url)[1]
    assert [line.split()[0] for line in found[1:]] == ["2"]
    assert output_of(capsys, "sessions", "list", "--search", "100%_", "--db", db_url)[1] == ["no conversation mentions '100%_'"]

    renamed = output_of(capsys, "sessions", "rename", "2", "Music", "talk", "--db", db_url)
    assert renamed == (0, ["conversation 2 is now titled: Music talk"])
    assert "Music talk" in output_of(capsys, "sessions", "list", "--db", db_url)[1][2]

    question = "delete conversation 2 (Music talk, 4 turns with all branches)? [y/N] "
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))  # the answer typed at the confirmation
    assert error_of(capsys, "sessions", "delete", "2", "--db", db_url) == (1, ["conversation 2 kept"], question)
    assert ConversationStore(db_url).get_conversation(2).title == "Music talk"
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    status, lines = output_of(capsys, "sessions", "delete", "2", "--db", db_url)
    assert status == 0 and lines == [question + "deleted conversation 2 (4 turns)"]
    assert output_of(capsys, "sessions", "delete", "1", "--yes", "--db", db_url) == (0, ["deleted conversation 1 (9 turns)"])
    assert [line.split()[0] for line in output_of(capsys, "sessions", "list", "--db", db_url)[1][1:]] == ["3"]
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as raw:
        assert raw.execute("SELECT DISTINCT conversation_id FROM turns").fetchall() == [(3,)]


def test_export_formats_and_the_jsonl_round_trip_keeps_speakers(scripted, tmp_path, db_url, capsys):
    scripted.chat(db_url, MESSAGES[:2])
    store = ConversationStore(db_url)
    paths = {c.id: path for c, path in store.active_paths()}

    exported = tmp_path / "sessions.jsonl"
    assert main(["sessions", "export", "--all", "--format", "jsonl", "--output", str(exported), "--db", db_url]) == 0
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [r["id"] for r in records] == ["session-1", "session-2"]
    assert records[0]["turns"][1]["model"] == "scripted" and records[0]["turns"][1]["seed"] == paths[1][1].seed

    corpus = load_corpus(str(exported))
    from_db = load_corpus(f"db:{db_url}")
    for loaded in (corpus, from_db):
        assert [d.id for d in loaded.dialogues] == ["session-1", "session-2"]
        for dialogue, path in zip(loaded.dialogues, paths.values(), strict=True):
            assert [(u.speaker, u.text) for u in dialogue.turns] == [(t.speaker, t.text) for t in path]

    assert main(["sessions", "export", "2", "--format", "txt", "--db", db_url]) == 0
    assert capsys.readouterr().out.splitlines() == [t.text for t in paths[2]]
    assert main(["sessions", "export", "1", "2", "--format", "md", "--db", db_url]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("## 1. hello there\n") and "\n## 2. good morning\n" in markdown
    assert f"**bot:** {paths[2][1].text}" in markdown and "seed 100" in markdown


def test_a_read_only_database_reads_and_replays_but_refuses_writes(scripted, db_url, capsys):
    scripted.chat(db_url).store.close()
    path, url = read_only(db_url)
    before = snapshot(path)
    status, lines = output_of(capsys, "sessions", "list", "--db", url)
    assert status == 0 and [line.split()[0] for line in lines[1:]] == ["1"]
    status, lines = output_of(capsys, "replay", "1", "--all-branches", "--db", url)
    assert status == 0 and "branch 2 · leaves the active path at turn 5 · 6 turns" in lines
    # (regenerating on a read-only database, with a real model: test_regenerate_reproduces_every_reply_and_names_a_changed_model)
    for argv in (["sessions", "rename", "1", "new title"], ["sessions", "delete", "1", "--yes"]):
        assert error_of(capsys, *argv, "--db", url) == (
            1,
            [f"chatbot: error: {path}: the database is read-only; check the file's permissions or pass another --db"],
            "",
        )
    assert snapshot(path) == before


# --- bad input: one line, nonzero exit, nothing changed ---------------------------


def test_unknown_and_deleted_ids_change_nothing(scripted, db_url, capsys):
    scripted.chat(db_url, MESSAGES[1:3])
    assert main(["sessions", "delete", "1", "--yes", "--db", db_url]) == 0
    capsys.readouterr()
    path = db_url.removeprefix("sqlite:///")
    before = snapshot(path)
    for argv in (
        ["sessions", "show", "1"],
        ["sessions", "rename", "1", "x"],
        ["sessions", "delete", "1", "--yes"],
        ["sessions", "export", "2", "1"],
        ["replay", "1"],
        ["replay", "9", "--regenerate"],
        ["replay", "2", "77", "--greedy"],
    ):
        number = "77" if "77" in argv else "9" if "9" in argv else "1"
        message = f"chatbot: error: no conversation with id {number} in {path} (never created, or deleted); `chatbot sessions list` shows the stored ones"
        assert error_of(capsys, *argv, "--db", db_url) == (1, [message], ""), argv
    result = run("replay", "2", "77", "--greedy", "--db", db_url)  # the last one again, through bin/chatbot
    assert (result.returncode, result.stderr.splitlines(), result.stdout) == (1, [message], "")
    assert snapshot(path) == before


def test_not_a_database(tmp_path, capsys):
    path = tmp_path / "notes.db"
    path.write_bytes(b"my notes, not a database\n" * 100)
    message = [f"chatbot: error: {path}: not a SQLite database (or corrupt); move it away or pass another --db"]
    result = run("sessions", "list", "--db", f"sqlite:///{path}")  # through bin/chatbot
    assert (result.returncode, result.stderr.splitlines(), result.stdout) == (1, message, "")
    for argv in (["replay", "1"], ["sessions", "export", "--all"]):
        assert error_of(capsys, *argv, "--db", f"sqlite:///{path}") == (1, message, ""), argv
    assert path.read_bytes() == b"my notes, not a database\n" * 100


def test_an_older_schema_is_upgraded_with_a_backup_by_any_command(tmp_path, capsys):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        write_v1_database(raw)
    os.chmod(path, 0o600)
    assert main(["sessions", "list", "--db", f"sqlite:///{path}"]) == 0
    captured = capsys.readouterr()
    backups = list(tmp_path.glob("old.db.v1-backup-*"))
    assert len(backups) == 1 and f"the previous file is kept as {backups[0]}" in captured.err
    assert [line.split()[0] for line in captured.out.splitlines()[1:]] == ["2", "1"]
    assert main(["replay", "1", "--db", f"sqlite:///{path}"]) == 0
    assert [line.split("] ")[1] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "user: hello",
        "bot: hi there",
        "user: how are you",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay"], "replay: give conversation ids or --all (not both)"),
        (
            ["replay", "1", "--regenerate", "--greedy"],
            "--regenerate uses the stored model and settings; leave out --model, --format and decoding flags",
        ),
        (["sessions", "export"], "export: give conversation ids or --all (not both)"),
        (["sessions", "list", "--limit", "0"], "--limit must be at least 1, got 0"),
    ],
)
def test_conflicting_options(db_url, capsys, argv, message):
    status, errors, _ = error_of(capsys, *argv, "--db", db_url)
    assert status == 1 and errors == [f"chatbot: error: {message}"]
