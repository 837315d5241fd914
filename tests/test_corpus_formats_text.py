"""The line-based standard corpus formats: DailyDialog, ParlAI and PersonaChat, on the samples in corpora/."""

import codecs
import shutil
from pathlib import Path

import pytest

from chatbot.corpus import dailydialog, load_corpus, parlai, personachat
from chatbot.corpus.formats import Problems, ReadOptions
from chatbot.errors import CorpusError
from tests.conftest import CORPORA

DD = Path(CORPORA) / "dailydialog"
DD_TRAIN = DD / "train" / "dialogues_train.txt"
PARLAI = Path(CORPORA) / "parlai.txt"
PERSONACHAT = Path(CORPORA) / "personachat.txt"


def read(fmt, path, problems=None, **options):
    return list(fmt.FORMAT.read(Path(path), ReadOptions(**options), problems or Problems()))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def bom_crlf(source: Path, target: Path) -> Path:
    """A copy of `source` with a UTF-8 BOM and every line ended by CRLF."""
    text = source.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    return target


# DailyDialog


def test_dailydialog_folder_reads_the_official_split_with_acts_and_emotions():
    dialogues = read(dailydialog, DD)
    assert [d.id for d in dialogues] == [
        *(f"dailydialog:train:{n}" for n in range(1, 5)),
        "dailydialog:valid:1",
        "dailydialog:valid:2",
        "dailydialog:test:1",
        "dailydialog:test:2",
    ]
    assert [d.official_split for d in dialogues] == ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    assert [d.split for d in dialogues] == [d.official_split for d in dialogues]
    assert [len(d.turns) for d in dialogues] == [4, 4, 5, 3, 4, 2, 3, 4]
    first = dialogues[0].turns
    assert [t.text for t in first] == [
        "Excuse me , is this seat taken ?",
        "No , please sit down .",
        "Thanks . It ’ s so crowded this morning .",
        "The trains are always late on Mondays .",
    ]
    assert [t.speaker for t in first] == ["speaker1", "speaker2"] * 2
    assert [t.metadata for t in first] == [
        {"act": "question", "emotion": "no emotion"},
        {"act": "commissive", "emotion": "no emotion"},
        {"act": "inform", "emotion": "no emotion"},
        {"act": "inform", "emotion": "disgust"},
    ]
    # the CRLF line and the line ending "__eou__ " read like the others; UTF-8 text survives
    assert dialogues[1].turns[-1].text == "Sure , I will ."
    assert dialogues[2].turns[1].text == "A café au lait and a piece of apple pie , please ."
    assert dialogues[3].turns[1].metadata == {"act": "question", "emotion": "surprise"}


def test_dailydialog_loads_through_the_registry_and_a_bare_path_is_refused():
    corpus = load_corpus(f"dailydialog:{DD}")
    assert corpus.format == "dailydialog"
    assert {name: len(corpus.split(name)) for name in ("train", "valid", "test")} == {"train": 4, "valid": 2, "test": 2}
    assert sum(len(d.turns) for d in corpus.dialogues) == 29
    assert len(load_corpus(f"dailydialog:{DD_TRAIN}").dialogues) == 4
    for bare in (DD_TRAIN, DD):
        with pytest.raises(CorpusError, match="looks like") as caught:
            load_corpus(str(bare))
        assert f"dailydialog:{bare}" in str(caught.value)


def test_dailydialog_single_files_take_their_split_and_labels_from_their_names(tmp_path):
    lone = tmp_path / "dialogues_test.txt"
    shutil.copy(DD / "test" / "dialogues_test.txt", lone)
    dialogues = read(dailydialog, lone)
    assert [(d.id, d.official_split, len(d.turns)) for d in dialogues] == [
        ("dailydialog:test:1", "test", 3),
        ("dailydialog:test:2", "test", 4),
    ]
    assert all(t.metadata is None for d in dialogues for t in d.turns)  # no label files beside it

    text = write(
        tmp_path / "whole" / "dialogues_text.txt", "Hi , Tom ! __eou__ Hello , Ann . __eou__\nReady ? __eou__ Yes . __eou__ Go ! __eou__\n"
    )
    write(tmp_path / "whole" / "dialogues_act.txt", "1 1 \n2 4 3 \n")
    write(tmp_path / "whole" / "dialogues_emotion.txt", "4 4 \n0 0 6 \n")
    for path in (text, text.parent):  # the file, or the folder holding it
        dialogues = read(dailydialog, path)
        assert [(d.id, d.official_split) for d in dialogues] == [("dailydialog:text:1", None), ("dailydialog:text:2", None)]
        assert [t.text for t in dialogues[1].turns] == ["Ready ?", "Yes .", "Go !"]
        assert dialogues[1].turns[2].metadata == {"act": "directive", "emotion": "surprise"}


