"""Corpus loading (`chatbot.corpus`): plain text and JSONL files, the bundled corpora, splits fixed by dialogue id,
merged speaker runs, and malformed files named by file and line."""

import json
from itertools import pairwise
from pathlib import Path

import pytest

from chatbot.corpus import load_corpus, split_of
from chatbot.corpus.dialogue import Utterance, merge_runs
from chatbot.errors import CorpusError
from tests.conftest import CORPORA


def test_text_file_parses_dialogues_with_alternating_speakers():
    corpus = load_corpus(f"{CORPORA}/sample.txt")
    assert [len(d.turns) for d in corpus.dialogues] == [5, 4, 4]
    first = corpus.dialogues[0].turns
    assert first[0] == Utterance("speaker1", "hi! how was your weekend?")
    assert [t.speaker for t in first] == ["speaker1", "speaker2"] * 2 + ["speaker1"]


def test_jsonl_reads_lists_objects_and_joins_same_speaker_runs():
    corpus = load_corpus(f"{CORPORA}/sample.jsonl")
    assert len(corpus.dialogues) == 3
    movie = corpus.dialogues[1]
    assert movie.id == "movie-night"
    # ana's two consecutive messages become one turn
    assert [t.speaker for t in movie.turns] == ["ana", "ben", "ana", "ben"]
    assert movie.turns[2].text == "the effects are amazing the story, not so much."


def test_chitchat_has_every_conversation_with_a_reply():
    corpus = load_corpus("chitchat")
    # 7,168 conversations ship; 3,150 hold one sender only (no reply) and one has no text.
    assert len(corpus.dialogues) == 4017
    assert all(len(d.turns) >= 2 for d in corpus.dialogues)
    assert all(a.speaker != b.speaker for d in corpus.dialogues for a, b in pairwise(d.turns))
    sizes = {name: len(corpus.split(name)) for name in ("train", "valid", "test")}
    assert sizes == {"train": 3621, "valid": 184, "test": 212}


@pytest.mark.parametrize("language", ["english", "japanese", "chinese"])
def test_chatterbot_languages(language):
    corpus = load_corpus(f"chatterbot:{language}")
    assert len(corpus.dialogues) > 100
    assert all(len(d.turns) >= 2 for d in corpus.dialogues)


def test_unknown_chatterbot_language_lists_the_choices():
    with pytest.raises(CorpusError, match="choose one of: .*english"):
        load_corpus("chatterbot:klingon")


def test_split_is_a_fixed_function_of_the_id():
    # Pinned: these must be the same on every machine and every run.
    assert [split_of(f"dialogue-{i}") for i in range(12)] == [split_of(f"dialogue-{i}") for i in range(12)]
    assert split_of("a07edb12-6b91-4138-b11e-02421888d699") == "train"
    shares = [split_of(str(i)) for i in range(20000)]
    assert 0.88 < shares.count("train") / 20000 < 0.92
    assert 0.04 < shares.count("valid") / 20000 < 0.06


def test_split_is_stable_across_loads_and_order():
    a = load_corpus(f"{CORPORA}/sample.jsonl")
    b = load_corpus(f"{CORPORA}/sample.jsonl")
    assert {d.id: d.split for d in a.dialogues} == {d.id: d.split for d in b.dialogues}


def test_merge_runs_joins_consecutive_messages():
    turns = [Utterance("a", "hi"), Utterance("a", "there"), Utterance("b", "yo"), Utterance("a", "ok")]
    assert merge_runs(turns) == (Utterance("a", "hi there"), Utterance("b", "yo"), Utterance("a", "ok"))


@pytest.mark.parametrize(
    "content, line, message",
    [
        ('["a", "b"]\n{"turns": ["x", "y"]\n', 2, "invalid JSON"),
        ('["a", "b"]\n["only one"]\n', 2, "at least two turns"),
        ('{"text": ["a", "b"]}\n', 1, "needs a 'turns' list"),
        ('["a", 5]\n', 1, "turn 2 must be a string"),
        ('["a", "  "]\n', 1, "turn 2 is empty"),
        ("42\n", 1, "expected a list of turns"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusError) as info:
        load_corpus(str(path))
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_malformed_text_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello\nhi\n\nalone\n\nfine\nok\n")
    with pytest.raises(CorpusError, match=rf"{path}:4: a dialogue with a single utterance"):
        load_corpus(str(path))
    path.write_bytes(b"hello\nhi \xff there\n")
    with pytest.raises(CorpusError, match=rf"{path}:2: not UTF-8"):
        load_corpus(str(path))
    path.write_bytes(b"hello\nbinary\x00junk\n")
    with pytest.raises(CorpusError, match=rf"{path}:2: control characters"):
        load_corpus(str(path))


def test_unknown_spec_and_format(tmp_path):
    with pytest.raises(CorpusError, match="not a registered name"):
        load_corpus("no-such-corpus")
    path = tmp_path / "dialogues.csv"
    path.write_text("a,b\n")
    with pytest.raises(CorpusError, match="unknown corpus format 'csv'"):
        load_corpus(str(path))
    path.write_text(json.dumps(["a", "b"]) + "\n")
    assert len(load_corpus(str(path), format="jsonl").dialogues) == 1


def test_a_missing_path_is_named_as_missing(tmp_path):
    """Issue 27, item 12: a spec whose path is missing says so, rather than that the spec is not FORMAT:PATH."""
    missing = tmp_path / "dd"
    for spec, format, says in (
        (f"dailydialog:{missing}", None, f"{missing}: no such file or directory (the dailydialog corpus named by"),
        (str(tmp_path / "mine.jsonl"), None, f"{tmp_path / 'mine.jsonl'}: no such file or directory (a corpus file named by"),
        (str(missing), "txt", f"{missing}: no such file or directory (the txt corpus named by"),
    ):
        with pytest.raises(CorpusError) as error:
            load_corpus(spec, format=format)
        assert str(error.value).startswith(says), error.value


def test_a_lookalike_file_names_its_format_and_the_spec_to_use(tmp_path):
    parlai = tmp_path / "chats.parlai"
    parlai.write_text((Path(CORPORA) / "parlai.txt").read_text())
    with pytest.raises(CorpusError) as error:
        load_corpus(str(parlai))
    assert (
        str(error.value)
        == f"{parlai}: looks like ParlAI dialog text (tab-separated text:/labels: fields, episode_done:True); read it with parlai:{parlai} (or --format parlai)"
    )
