"""`chatbot eval` on tiny models really trained: every field of the report, its repeatability, a missing model."""

import json

import numpy as np
import pytest

from chatbot.cli.parser import main
from chatbot.inference.decoding import DecodingConfig


@pytest.mark.slow
def test_eval_writes_every_field_and_repeats_exactly(tmp_path, tiny_model_dir, tiny_vhred_dir, capsys):
    argv = ["eval", "--corpus", "chatterbot:english", "--contexts", "6"]
    output = tmp_path / "eval.json"
    models = ["--model", str(tiny_model_dir), "--model", str(tiny_vhred_dir)]
    assert main([*argv, *models, "--ngram-baseline", "--output", str(output), "--plot", str(tmp_path / "eval.png")]) == 0
    first = json.loads(output.read_text())
    printed = capsys.readouterr().out
    from tests.test_plots import assert_drawn

    assert_drawn(tmp_path / "eval.png", 1100, 400)
    assert f"plot: {tmp_path / 'eval.png'}" in printed
    assert "unigram" in printed and "kn-3gram" in printed and "vhred" in printed and "report:" in printed
    assert [row["architecture"] for row in first["rows"]] == ["unigram", "kn-3gram", "hred", "vhred"]
    unigram, ngram, hred, vhred = first["rows"]
    for baseline in (unigram, ngram):
        assert baseline["perplexity"]["kind"] == "exact" and baseline["perplexity"]["value"] > 1
        assert baseline["perplexity"]["target_tokens"] == hred["perplexity"]["target_tokens"]  # same targets
    assert ngram["perplexity"]["value"] < unigram["perplexity"]["value"]
    assert hred["perplexity"]["kind"] == "exact"
    assert vhred["perplexity"]["kind"].startswith("upper bound")
    assert vhred["perplexity"]["kl_nats_per_reply"] >= 0
    assert vhred["perplexity"]["value"] >= vhred["perplexity"]["reconstruction_perplexity"]
    for row in (hred, vhred):
        probe = row["context"]  # the context probe: true, shuffled and no context
        assert probe["true"] == row["perplexity"]["value"]
        assert probe["shuffled"] > 1 and probe["none"] > 1
        assert abs(probe["gain_over_shuffled_nats"] - np.log(probe["shuffled"] / probe["true"])) < 1e-3
        generation = row["generation"]
        for name in (
            "distinct_1",
            "distinct_2",
            "mean_length_tokens",
            "mean_length_words",
            "word_entropy_bits",
            "generic_reply_rate",
            "bleu",
        ):
            assert isinstance(generation[name], float), name
        assert generation["contexts"] == 6
        assert row["decoding"] == DecodingConfig().to_dict()
        assert row["seed"] == 1234 and len(row["samples"]) == 3
        assert row["training"]["epochs"] >= 1 and row["training"]["target_tokens_per_second"] > 0
    # Same samples of contexts for every model, so replies can be compared side by side.
    assert [s["context"] for s in hred["samples"]] == [s["context"] for s in vhred["samples"]]

    # Repeats exactly: each row depends only on its model, the corpus and the seed, so the VHRED alone again
    # (posterior noise and sampled replies: the row with the most randomness) must give the same row.
    # The count baselines are deterministic fits; HRED's row uses the same seeded perplexity and generation.
    again = tmp_path / "again.json"
    assert main([*argv, "--model", str(tiny_vhred_dir), "--output", str(again)]) == 0
    strip = lambda row: {k: v for k, v in row.items() if k != "eval_seconds"}  # noqa: E731
    assert [strip(row) for row in json.loads(again.read_text())["rows"]] == [strip(vhred)]


def test_eval_of_a_missing_model_is_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nope"), "--corpus", "chatterbot:english"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model directory" in err[0]
