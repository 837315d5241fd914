"""The Cornell, Ubuntu and ConvoKit readers on the sample corpora in corpora/ (and malformed copies of them)."""

import codecs
import inspect
import shutil
from pathlib import Path

import pytest

from chatbot.corpus import convokit, cornell, load_corpus, ubuntu
from chatbot.corpus.formats import Problems, ReadOptions
from chatbot.errors import CorpusError
from tests.conftest import CORPORA

ROOT = Path(CORPORA)
CORNELL = ROOT / "cornell"
UBUNTU = ROOT / "ubuntu"
CONVOKIT = ROOT / "convokit"


def read(fmt, path, problems=None, **options):
    return list(fmt.FORMAT.read(Path(path), ReadOptions(**options), problems or Problems()))


def texts(dialogue):
    return [t.text for t in dialogue.turns]


def speakers(dialogue):
    return [t.speaker for t in dialogue.turns]


def copy(folder, tmp_path):
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def append(path, data: bytes):
    with path.open("ab") as handle:
        handle.write(data)


def bom_crlf(source: Path, target: Path, encoding: str = "utf-8") -> None:
    """`source` rewritten as UTF-8 with a byte-order mark and CRLF line ends."""
    text = source.read_bytes().decode(encoding).replace("\r\n", "\n").replace("\n", "\r\n")
    target.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))


# ---------------------------------------------------------------- Cornell


def test_cornell_reads_the_sample_conversations():
    corpus = load_corpus(f"cornell:{CORNELL}")
    assert corpus.format == "cornell"
    dialogues = corpus.dialogues
    assert [d.id for d in dialogues] == [
        "cornell:m0:L101",
        "cornell:m0:L110",
        "cornell:m0:L120",
        "cornell:m1:L201",
        "cornell:m1:L220",
        "cornell:m2:L301",
        "cornell:m2:L310",
    ]
    assert [len(d.turns) for d in dialogues] == [4, 3, 3, 3, 4, 3, 5]
    first = dialogues[0]
    assert texts(first) == ["Is the lamp lit yet?", "Not yet. The wick is damp.", "Then dry it, Theo. Ships are coming.", "Aye, aye."]
    assert speakers(first) == ["MARGOT", "THEO", "MARGOT", "THEO"]
    assert first.turns[1].metadata == {"line_id": "L102", "character_id": "u1"}
    assert first.metadata == {"movie_id": "m0", "movie_title": "the lighthouse keeper"}
    assert first.official_split is None  # the hash of the id decides


def test_cornell_quirks_consecutive_lines_empty_text_and_empty_name():
    dialogues = {d.id: d for d in read(cornell, CORNELL)}
    # MARGOT's two consecutive lines are one turn, which keeps the first line's metadata
    assert texts(dialogues["cornell:m0:L110"])[1] == "Only the wind. It always sounds like voices up here."
    assert dialogues["cornell:m0:L110"].turns[1].metadata == {"line_id": "L111", "character_id": "u0"}
    # a character without a name is called by its id
    assert speakers(dialogues["cornell:m0:L120"]) == ["u2", "MARGOT", "u2"]
    # L211 has an empty text: JULES's two lines around it merge into one turn, leaving no dialogue
    assert "cornell:m1:L210" not in dialogues


def test_cornell_decodes_latin1_and_encoding_overrides(tmp_path):
    raw = (CORNELL / "movie_lines.txt").read_bytes()
    assert "café".encode("iso-8859-1") in raw  # the sample really is Latin-1
    dialogues = {d.id: d for d in read(cornell, CORNELL)}
    assert texts(dialogues["cornell:m1:L201"])[:2] == ["Un café, s'il vous plaît.", "Coming right up, señora."]
    assert dialogues["cornell:m1:L201"].metadata["movie_title"] == "midnight at the café"
    # --encoding wins over the format's own: the Latin-1 bytes are no UTF-8
    with pytest.raises(CorpusError, match=r"movie_lines\.txt:14: not UTF-8 text .*--encoding"):
        read(cornell, CORNELL, encoding="utf-8")
    # a UTF-8 copy reads as mojibake by default, right with --encoding utf-8
    folder = copy(CORNELL, tmp_path)
    for path in folder.iterdir():
        path.write_bytes(path.read_bytes().decode("iso-8859-1").encode("utf-8"))
    assert texts(read(cornell, folder)[3])[0] == "Un cafÃ©, s'il vous plaÃ®t."
    assert texts(read(cornell, folder, encoding="utf-8")[3])[0] == "Un café, s'il vous plaît."


