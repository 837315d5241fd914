"""PNG pictures: training curves written by every real (tiny) run, and the eval comparison."""

import json
import struct

import numpy as np
import pytest

from chatbot.inference.checkpoint import CURVES_FILENAME
from chatbot.training.plots import training_curves


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_drawn(path, width: int, height: int) -> None:
    import matplotlib.image

    assert png_size(path) == (width, height)
    pixels = matplotlib.image.imread(path)  # decodes the whole file: a truncated PNG fails here
    assert pixels.shape[:2] == (height, width) and float(np.std(pixels)) > 0.05  # not a blank canvas
    assert not path.with_name(path.name + ".partial").exists()


def test_every_training_run_draws_its_curves(tiny_model_dir, tiny_vhred_dir):
    assert_drawn(tiny_model_dir / CURVES_FILENAME, 600, 400)  # perplexity only
    assert_drawn(tiny_vhred_dir / CURVES_FILENAME, 1100, 400)  # perplexity, and KL with beta
    metrics = json.loads((tiny_vhred_dir / "metrics.json").read_text())
    assert all("kl" in e and "kl_weight" in e for e in metrics["epochs"])


def test_curves_need_an_epoch(tmp_path):
    with pytest.raises(ValueError, match="no finished epoch"):
        training_curves({"epochs": []}, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_short_epochs_are_drawn_once_a_minute_and_when_training_ends(tmp_path):
    """CurvesPlot: a picture after an epoch only when `every_seconds` have passed since the last one, and always
    at the end of training, with every epoch in it."""
    from types import SimpleNamespace

    from chatbot.training.callbacks import CurvesPlot

    epochs = [{"epoch": 1, "perplexity": 90.0, "val_perplexity": 95.0}]
    path = tmp_path / "curves.png"
    plot = CurvesPlot(SimpleNamespace(payload={"epochs": epochs}), path)  # what MetricsLog.payload holds
    plot.on_train_begin()
    plot.on_epoch_end(0)
    assert not path.exists()  # a second after the start: not yet
    epochs.append({"epoch": 2, "perplexity": 70.0, "val_perplexity": 80.0})
    plot.on_epoch_end(1)
    plot.on_train_end()
    assert_drawn(path, 600, 400)
    drawn = path.stat().st_mtime_ns
    plot.on_train_end()  # nothing new since: not drawn again
    assert path.stat().st_mtime_ns == drawn
    every = CurvesPlot(SimpleNamespace(payload={"epochs": epochs}), tmp_path / "each.png", every_seconds=0)
    every.on_train_begin()
    every.on_epoch_end(1)  # long epochs: drawn after each
    assert_drawn(tmp_path / "each.png", 600, 400)


def eval_row(label: str, architecture: str, perplexity: float, distinct_2: float | None = None) -> dict:
    """A `chatbot eval` report row with what the comparison draws (None: nothing generated, as an n-gram row)."""
    generation = None if distinct_2 is None else {"distinct_2": distinct_2, "contexts": 200}
    return {
        "label": label,
        "architecture": architecture,
        "corpus": "chitchat",
        "split": "test",
        "perplexity": {"value": perplexity},
        "generation": generation,
    }


def test_eval_comparison_names_each_model_and_draws_no_bar_for_what_a_row_lacks(tmp_path):
    import matplotlib.pyplot as plt

    from chatbot.training.plots import _eval_figure, eval_comparison

    rows = [
        eval_row("kn-3gram", "kn-3gram", 85.4),
        eval_row("hred-chitchat", "hred", 71.3, 0.605),
        eval_row("hred-small", "hred", 90.2, 0.5),
    ]
    figure = _eval_figure(plt, rows)
    try:
        perplexity, distinct = figure.axes
        for axis in (perplexity, distinct):  # two HRED models, told apart; a baseline by its architecture alone
            assert [t.get_text() for t in axis.get_xticklabels()] == ["kn-3gram", "hred-chitchat (hred)", "hred-small (hred)"]
        assert len(perplexity.patches) == 3
        assert [(p.get_x() + p.get_width() / 2, round(p.get_height(), 3)) for p in distinct.patches] == [(1, 0.605), (2, 0.5)]
        texts = [t.get_text() for t in distinct.texts]
        assert texts.count("n/a") == 1 and "0.000" not in texts  # the n-gram row generates nothing: no 0 bar
    finally:
        plt.close(figure)
    assert_drawn(eval_comparison(rows, tmp_path / "eval.png"), 1100, 400)
