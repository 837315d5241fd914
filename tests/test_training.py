import json

import pytest

from chatbot.cli.parser import main
from chatbot.errors import CheckpointError
from chatbot.inference.checkpoint import load_checkpoint, read_config


def test_training_writes_a_complete_model_directory(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.keras", "tokenizer.model", "config.json", "metrics.json", "logs", "backup"} <= names
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["loss"] < epochs[0]["loss"]
    assert all(e["val_perplexity"] > 1 and e["target_tokens_per_second"] > 0 for e in epochs)
    assert metrics["best"]["val_perplexity"] == min(e["val_perplexity"] for e in epochs)
    model_config, train_config = read_config(tiny_model_dir)
    assert model_config.vocabulary_size == load_checkpoint(tiny_model_dir).tokenizer.vocabulary_size
    assert train_config.corpus == ("chatterbot:english",)
    assert any((tiny_model_dir / "logs").rglob("*tfevents*"))


def test_resume_continues_after_the_last_epoch_with_optimizer_state(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--corpus", "chatterbot:english", "--preset", "tiny", "--vocabulary-size", "400", "--length-groups", "1"]
    # The same rates in a 1-epoch run and in its 2-epoch continuation; no dropout, whose noise a
    # resumed run draws afresh (its generators' state is not in the backup), so the runs can match exactly.
    common += ["--lr-schedule", "constant", "--dropout", "0"]
    straight = main(common + ["--epochs", "2", "--out", str(tmp_path / "straight")])
    common += ["--out", str(out)]
    assert main(common + ["--epochs", "1"]) == 0
    first = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in first] == [1]

    # Without --resume an existing run is protected.
    assert main(common + ["--epochs", "2"]) == 1
    assert "already holds a model; continue it with --resume" in capsys.readouterr().err

    assert main(common + ["--epochs", "2", "--resume"]) == 0
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    # The optimizer continued: the backup's step counter counts both epochs' batches.
    from chatbot.models import build_model
    from chatbot.training.trainer import make_optimizer

    batches = json.loads((out / "metrics.json").read_text())["data"]["train_batches"]
    model_config, train_config = read_config(out)
    model = build_model(model_config)
    # The trainer's own optimizer (a cosine schedule by default), so the saved variables match.
    model.compile(optimizer=make_optimizer(train_config, total_steps=train_config.epochs * batches))
    model.optimizer.build(model.trainable_variables)
    model.load_weights(out / "backup" / "latest.weights.h5")
    assert int(model.optimizer.iterations.numpy()) == 2 * batches
    assert epochs[1]["loss"] < epochs[0]["loss"]
    # The resumed epoch is the uninterrupted run's second epoch: same shuffle order (fit's epoch, not
    # the process's), same weights and optimizer state, so the same losses.
    assert straight == 0
    uninterrupted = json.loads((tmp_path / "straight" / "metrics.json").read_text())["epochs"]
    for name in ("loss", "val_loss"):
        assert epochs[1][name] == pytest.approx(uninterrupted[1][name], rel=1e-4), name


def test_resume_without_a_run_says_so(tmp_path, capsys):
    assert main(["train", "--corpus", "chatterbot:english", "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "config.json: missing" in capsys.readouterr().err


def test_time_budget_stops_training(tmp_path):
    from chatbot.config import model_config
    from chatbot.training.trainer import train
    from tests.conftest import tiny_train_config

    result = train(
        tmp_path / "budget",
        model_config("tiny"),
        tiny_train_config(epochs=50, max_minutes=0.02, max_dialogues=300),
        verbose=0,
        log=lambda _: None,
    )
    assert result.stopped_by_budget and result.epochs_run == 1
    assert (tmp_path / "budget" / "model.keras").exists()  # the cut epoch is validated and saved


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_checkpoint(tmp_path, tiny_model_dir, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    if damage == "missing":
        (broken / "model.keras").unlink()
        match = "model.keras: missing"
    else:
        (broken / "model.keras").write_bytes(b"not a zip file at all")
        match = "cannot load the model"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(broken)