def test_cornell_path_may_be_either_file():
    expected = read(cornell, CORNELL)
    assert read(cornell, CORNELL / "movie_conversations.txt") == expected
    assert read(cornell, CORNELL / "movie_lines.txt") == expected
    assert [d.metadata for d in load_corpus(f"cornell:{CORNELL}/movie_lines.txt").dialogues] == [d.metadata for d in expected]


def test_cornell_needs_both_files(tmp_path):
    folder = copy(CORNELL, tmp_path)
    (folder / "movie_lines.txt").unlink()
    with pytest.raises(CorpusError, match="no movie_lines.txt"):
        read(cornell, folder / "movie_conversations.txt")


def test_cornell_malformed_records_name_file_and_line(tmp_path):
    folder = copy(CORNELL, tmp_path)
    append(folder / "movie_lines.txt", b"L400 +++$+++ u0 +++$+++ m0 +++$+++ only four fields\n")  # line 32
    append(folder / "movie_lines.txt", b"L401 +++$+++ u0 +++$+++ m0 +++$+++ MARGOT +++$+++ bell \x07 rings\n")  # line 33
    append(folder / "movie_conversations.txt", b"u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L101', 'L999']\n")  # line 9
    append(folder / "movie_conversations.txt", b"u0 +++$+++ u1 +++$+++ m0 +++$+++ L101 L102\n")  # line 10
    append(folder / "movie_conversations.txt", b"u0 +++$+++ u1 +++$+++ m0 +++$+++ ['L101', 'L401']\n")  # line 11: skipped, already reported
    with pytest.raises(CorpusError, match=r"movie_lines\.txt:32: expected 5 fields"):
        read(cornell, folder)
    problems = Problems(strict=False)
    assert len(read(cornell, folder, problems)) == 7  # the reader goes on
    assert problems.count == 4
    where = [m.split(": ")[0].rsplit("/", 1)[1] for m in problems.messages]
    assert where == ["movie_lines.txt:32", "movie_lines.txt:33", "movie_conversations.txt:9", "movie_conversations.txt:10"]
    assert "line id L999 is not in movie_lines.txt" in problems.messages[2]
    assert "control characters" in problems.messages[1]


def test_cornell_bom_and_crlf_read_the_same(tmp_path):
    folder = tmp_path / "cornell"
    folder.mkdir()
    for path in CORNELL.iterdir():
        bom_crlf(path, folder / path.name, encoding="iso-8859-1")  # the BOM says UTF-8, and wins over Latin-1
    assert read(cornell, folder) == read(cornell, CORNELL)


# ---------------------------------------------------------------- Ubuntu


def test_ubuntu_folder_has_official_splits_and_skips_label_0():
    corpus = load_corpus(f"ubuntu:{UBUNTU}")
    dialogues = corpus.dialogues
    assert [d.id for d in dialogues] == [
        *(f"ubuntu:train:{row}" for row in (1, 3, 4, 6, 7, 8)),  # rows 2, 5 and 9 are label 0.0
        *(f"ubuntu:valid:{row}" for row in (1, 2, 3)),
        *(f"ubuntu:test:{row}" for row in (1, 2)),
    ]
    assert {name: len(corpus.split(name)) for name in ("train", "valid", "test")} == {"train": 6, "valid": 3, "test": 2}
    assert [len(d.turns) for d in dialogues] == [4, 2, 4, 3, 4, 2, 3, 2, 2, 3, 2]
    everything = " ".join(t.text for d in dialogues for t in d.turns)
    assert "end of life" not in everything and "blue theme" not in everything and "python3" not in everything
    assert "__eou__" not in everything and "__eot__" not in everything


