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
