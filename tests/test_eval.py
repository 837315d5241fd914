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
    assert [row["label"] for row in first["rows"]] == ["unigram", "kn-3gram", tiny_model_dir.name, tiny_vhred_dir.name]
    assert f"{tiny_model_dir.name} (hred)" in printed and f"{tiny_vhred_dir.name} (vhred)" in printed
    assert all(row["max_dialogues"] is None for row in first["rows"])  # the whole split, and the report says so
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


def report_row(model: str, architecture: str, perplexity: float) -> dict:
    """A row as `evaluate_model` (a model) or `ngram_row` (model_id None) makes it, with what the table reads."""
    baseline = architecture in ("unigram", "kn-3gram")
    return {
        "model": model,
        "label": architecture if baseline else model.rsplit("/", 1)[-1],
        "model_id": None if baseline else f"id-{model}",
        "architecture": architecture,
        "corpus": "chitchat",
        "split": "test",
        "perplexity": {"value": perplexity, "kind": "exact"},
        "generation": None if baseline else {"distinct_2": 0.5},
    }


def test_rows_of_one_architecture_are_told_apart_by_their_model_names(capsys):
    from chatbot.api import Report
    from chatbot.evaluation.reports import print_eval_table

    rows = [
        report_row("kneser-ney 3-gram", "kn-3gram", 85.4),
        report_row("storage/models/hred-chitchat", "hred", 71.3),
        report_row("runs/a/hred", "hred", 80.0),
        report_row("runs/b/hred", "hred", 81.0),  # the same directory name: the paths tell them apart
        report_row("runs/b/hred", "hred", 81.0),  # the same directory twice: numbered
    ]
    report = Report(rows, "chitchat", "test", 1234, DecodingConfig())
    labels = ["kn-3gram", "hred-chitchat", "a/hred", "b/hred", "b/hred #2"]
    assert [row["label"] for row in json.loads(json.dumps(report.to_dict()))["rows"]] == labels
    assert report.perplexity() == dict(zip(labels, [85.4, 71.3, 80.0, 81.0, 81.0], strict=True))
    print_eval_table(report.rows)
    names = [line.split("│")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert names == ["kn-3gram", "hred-chitchat (hred)", "a/hred (hred)", "b/hred (hred)", "b/hred #2 (hred)"]


def test_eval_of_a_missing_model_is_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nope"), "--corpus", "chatterbot:english"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model directory" in err[0]


def test_max_dialogues_reads_the_first_n_of_each_split_and_the_train_limits_lower_it():
    from chatbot.api import evaluate
    from chatbot.config import limited, train_limits
    from chatbot.corpus import load_corpus
    from chatbot.errors import ConfigError
    from chatbot.evaluation.evaluate import EvalConfig, EvalData

    whole = load_corpus("chatterbot:english")
    data = EvalData.load(EvalConfig("chatterbot:english", max_dialogues=3))
    assert data.train == whole.split("train")[:3] and data.split == whole.split("test")[:3]
    assert len(whole.split("test")) > 3  # so the cap did cut
    # $CHATBOT_TRAIN_LIMITS: only max_dialogues applies to an evaluation, and only ever lowers it
    limits = train_limits("max_dialogues=40,epochs=1,max_minutes=0.1")
    assert limited(EvalConfig("chitchat"), limits) == (EvalConfig("chitchat", max_dialogues=40), ["max_dialogues None → 40"])
    assert limited(EvalConfig("chitchat", max_dialogues=5), limits) == (EvalConfig("chitchat", max_dialogues=5), [])
    with pytest.raises(ConfigError, match="--max-dialogues must be at least 1"):
        evaluate("storage/models/default", "chatterbot:english", max_dialogues=0)