def test_ubuntu_turns_join_utterances_and_speakers_alternate():
    dialogues = {d.id: d for d in read(ubuntu, UBUNTU)}
    wifi = dialogues["ubuntu:train:1"]
    assert texts(wifi) == [
        "hi , my wifi stopped working after the upgrade",
        "which card do you have ?",
        "intel , i think lspci says 8265",  # two __eou__ utterances, one __eot__ turn
        "try sudo modprobe -r iwlwifi and then sudo modprobe iwlwifi again",
    ]
    assert speakers(wifi) == ["speaker1", "speaker2", "speaker1", "speaker2"]
    fan = dialogues["ubuntu:train:6"]
    assert speakers(fan) == ["speaker1", "speaker2", "speaker1"]  # the reply is the next speaker after the context's last turn
    assert texts(fan)[-1] == "top says firefox , 90 %"
    assert texts(dialogues["ubuntu:train:4"])[0] == 'anyone know why apt says "could not get lock" ?'  # quoted field, doubled quotes
    assert wifi.metadata is None and wifi.official_split == "train"


def test_ubuntu_keeps_distractors_of_valid_and_test():
    dialogues = {d.id: d for d in read(ubuntu, UBUNTU)}
    valid = dialogues["ubuntu:valid:1"]
    assert texts(valid) == [
        "is there a way to resize a partition without losing data ?",
        "gparted can do it from a live usb",
        "great , i will try that tonight",
    ]
    assert valid.official_split == "valid"
    assert len(valid.metadata["distractors"]) == 9
    assert valid.metadata["distractors"][:3] == ["reboot and see", "that is a kernel bug , file a report", 'type "ls -la" in the folder']
    test = dialogues["ubuntu:test:1"]
    assert test.official_split == "test" and len(test.metadata["distractors"]) == 9
    assert texts(test)[0] == 'what does "permission denied ( publickey )" mean ?'


def test_ubuntu_single_csv_takes_its_split_from_its_name(tmp_path):
    train = read(ubuntu, UBUNTU / "train.csv")
    assert [d.official_split for d in train] == ["train"] * 6
    assert [d.official_split for d in load_corpus(f"ubuntu:{UBUNTU}/test.csv").dialogues] == ["test", "test"]
    other = tmp_path / "chats.csv"
    other.write_text("Context,Utterance,Label\nhello __eou__ __eot__,hi __eou__,1\nhello __eou__ __eot__,bye __eou__,0\n")
    (dialogue,) = read(ubuntu, other)  # labels 1 and 0 count like 1.0 and 0.0
    assert (dialogue.id, dialogue.official_split, texts(dialogue)) == ("ubuntu:chats:1", None, ["hello", "hi"])


def test_ubuntu_reader_streams_and_reads_long_fields(tmp_path):
    assert inspect.isgenerator(ubuntu.FORMAT.read(UBUNTU / "train.csv", ReadOptions(), Problems()))
    long = tmp_path / "train.csv"
    context = "word " * 60_000  # 300 kB: past csv's default field size limit of 128 kB
    long.write_text(f'Context,Utterance,Label\n"{context}__eou__ __eot__",ok __eou__,1.0\n')
    (dialogue,) = read(ubuntu, long)
    assert len(dialogue.turns[0].text) == len(context) - 1


def test_ubuntu_malformed_rows_name_file_and_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "Context,Utterance,Label\n"
        "good __eou__ __eot__,fine __eou__,1.0\n"  # line 2
        "only two,columns\n"  # line 3
        "a __eou__ __eot__,b __eou__,yes\n"  # line 4
        '"multi\nline __eou__ __eot__",reply __eou__,maybe\n'  # lines 5-6: named by its first line
        "__eou__ __eot__,orphan reply __eou__,1.0\n"  # line 7: empty context
        "last __eou__ __eot__,one __eou__,1\n"  # line 8
    )
    with pytest.raises(CorpusError, match=r"train\.csv:3: expected 3 columns"):
        read(ubuntu, path)
    problems = Problems(strict=False)
    assert [texts(d) for d in read(ubuntu, path, problems)] == [["good", "fine"], ["last", "one"]]
    assert [m.split(": ")[0].rsplit("/", 1)[1] for m in problems.messages] == ["train.csv:3", "train.csv:4", "train.csv:5", "train.csv:7"]
    assert "label must be 1 or 0" in problems.messages[1] and "context is empty" in problems.messages[3]


