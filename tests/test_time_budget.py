"""A run cut by `--max-minutes` in the middle of an epoch (issue 27, item 3): it reports the batches and target
tokens that ran, its backup says where in the epoch it stopped, and `--resume` trains only the batches of that
epoch it had not seen, so a cut and a resumed run together equal one uninterrupted run."""

import json

import numpy as np
import pytest

from chatbot.config import model_config
from chatbot.training.callbacks import EpochProgbar, RunProgress, merged_epoch
from chatbot.training.data import WindowBatches
from tests.conftest import tiny_train_config, trained_once


def _windows(count: int) -> list[list[list[int]]]:
    """`count` windows of 2-4 framed utterances of different lengths (token ids 2 = BOS, 3 = EOS)."""
    rng = np.random.default_rng(0)
    return [[[2, *rng.integers(4, 50, int(rng.integers(1, 20))).tolist(), 3] for _ in range(2 + i % 3)] for i in range(count)]


def test_an_epoch_from_a_first_batch_is_the_rest_of_that_epoch():
    batches = WindowBatches(_windows(40), batch_size=4, seed=7)
    whole = list(batches.batches(1))
    rest = list(batches.batches(1, first=3))
    assert len(rest) == batches.num_batches - 3
    for a, b in zip(whole[3:], rest, strict=True):
        np.testing.assert_array_equal(a, b)
    # The JAX feed: the same batches, padded to their bucket.
    feed = batches.py_dataset(num_turns=4, epoch_of=lambda: 1, first=3)
    assert len(feed) == batches.num_batches - 3
    order = batches.epoch_batches(1)
    np.testing.assert_array_equal(feed[0], batches.static_batch(order[3], 4))


def test_the_progress_bar_of_a_cut_epoch_ends_at_the_batches_that_ran(capsys):
    progress = RunProgress(epoch_batches=6)
    bar = EpochProgbar(progress, epochs=3)
    bar.set_params({"verbose": 2, "epochs": 3, "steps": 6})
    for callback in (progress, bar):
        callback.on_train_begin()
        callback.on_epoch_begin(0)
    for step in range(2):
        for callback in (progress, bar):
            callback.on_train_batch_end(step, {"loss": 5.0})
    progress.on_epoch_end(0, {"loss": 5.0, "tokens": 300.0})
    bar.on_epoch_end(0, {"loss": 5.0})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/3"
    assert lines[1].startswith("2/6 - "), lines  # not "6/6"
    assert progress.cut and (progress.batches_run, progress.tokens_run, progress.epochs_run) == (2, 300, 1)


def test_a_merged_epoch_weighs_each_part_by_what_it_trained():
    cut = {"epoch": 1, "seconds": 10.0, "batches": 1, "epoch_batches": 4, "tokens": 100.0, "loss": 6.0}
    cut |= {"perplexity": float(np.exp(6.0)), "kl_weight": 0.1, "val_loss": 9.0, "val_perplexity": 8000.0}
    rest = {"epoch": 1, "seconds": 20.0, "batches": 3, "epoch_batches": 4, "tokens": 300.0, "loss": 4.0}
    rest |= {"perplexity": float(np.exp(4.0)), "kl_weight": 0.5, "val_loss": 3.0, "val_perplexity": 20.0}
    row = merged_epoch(cut, rest)
    assert (row["batches"], row["tokens"], row["seconds"], row["resumed_after_batch"]) == (4, 400.0, 30.0, 1)
    assert row["loss"] == pytest.approx(4.5)  # (100 * 6 + 300 * 4) / 400: the mean over target tokens
    assert row["perplexity"] == pytest.approx(np.exp(4.5))
    assert row["kl_weight"] == pytest.approx(0.4)  # a mean over batches: (1 * 0.1 + 3 * 0.5) / 4
    assert (row["val_loss"], row["val_perplexity"]) == (3.0, 20.0)  # measured after the whole epoch


