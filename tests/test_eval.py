"""`chatbot eval`, `--init-from` and the posterior-collapse warning, on tiny models really trained."""

import json

import keras
import numpy as np

from chatbot.cli.parser import main
from chatbot.config import model_config
from chatbot.inference.checkpoint import load_checkpoint, read_config
from chatbot.inference.decoding import DecodingConfig
from chatbot.models import build_model
from chatbot.text.tokenizer import BOS_ID, EOS_ID
from chatbot.training.callbacks import PosteriorCollapseWarning
from chatbot.training.trainer import copy_encoder_weights


def test_init_from_reuses_the_tokenizer_and_sizes_and_logs_every_vhred_term(tiny_model_dir, tiny_vhred_dir):
    assert (tiny_vhred_dir / "tokenizer.model").read_bytes() == (tiny_model_dir / "tokenizer.model").read_bytes()
    vhred_config, train_config = read_config(tiny_vhred_dir)
    assert vhred_config.model == "vhred" and train_config.init_from == str(tiny_model_dir)
    assert vhred_config.hidden_dim == read_config(tiny_model_dir)[0].hidden_dim
    epoch = json.loads((tiny_vhred_dir / "metrics.json").read_text())["epochs"][0]
    for name in ("reconstruction", "kl", "bow", "kl_weight", "active_units", "val_kl", "val_perplexity"):
        assert name in epoch, name
    batches = json.loads((tiny_vhred_dir / "metrics.json").read_text())["data"]["train_batches"]
    assert vhred_config.kl_anneal_steps == round(0.5 * batches)  # half of the one epoch planned
    assert epoch["kl_weight"] > 0


def test_init_from_copies_hreds_layers_and_the_vhred_starts_as_that_hred(tiny_checkpoint):
    """Serban et al. (2017) start VHRED from a trained HRED: every HRED layer is copied, and the decoder's
    weights for z start at zero, so whatever z the prior draws, the first replies are the HRED's."""
    source = tiny_checkpoint.model
    model = build_model(model_config("tiny", model="vhred", vocabulary_size=source.vocabulary_size))
    copied = copy_encoder_weights(model, source)
    assert copied == ["embedding", "utterance_encoder", "context_encoder", "decoder", "output_projection", "context_centering"]
    for name in copied:
        for a, b in zip(getattr(model, name).get_weights(), getattr(source, name).get_weights(), strict=True):
            np.testing.assert_array_equal(a[: b.shape[0]], b)
            assert not a[b.shape[0] :].any()  # the rows that read z
    context = np.zeros((2, 3, 8), np.int32)
    context[:, :, :4] = [BOS_ID, 5, 6, EOS_ID]
    context[1, 2] = 0
    noise = np.random.default_rng(0).standard_normal((2, model.latent_dim)).astype("float32") * 3
    tokens = np.array([BOS_ID, BOS_ID], np.int32)
    theirs, _ = source.decode_step(tokens, source.encode_context(context))
    mine, _ = model.decode_step(tokens, model.encode_context(context, noise))
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


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


def test_posterior_collapse_is_reported_only_after_annealing(tiny_vhred_dir):
    lines = []
    model = load_checkpoint(tiny_vhred_dir).model
    model.compile(optimizer=keras.optimizers.Adam())
    warning = PosteriorCollapseWarning(anneal_steps=10, write=lines.append)
    warning.set_model(model)
    model.optimizer.iterations.assign(5)
    warning.on_epoch_end(0, {"val_kl": 0.001})
    assert lines == []  # still annealing
    model.optimizer.iterations.assign(10)
    warning.on_epoch_end(1, {"val_kl": 2.5})
    assert lines == []  # healthy KL
    warning.on_epoch_end(2, {"val_kl": 0.001})
    assert len(lines) == 1 and "posterior collapse" in lines[0] and "epoch 3" in lines[0]


def test_the_dialogue_manager_answers_with_a_vhred_and_a_seed_repeats_the_reply(tiny_vhred_dir, db_url):
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.inference.decoding import DecodingConfig
    from chatbot.storage import ConversationStore

    manager = DialogueManager(ConversationStore(db_url), load_checkpoint(tiny_vhred_dir))
    replies = [manager.answer(None, "what is your favorite book?", DecodingConfig(), seed=11).reply for _ in range(2)]
    assert replies[0].text and replies[0].seed == 11
    assert replies[0].text == replies[1].text  # same history, settings and seed
    stored = manager.history(replies[0].conversation_id)
    assert [t.speaker for t in stored] == ["user", "bot"]