def test_ubuntu_rejects_a_foreign_header_and_bad_bytes(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("Question,Answer\nwhy,because\n")
    with pytest.raises(CorpusError, match=r"train\.csv:1: not an Ubuntu Dialogue Corpus CSV"):
        read(ubuntu, path)
    path.write_bytes(b"Context,Utterance,Label\ncaf\xe9 __eou__ __eot__,oui __eou__,1.0\n")
    with pytest.raises(CorpusError, match=r"train\.csv:2: not UTF-8 text"):
        read(ubuntu, path)
    assert texts(read(ubuntu, path, encoding="latin-1")[0]) == ["café", "oui"]


def test_ubuntu_bom_lf_and_crlf_read_the_same(tmp_path):
    assert b"\r\n" in (UBUNTU / "train.csv").read_bytes()  # csv.writer's line ends, as in the real files
    folder = tmp_path / "ubuntu"
    folder.mkdir()
    for path in UBUNTU.iterdir():
        bom_crlf(path, folder / path.name)
    lf = tmp_path / "lf"
    lf.mkdir()
    for path in UBUNTU.iterdir():
        (lf / path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    assert read(ubuntu, folder) == read(ubuntu, UBUNTU) == read(ubuntu, lf)


# ---------------------------------------------------------------- ConvoKit


def test_convokit_longest_path_per_conversation():
    corpus = load_corpus(f"convokit:{CONVOKIT}")
    dialogues = corpus.dialogues
    # t3_d1 is a post nobody answered: one utterance, no dialogue
    assert [d.id for d in dialogues] == ["convokit:t3_a1", "convokit:t3_b1", "convokit:t3_c1", "convokit:t3_e1", "convokit:t3_f1"]
    assert [len(d.turns) for d in dialogues] == [4, 2, 4, 4, 4]
    bread = dialogues[0]
    assert speakers(bread) == ["alice", "bob", "alice", "bob"]  # the deeper of the two replies to the post
    assert texts(bread)[-1] == "Overnight, about twelve hours."
    assert bread.turns[1].metadata == {"utterance_id": "t1_a2"}
    assert bread.metadata == {"conversation_id": "t3_a1", "meta": {"title": "Bread for beginners", "subreddit": "Baking"}}
    # two chains of depth 3: the leaf with the earlier timestamp wins although it comes later in the file;
    # gina's empty comment is dropped from it
    assert speakers(dialogues[1]) == ["erin", "henry"]
    # ivan answering himself is one turn; t3_e1's last reply comes at the end of the file
    assert texts(dialogues[2])[2] == "Ok, will do. And thanks!"
    assert texts(dialogues[3])[-1] == "Then check for cracks near the welds first."


def test_convokit_all_paths():
    dialogues = read(convokit, CONVOKIT, convokit_paths="all")
    assert [d.id for d in dialogues] == [
        "convokit:t3_a1:t1_a5",
        "convokit:t3_a1:t1_a6",
        "convokit:t3_b1:t1_b4",
        "convokit:t3_b1:t1_b5",
        "convokit:t3_c1:t1_c5",
        "convokit:t3_e1:t1_e4",
        "convokit:t3_f1:t1_f3",
        "convokit:t3_f1:t1_f5",
    ]
    assert [len(d.turns) for d in dialogues] == [3, 4, 3, 2, 4, 4, 2, 4]
    deleted = dialogues[0]
    assert texts(deleted) == [
        "What's the best way to learn to bake bread?",
        "[deleted]",
        "Not sure why that got deleted, it was good advice.",
    ]
    assert speakers(deleted) == ["alice", "carol", "dave"]
    assert load_corpus(f"convokit:{CONVOKIT}", options=ReadOptions(convokit_paths="all")).dialogues == dialogues


def test_convokit_path_may_be_the_utterances_file():
    assert read(convokit, CONVOKIT / "utterances.jsonl") == read(convokit, CONVOKIT)


def test_convokit_older_field_names_and_ties_in_file_order(tmp_path):
    path = tmp_path / "utterances.jsonl"
    path.write_text(
        '{"id": "r", "user": "ann", "root": "r", "reply-to": null, "text": "which way?", "timestamp": 5}\n'
        '{"id": "x", "user": "bo", "root": "r", "reply-to": "r", "text": "left", "timestamp": 9}\n'
        '{"id": "y", "user": "cy", "root": "r", "reply-to": "r", "text": "right", "timestamp": 9}\n'
    )
    (dialogue,) = read(convokit, path)
    assert (dialogue.id, speakers(dialogue), texts(dialogue)) == ("convokit:r", ["ann", "bo"], ["which way?", "left"])
    assert dialogue.metadata == {"conversation_id": "r"}  # no conversations.json beside it


def test_convokit_malformed_utterances_name_file_and_line(tmp_path):
    folder = copy(CONVOKIT, tmp_path)
    append(
        folder / "utterances.jsonl",
        b'{"id": "t1_z1", "conversation_id": "t3_a1", "speaker": "zed", "reply_to": "t1_gone", "text": "me too"}\n'  # 27
        b"{not json\n"  # 28
        b'{"conversation_id": "t3_a1", "speaker": "zed", "reply_to": "t3_a1", "text": "no id"}\n'  # 29
        b'{"id": "t1_z2", "conversation_id": "t3_a1", "speaker": "zed", "reply_to": "t3_a1"}\n',  # 30: no text
    )
    with pytest.raises(CorpusError, match=r"utterances\.jsonl:28: invalid JSON"):
        read(convokit, folder)
    problems = Problems(strict=False)
    assert read(convokit, folder, problems) == read(convokit, CONVOKIT)
    assert [m.split(": ")[0].rsplit("/", 1)[1] for m in problems.messages] == [
        "utterances.jsonl:28",
        "utterances.jsonl:29",
        "utterances.jsonl:30",
        "utterances.jsonl:27",  # found when its conversation is put together
    ]
    assert "'t1_gone', which is no utterance of its conversation" in problems.messages[3]


def test_convokit_bom_and_crlf_read_the_same(tmp_path):
    folder = copy(CONVOKIT, tmp_path)
    for path in folder.iterdir():
        bom_crlf(CONVOKIT / path.name, path)
    assert read(convokit, folder) == read(convokit, CONVOKIT)
    assert read(convokit, folder, convokit_paths="all") == read(convokit, CONVOKIT, convokit_paths="all")


# ---------------------------------------------------------------- detection and the registry

SAMPLES = {
    "cornell": [CORNELL, CORNELL / "movie_lines.txt", CORNELL / "movie_conversations.txt"],
    "ubuntu": [UBUNTU, UBUNTU / "train.csv", UBUNTU / "valid.csv", UBUNTU / "test.csv"],
    "convokit": [CONVOKIT, CONVOKIT / "utterances.jsonl"],
}
MODULES = {"cornell": cornell, "ubuntu": ubuntu, "convokit": convokit}


@pytest.mark.parametrize("name", MODULES)
def test_sniff_knows_its_own_samples_only(name):
    sniff = MODULES[name].FORMAT.sniff
    assert all(sniff(path) for path in SAMPLES[name])
    others = [path for other, paths in SAMPLES.items() if other != name for path in paths]
    for path in [ROOT / "sample.txt", ROOT / "sample.jsonl", ROOT, ROOT / "missing.csv", *others]:
        assert not sniff(path), path


def test_ubuntu_sniff_accepts_a_quoted_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('"Context","Utterance","Label"\n"a __eou__ __eot__","b __eou__","1.0"\n')
    assert ubuntu.FORMAT.sniff(path)
    assert len(read(ubuntu, path)) == 1


@pytest.mark.parametrize(
    ("spec", "format", "name"),
    [
        (CORNELL / "movie_conversations.txt", None, "cornell"),
        (CORNELL / "movie_lines.txt", "txt", "cornell"),
        (CORNELL, None, "cornell"),
        (UBUNTU / "train.csv", None, "ubuntu"),
        (UBUNTU / "train.csv", "txt", "ubuntu"),
        (UBUNTU, None, "ubuntu"),
        (CONVOKIT / "utterances.jsonl", None, "convokit"),
        (CONVOKIT / "utterances.jsonl", "jsonl", "convokit"),
    ],
)
def test_bare_paths_are_refused_with_the_format_to_use(spec, format, name):
    with pytest.raises(CorpusError, match=rf"looks like .*read it with {name}:"):
        load_corpus(str(spec), format=format)
