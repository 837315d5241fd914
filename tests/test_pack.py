"""`chatbot pack` (float16 copies for shipping) on tiny real models."""

import json
import zipfile

import pytest

from chatbot.cli.parser import main
from chatbot.corpus import load_corpus
from chatbot.errors import CheckpointError
from chatbot.evaluation.evaluate import perplexity
from chatbot.evaluation.pack import PACK_FILENAME, pack_model
from chatbot.inference.checkpoint import MODEL_FILENAME, load_checkpoint, sha256_of


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_vhred_dir"])
def test_float16_copy_keeps_the_perplexity_within_one_percent(fixture, request, tmp_path):
    source = request.getfixturevalue(fixture)
    out = tmp_path / "packed"
    report = pack_model(source, out)
    # Measured here again, independently of pack's own check, on the held-out test split.
    test = load_corpus("chatterbot:english").split("test")
    original, packed = load_checkpoint(source), load_checkpoint(out)
    before, after = perplexity(original, test, 32, seed=0)["value"], perplexity(packed, test, 32, seed=0)["value"]
    assert abs(after / before - 1) < 0.01, (before, after)
    assert abs(report["perplexity"]["change"]) < 0.01
    # Half the bytes: float16 weights and no optimizer state.
    assert (out / MODEL_FILENAME).stat().st_size < 0.6 * (source / MODEL_FILENAME).stat().st_size
    with zipfile.ZipFile(out / MODEL_FILENAME) as archive:
        assert "optimizer" not in archive.read("model.weights.h5").decode("latin-1")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "curves.png", "metrics.json", "model.keras", "pack.json", "tokenizer.model"]
    )
    written = json.loads((out / PACK_FILENAME).read_text())
    assert written["sha256"] == {name: sha256_of(out / name) for name in written["sha256"]}
    assert written["model_id"] == packed.model_id != original.model_id
    assert {w.dtype for w in packed.model.weights} == {"float32"}


def test_packing_over_a_model_or_from_nothing_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="already exists and is not an empty directory"):
        pack_model(tiny_model_dir, tiny_model_dir)
    # A missing model, and a corpus slice with no valid dialogue to measure the copy on.
    for source, message in ((tmp_path / "missing", "no such model directory"), (tiny_model_dir, "raise --max-dialogues")):
        assert main(["pack", str(source), "--out", str(tmp_path / "out"), "--max-dialogues", "0"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