def test_dailydialog_malformed_lines_name_file_and_line(tmp_path):
    text = write(
        tmp_path / "dialogues_train.txt",
        "A . __eou__ B . __eou__\nno markers at all\nC . __eou__ __eou__ D . __eou__\nE \x00. __eou__ F . __eou__\nG . __eou__ H . __eou__ I . __eou__\nJ . __eou__ K . __eou__\n",
    )
    write(tmp_path / "dialogues_act_train.txt", "1 1\n1\n1 1\n1 1\n1 1\n1 1\n")
    with pytest.raises(CorpusError, match=r"dialogues_train.txt:2: no __eou__ marker"):
        read(dailydialog, text)
    problems = Problems(strict=False)
    dialogues = read(dailydialog, text, problems)
    assert [d.id for d in dialogues] == ["dailydialog:train:1", "dailydialog:train:6"]
    assert problems.count == 4
    assert [m.split(": ", 1)[0].rsplit("/", 1)[1] for m in problems.messages] == [f"dialogues_train.txt:{n}" for n in (2, 3, 4, 5)]
    assert "3 turns but 2 act labels" in problems.messages[3]


def test_dailydialog_bad_label_and_short_label_file(tmp_path):
    text = write(tmp_path / "dialogues_valid.txt", "A . __eou__ B . __eou__\nC . __eou__ D . __eou__\n")
    write(tmp_path / "dialogues_emotion_valid.txt", "0 9\n")
    problems = Problems(strict=False)
    assert read(dailydialog, text, problems) == []
    assert "dialogues_emotion_valid.txt:1: emotion label '9' is not one of 0-6" in problems.messages[0]
    assert "dialogues_valid.txt:2: no line for this dialogue in dialogues_emotion_valid.txt" in problems.messages[1]


def test_dailydialog_bom_and_crlf_read_the_same(tmp_path):
    for split in ("train", "validation", "test"):
        for source in (DD / split).iterdir():
            bom_crlf(source, tmp_path / split / source.name)
    assert read(dailydialog, tmp_path) == read(dailydialog, DD)
    assert [t.metadata for d in read(dailydialog, tmp_path) for t in d.turns] == [
        t.metadata for d in read(dailydialog, DD) for t in d.turns
    ]


def test_dailydialog_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "dialogues_text.txt"
    path.write_bytes(b"A . __eou__ B . __eou__\nCaf\xe9 . __eou__ Yes . __eou__\n")
    with pytest.raises(CorpusError, match=r"dialogues_text.txt:2: not UTF-8 text .*--encoding"):
        read(dailydialog, path)
    assert read(dailydialog, path, encoding="latin-1")[1].turns[0].text == "Café ."


def test_dailydialog_folder_without_dialogues_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="no dialogues"):
        read(dailydialog, tmp_path)


# ParlAI


def test_parlai_sample_episodes_turns_and_candidates():
    dialogues = read(parlai, PARLAI)
    assert [len(d.turns) for d in dialogues] == [6, 2, 4, 4, 3, 2]
    assert all(d.id.startswith("parlai:") and d.official_split is None for d in dialogues)
    first = dialogues[0]
    assert first.metadata == {"id": "sample_chat"}
    assert [t.speaker for t in first.turns] == ["speaker1", "speaker2"] * 3
    assert first.turns[1].metadata == {"candidates": ["what time is it?", "no, I burn water.", "yes, mostly pasta and soups."]}
    assert first.turns[5].metadata is None
    # escaped \n: one turn; escaped \t; an escaped pipe in a candidate; an escaped backslash
    assert (
        dialogues[1].turns[0].text == "your persona: i play the violin. your persona: i live by the sea. hi there! what do you do for fun?"
    )
    assert dialogues[2].turns[0].text == "the menu says: soup salad bread. which one?"
    assert dialogues[2].turns[1].metadata == {"candidates": ["the soup, please.", "either one | both", "no idea"]}
    assert dialogues[2].turns[3].text == "just water, the one marked \\ on the card."
    assert [t.text for t in dialogues[3].turns[:2]] == ["¿hablas español?", "un poco, ¡pero me encanta practicar!"]  # eval_labels
    assert [t.speaker for t in dialogues[4].turns] == ["speaker1", "speaker2", "speaker1"]  # a last line with no label
    assert dialogues[5].metadata == {"id": "sample_chat"}  # id: before text:


