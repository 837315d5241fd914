"""Every format from its sample to a trained model; detection, conversion, the token cache and mixtures."""

import json

import numpy as np
import pytest

from chatbot.cli.parser import main
from chatbot.corpus import SPLITS, load_corpus, resolve
from chatbot.corpus.tokens import TokenizedCorpus, cached_tokenizer, tokenize_source
from chatbot.errors import CorpusError
from chatbot.inference.checkpoint import load_checkpoint, read_config
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.data import TokenWindows, WindowBatches, dialogue_windows
from tests.conftest import CORPORA

# Every standard format, the SPEC of its sample, and the sample's dialogues and turns.
SAMPLES = {
    "dailydialog": (f"dailydialog:{CORPORA}/dailydialog", 8, 29),
    "cornell": (f"cornell:{CORPORA}/cornell", 7, 25),
    "ubuntu": (f"ubuntu:{CORPORA}/ubuntu", 11, 31),
    "parlai": (f"parlai:{CORPORA}/parlai.txt", 6, 21),
    "convokit": (f"convokit:{CORPORA}/convokit", 5, 18),
    "personachat": (f"personachat:{CORPORA}/personachat.txt", 5, 22),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_format_trains_a_tiny_model_from_its_sample(name, tmp_path, capsys):
    spec, dialogues, _ = SAMPLES[name]
    out = tmp_path / name
    # The language model: the cheapest of the four to trace (each format's HRED trains in the mixture test below).
    args = ["train", "--corpus", spec, "--model", "lm", "--preset", "tiny", "--epochs", "1", "--vocabulary-size", "400", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    # The run's record counts the sample's dialogues: reading went through the format's reader.
    data = json.loads((out / "metrics.json").read_text())["data"]
    assert 0 < data["train_dialogues"] and data["train_dialogues"] + data["valid_dialogues"] <= dialogues
    checkpoint = load_checkpoint(out)
    assert read_config(out)[1].corpus == (spec,)
    assert checkpoint.tokenizer.vocabulary_size > 4


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_counts_detects_validates_and_converts(name, tmp_path, capsys):
    spec, dialogues, turns = SAMPLES[name]
    path = spec.split(":", 1)[1]
    assert main(["corpus", "detect", path]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: {name}: ")
    assert main(["corpus", "validate", spec]) == 0
    assert capsys.readouterr().out.strip().endswith(f": {dialogues} dialogues, {turns} turns: ok")
    original = load_corpus(spec).dialogues
    for to in ("jsonl", "parlai", "txt"):
        out = tmp_path / f"converted.{to}"
        assert main(["corpus", "convert", spec, str(out), "--to", to]) == 0
        assert f"wrote {dialogues} dialogues" in capsys.readouterr().out
        converted = load_corpus(f"{to}:{out}").dialogues
        assert [[t.text for t in d.turns] for d in converted] == [[t.text for t in d.turns] for d in original]
    # JSONL keeps everything: ids, official splits, speakers and metadata.
    assert load_corpus(f"jsonl:{tmp_path / 'converted.jsonl'}").dialogues == original


def test_a_bare_path_of_a_standard_corpus_is_refused_naming_the_flag(tmp_path, capsys):
    for spec, _, _ in SAMPLES.values():
        path = spec.split(":", 1)[1]
        assert main(["corpus", "stats", path]) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "looks like" in error and f"{spec} (or --format {spec.split(':')[0]})" in error
    assert main(["corpus", "detect", str(tmp_path)]) == 1
    assert "no known corpus format (directory)" in capsys.readouterr().out


def test_token_windows_equal_the_list_windows_and_their_batches(tmp_path):
    corpus = load_corpus(f"{CORPORA}/sample.txt")
    dialogues = list(corpus.dialogues) * 5
    tokenizer = Tokenizer.train([t.text for d in dialogues for t in d.turns], 300)
    source = resolve(f"{CORPORA}/sample.txt")
    part = tokenize_source(source, tokenizer, tmp_path)
    for split in SPLITS:
        expected = dialogue_windows(corpus.split(split), tokenizer, 3, 12)
        windows = TokenWindows([part], split, 3, 12)
        assert [windows[i] for i in range(len(windows))] == expected
        if expected:
            a, b = WindowBatches(expected, 2, seed=3), WindowBatches(windows, 2, seed=3)
            assert (a.num_batches, a.num_target_tokens) == (b.num_batches, b.num_target_tokens)
            assert all(np.array_equal(x, y) for x, y in zip(a.batches(0), b.batches(0), strict=True))


def test_the_token_cache_is_reused_and_rebuilt_when_the_corpus_changes(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello there\nhi, how are you?\n\nwhat is new\nnot much\n")
    tokenizer = Tokenizer.train(["hello there", "hi, how are you?", "what is new", "not much"] * 20, 300)
    logged: list[str] = []
    first = tokenize_source(resolve(str(path)), tokenizer, tmp_path / "cache", log=logged.append)
    again = tokenize_source(resolve(str(path)), tokenizer, tmp_path / "cache", log=logged.append)
    assert first.directory == again.directory and "tokenizing into" in logged[0] and "token cache" in logged[1]
    assert isinstance(again.tokens, np.memmap) and first.num_dialogues == 2
    path.write_text("hello there\nhi, how are you?\n\nwhat is new\nnot much\nok then\n\nbye\nbye!\n")
    changed = tokenize_source(resolve(str(path)), tokenizer, tmp_path / "cache")
    assert changed.directory != first.directory and changed.num_dialogues == 3
    # A half-written folder (a killed run) is never taken for a cache: only renamed, complete ones are.
    (changed.directory / "meta.json").unlink()
    rebuilt = tokenize_source(resolve(str(path)), tokenizer, tmp_path / "cache")
    assert rebuilt.num_dialogues == 3 and TokenizedCorpus.open(rebuilt.directory).num_dialogues == 3
    # The tokenizer is cached by the corpora's content too.
    calls = []

    def texts():
        calls.append(1)
        return iter(["hello there", "what is new"] * 50)

    sources = [resolve(str(path))]
    assert (
        cached_tokenizer(sources, 300, tmp_path / "cache", texts).model_proto
        == cached_tokenizer(sources, 300, tmp_path / "cache", texts).model_proto
    )
    assert len(calls) == 1


def test_file_digests_are_remembered_until_the_file_changes(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello there\nhi\n")
    first = resolve(str(path)).fingerprint()
    assert len(list((tmp_path / "home" / "cache" / "digests").iterdir())) == 1  # CHATBOT_HOME is tmp_path/home
    assert resolve(str(path)).fingerprint() == first
    path.write_text("hello where\nhi\n")  # same size, new bytes, new modification time
    assert resolve(str(path)).fingerprint() != first


def test_mixture_weights_set_how_often_an_epoch_sees_each_corpus(tmp_path):
    tokenizer = Tokenizer.train([t.text for d in load_corpus(f"{CORPORA}/sample.txt").dialogues for t in d.turns] * 10, 300)
    a = tokenize_source(resolve(f"{CORPORA}/sample.txt"), tokenizer, tmp_path)
    b = tokenize_source(resolve(f"{CORPORA}/sample.jsonl"), tokenizer, tmp_path)
    plain = TokenWindows([a, b], None, 3, 12)
    sizes = np.bincount(plain.part)
    weighted = TokenWindows([a, b], None, 3, 12, weights=[2, 0.5])
    assert weighted.epoch_size == 2 * sizes[0] + round(0.5 * sizes[1])
    batches = WindowBatches(weighted, 2, seed=0)
    epochs = [list(batches.batches(epoch)) for epoch in range(3)]
    assert all(len(epoch) == batches.num_batches for epoch in epochs)
    assert sum(len(batch) for batch in epochs[0]) == weighted.epoch_size
    # A fractional weight draws a fresh share every epoch.
    rng = [np.random.default_rng([0, epoch]) for epoch in range(2)]
    draws = [sorted(weighted.epoch_selection(r)[weighted.part[weighted.epoch_selection(r)] == 1]) for r in rng]
    assert len(draws[0]) == round(0.5 * sizes[1])


@pytest.mark.slow
def test_a_mixture_of_every_format_trains_an_hred_and_stats_show_each_part(tmp_path, capsys):
    specs = [spec for spec, _, _ in SAMPLES.values()]
    weights = "1,2,1,1,0.5,1"
    assert main(["corpus", "stats", *specs, "--corpus-weights", weights, "--vocabulary-size", "400"]) == 0
    out = capsys.readouterr().out
    assert all(spec in out for spec in specs) and "mixture" in out and "2×" in out and "0.5×" in out
    args = ["train", "--preset", "tiny", "--epochs", "1", "--vocabulary-size", "400", "--length-groups", "1", "--out", str(tmp_path / "m")]
    assert main([*args, *(f"--corpus={spec}" for spec in specs), "--corpus-weights", weights]) == 0
    parts = json.loads((tmp_path / "m" / "metrics.json").read_text())["data"]["parts"]
    assert [part["spec"] for part in parts] == specs
    assert all(part["dialogues"] > 0 for part in parts)  # every format's train split fed the HRED
    assert read_config(tmp_path / "m")[1].corpus_weights == (1.0, 2.0, 1.0, 1.0, 0.5, 1.0)
    assert main([*args, "--corpus", specs[0], "--corpus-weights", "1,2"]) == 1
    assert "--corpus-weights needs one non-negative number per --corpus (1)" in capsys.readouterr().err


def test_malformed_records_stop_training_unless_skipped(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    lines = ['["hi there", "hello, how are you?"]', "{broken", '["what is new?", "not much, you?"]'] * 4
    path.write_text("\n".join(lines) + "\n")
    args = ["train", "--corpus", str(path), "--preset", "tiny", "--epochs", "1", "--vocabulary-size", "300"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 1
    assert f"{path}:2: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
    assert main(["corpus", "stats", str(path), "--vocabulary-size", "300"]) == 1
    assert f"{path}:2: invalid JSON" in capsys.readouterr().err
    assert main(["corpus", "stats", str(path), "--vocabulary-size", "300", "--skip-malformed"]) == 0
    out = capsys.readouterr().out
    assert "skipped 4 malformed records (--skip-malformed)" in out and "  train " in out


def test_encoding_is_detected_from_the_bom_and_can_be_given(tmp_path):
    text = "héllo there\nça va?\n\nbye\nbye!\n"
    for encoding in ("utf-8-sig", "utf-16"):
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.replace("\n", "\r\n").encode(encoding))
        assert [t.text for t in load_corpus(str(path)).dialogues[0].turns] == ["héllo there", "ça va?"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes(text.encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin.txt:1: not UTF-8 text .*--encoding latin-1"):
        load_corpus(str(latin))
    assert main(["corpus", "validate", str(latin), "--encoding", "latin-1"]) == 0
    assert main(["corpus", "validate", str(latin), "--encoding", "no-such-codec"]) == 1