def _first_batch_tokens(out, model, train_config) -> int:
    """Target tokens of the first batch of epoch 1, counted from the data as the trainer prepares it."""
    from chatbot.corpus.tokens import tokenize_source
    from chatbot.paths import cache_dir
    from chatbot.text.tokenizer import Tokenizer
    from chatbot.training.trainer import corpus_sources, split_windows

    sources, problems = corpus_sources(train_config)
    tokenizer = Tokenizer.load(out / "tokenizer.model")
    parts = [tokenize_source(s, tokenizer, cache_dir(), train_config.max_dialogues, problems, lambda _: None) for s in sources]
    windows = split_windows(parts, model, None, lambda _: None)["train"]
    batch = next(WindowBatches(windows, train_config.batch_size, seed=train_config.seed).batches(0))  # (B, T, L)
    lengths = np.count_nonzero(batch[:, 1:], axis=-1)  # real tokens of every turn after a window's first
    return int((lengths - (lengths > 0)).sum())  # all but BOS of each real turn


@pytest.mark.slow
def test_a_cut_epoch_reports_what_ran_and_resume_trains_only_its_unseen_batches(tmp_path, tmp_path_factory, capsys):
    from chatbot.cli.parser import main
    from chatbot.training.trainer import train

    # No dropout and a constant rate: the cut and resumed run can equal the uninterrupted one exactly
    # (dropout's generators are not in the backup). 300 dialogues: 6 batches an epoch.
    model = model_config("tiny", dropout=0.0)
    settings = tiny_train_config(max_dialogues=300, batch_size=64, lr_schedule="constant")
    straight = json.loads((trained_once(tmp_path_factory, "straight", model, settings) / "metrics.json").read_text())
    epoch_batches = straight["data"]["train_batches"]
    assert epoch_batches >= 3

    out = tmp_path / "cut"
    flags = ["--corpus", "chatterbot:english", "--preset", "tiny", "--dropout", "0", "--vocabulary-size", "400", "--length-groups", "1"]
    flags += ["--max-dialogues", "300", "--batch-size", "64", "--lr-schedule", "constant", "--epochs", "2", "--out", str(out)]
    # A budget of 6 ms ends the first epoch after its first batch, which alone takes longer (tracing).
    assert main(["train", *flags, "--max-minutes", "0.0001"]) == 0
    row = json.loads((out / "metrics.json").read_text())["epochs"][0]
    assert (row["epoch"], row["batches"], row["epoch_batches"]) == (1, 1, epoch_batches)
    assert row["tokens"] == _first_batch_tokens(out, model, settings)
    assert f"(1 batch, {row['tokens']:.0f} target tokens; stopped by --max-minutes in epoch 1 after batch 1 of {epoch_batches})" in (
        capsys.readouterr().out
    )
    assert (out / "model.keras").exists()  # the cut epoch is validated and saved
    assert json.loads((out / "backup" / "training_metadata.json").read_text()) == {"epoch": 0, "batch": 1}

    resumed = train(out, model, settings, resume=True, verbose=0, log=lambda _: None)
    assert resumed.cut_at is None and resumed.batches_run == 2 * epoch_batches - 1  # the rest of epoch 1, then epoch 2
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [(e["epoch"], e["batches"]) for e in epochs] == [(1, epoch_batches), (2, epoch_batches)]
    assert row["tokens"] + resumed.target_tokens == 2 * straight["data"]["train_target_tokens"]
    # Every batch once: the epoch that was cut and resumed is the uninterrupted run's first epoch (its mean
    # loss over all its batches, and the weights after them), and the second epoch follows it.
    for mine, reference in zip(epochs, straight["epochs"], strict=True):
        assert mine["tokens"] == reference["tokens"]
        for name in ("loss", "perplexity", "val_loss"):
            assert mine[name] == pytest.approx(reference[name], rel=1e-4), (mine["epoch"], name)