def test_parlai_loads_through_the_registry_and_a_bare_path_is_refused():
    corpus = load_corpus(f"parlai:{PARLAI}")
    assert corpus.format == "parlai" and len(corpus.dialogues) == 6
    assert sum(len(d.turns) for d in corpus.dialogues) == 21
    with pytest.raises(CorpusError, match="looks like") as caught:
        load_corpus(str(PARLAI))
    assert f"parlai:{PARLAI}" in str(caught.value)


def test_parlai_malformed_lines_are_reported_and_the_last_episode_is_kept(tmp_path):
    path = write(
        tmp_path / "episodes.txt",
        "text:hi\tlabels:hello\tepisode_done:True\n"
        "labels:no text here\tepisode_done:False\n"
        "text:one\tlabels:two\n"
        "text:three\tnot a field\tlabels:four\n"
        "text:five\\u0000\tlabels:six\n"
        "text:bad \x01 byte\tlabels:x\n"
        "text:seven\tlabels:eight|nine\n",
    )
    with pytest.raises(CorpusError, match=r"episodes.txt:2: no text: field"):
        read(parlai, path)
    problems = Problems(strict=False)
    dialogues = read(parlai, path, problems)
    assert [[t.text for t in d.turns] for d in dialogues] == [["hi", "hello"], ["one", "two", "five\\u0000", "six", "seven", "eight"]]
    assert [m.split(": ", 1)[0].rsplit(":", 1)[1] for m in problems.messages] == ["2", "4", "6"]
    assert "field 2 ('not a field') is not key:value" in problems.messages[1]
    assert "control characters" in problems.messages[2]


def test_parlai_episode_of_one_turn_is_skipped_quietly(tmp_path):
    path = write(tmp_path / "p.txt", "text:alone\tepisode_done:True\ntext:a\tlabels:b\tepisode_done:True\n")
    problems = Problems(strict=False)
    assert [[t.text for t in d.turns] for d in read(parlai, path, problems)] == [["a", "b"]]
    assert problems.count == 0


def test_parlai_bom_and_crlf_read_the_same(tmp_path):
    assert read(parlai, bom_crlf(PARLAI, tmp_path / "parlai.txt")) == read(parlai, PARLAI)


# PersonaChat


def test_personachat_sample_personas_turns_and_candidates():
    dialogues = read(personachat, PERSONACHAT)
    assert [len(d.turns) for d in dialogues] == [6, 4, 6, 3, 3]
    assert all(d.id.startswith("personachat:") and d.official_split is None for d in dialogues)
    first = dialogues[0]
    assert first.metadata == {
        "your_persona": ["i grow tomatoes on my balcony.", "i work nights at a bakery.", "my dog is called pepper."],
        "partner_persona": [],
    }
    assert [t.speaker for t in first.turns] == ["partner", "self"] * 3
    assert [t.text for t in first.turns[:2]] == ["hi , how is your evening going ?", "busy ! i am about to start my shift at the bakery ."]
    assert first.turns[0].metadata is None
    assert first.turns[1].metadata == {
        "candidates": ["i like trains .", "what is your name ?", "busy ! i am about to start my shift at the bakery ."]
    }
    assert dialogues[1].metadata == {
        "your_persona": ["i am learning to play chess.", "i have two sisters."],
        "partner_persona": ["i am a nurse.", "i run marathons."],
    }
    assert dialogues[2].turns[1].text == "soup , then a crème brûlée for dessert ."
    assert dialogues[2].turns[3].metadata is None  # a reply without candidates
    assert [t.speaker for t in dialogues[3].turns] == ["self", "partner", "self"]  # __SILENCE__ is no turn
    assert [t.speaker for t in dialogues[4].turns] == ["partner", "self", "partner"]  # the last line has no reply


def test_personachat_loads_through_the_registry_and_takes_the_split_from_the_file_name(tmp_path):
    corpus = load_corpus(f"personachat:{PERSONACHAT}")
    assert corpus.format == "personachat" and len(corpus.dialogues) == 5
    assert sum(len(d.turns) for d in corpus.dialogues) == 22
    with pytest.raises(CorpusError, match=f"looks like .*personachat:{PERSONACHAT}"):
        load_corpus(str(PERSONACHAT))
    for name, split in (("train_self_original.txt", "train"), ("valid_both_revised.txt", "valid"), ("test_none_original.txt", "test")):
        shutil.copy(PERSONACHAT, tmp_path / name)
        assert {d.split for d in read(personachat, tmp_path / name)} == {split}


def test_personachat_malformed_lines_are_reported(tmp_path):
    path = write(
        tmp_path / "pc.txt",
        "1 your persona: i like tea.\n2 hi\thello\nthree no number\tx\n3 \t\n4 how are you\x00?\tfine\n5 good\tgreat\n1 your persona: i like coffee.\n2 a\tb\n",
    )
    with pytest.raises(CorpusError, match=r"pc.txt:3: expected a line number"):
        read(personachat, path)
    problems = Problems(strict=False)
    dialogues = read(personachat, path, problems)
    assert [[t.text for t in d.turns] for d in dialogues] == [["hi", "hello", "good", "great"], ["a", "b"]]
    assert [d.metadata["your_persona"] for d in dialogues] == [["i like tea."], ["i like coffee."]]
    assert [m.split(": ", 1)[0].rsplit(":", 1)[1] for m in problems.messages] == ["3", "4", "5"]


def test_personachat_bom_and_crlf_read_the_same(tmp_path):
    assert read(personachat, bom_crlf(PERSONACHAT, tmp_path / "personachat.txt")) == read(personachat, PERSONACHAT)


# Sniffing


@pytest.mark.parametrize(
    ("fmt", "own"),
    [(dailydialog, [DD, DD_TRAIN, DD / "test" / "dialogues_test.txt"]), (parlai, [PARLAI]), (personachat, [PERSONACHAT])],
    ids=["dailydialog", "parlai", "personachat"],
)
def test_each_sniffer_knows_its_own_sample_only(fmt, own):
    assert all(fmt.FORMAT.sniff(path) for path in own)
    others = {DD, DD_TRAIN, PARLAI, PERSONACHAT} - set(own)
    for path in (Path(CORPORA) / "sample.txt", Path(CORPORA) / "sample.jsonl", Path(CORPORA), *others):
        assert not fmt.FORMAT.sniff(path), path


def test_sniffers_tell_lookalikes_apart_and_never_raise(tmp_path):
    ubuntu = write(tmp_path / "ubuntu.txt", "hi __eou__ __eot__ hello __eou__ __eot__\n")
    csv = write(tmp_path / "train.txt", "Context,Utterance,Label\nhi __eou__,hello __eou__,1\n")
    bom = bom_crlf(DD_TRAIN, tmp_path / "bom.txt")
    numbered = write(tmp_path / "fb.txt", "1 hello\thi there\n2 how are you\tfine\n1 next\tone\n")
    gap = write(tmp_path / "gap.txt", "1 hello\thi there\n5 how are you\tfine\n")
    assert not dailydialog.sniff(ubuntu) and not dailydialog.sniff(csv) and dailydialog.sniff(bom)
    assert personachat.sniff(numbered) and not personachat.sniff(gap)
    assert parlai.sniff(write(tmp_path / "id_first.txt", "id:task\ttext:hi\tlabels:yo\n"))
    assert not parlai.sniff(write(tmp_path / "no_labels.txt", "text:hi there\n"))
    for fmt in (dailydialog, parlai, personachat):
        assert not fmt.sniff(tmp_path / "missing.txt")
        assert not fmt.sniff(write(tmp_path / "empty.txt", ""))
