"""The Python API (`chatbot.api`, exported by `import chatbot`): the shipped model and tiny real models through
`load`, `Bot.reply`, `Bot.conversation`, `train`, `evaluate`, `replay`, `chatbot.corpus.load` and
`chatbot.training.dialogue_batches` with Keras's own `fit` and `save`; the public surface against its record."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pytest

import chatbot
from chatbot.cli.parser import main
from chatbot.errors import CheckpointError, ConfigError, ConversationNotFoundError, CorpusError, StorageError
from chatbot.inference.checkpoint import SHIPPED_MODEL_DIR
from tests.api_surface import REPO

HISTORY = ["hi! what are you studying?"]


@pytest.fixture(scope="module")
def bot():
    return chatbot.load()


def test_import_chatbot_starts_neither_tensorflow_nor_sqlalchemy():
    code = "import sys, chatbot; chatbot.Decoding; print(sorted({'tensorflow', 'keras', 'sqlalchemy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow  # loads or trains a real model
def test_the_default_is_the_shipped_model_and_a_seed_repeats_its_reply(bot):
    assert bot.path == SHIPPED_MODEL_DIR and bot.name == "default" and isinstance(bot.model, keras.Model)
    first = bot.reply(HISTORY, seed=7)
    assert first.text and first.seed == 7 and first.model_id == bot.model_id and first.turn_id is None
    assert bot.tokenizer.decode(list(first.tokens)).strip() and first.candidates == (first.text,)
    second = bot.reply(HISTORY, seed=7)
    assert dataclasses.replace(second, latency_ms=first.latency_ms) == first  # all but the time repeats
    three = bot.reply(HISTORY, seed=7, n=3)
    assert len(three.candidates) == 3 and three.text == three.candidates[0] and three.decoding.num_return_sequences == 3
    greedy = bot.reply(HISTORY, decoding=chatbot.Decoding(sampler="greedy"))
    assert greedy.text == bot.reply(HISTORY, decoding=chatbot.Decoding(sampler="greedy"), seed=greedy.seed + 1).text


@pytest.mark.slow  # loads or trains a real model
def test_a_stateless_reply_is_the_reply_a_stored_conversation_gets(bot, tmp_path):
    """One reply path: the same history, settings and seed give the same text through `Bot.reply` and through
    the dialogue manager that the REPL and the server use."""
    with bot.conversation(db=tmp_path / "chat.db") as chat:
        stored = chat.say(HISTORY[0], seed=11)
        follow = chat.say("what do you like about it?", seed=12)
        assert stored.conversation_id == chat.id and stored.turn_id is not None
    assert bot.reply(HISTORY, seed=11).text == stored.text
    assert bot.reply([HISTORY[0], stored.text, "what do you like about it?"], seed=12).text == follow.text


@pytest.mark.slow  # loads or trains a real model
def test_a_conversation_retries_edits_switches_and_replays_exactly(bot, tmp_path):
    db = tmp_path / "chat.db"
    with bot.conversation(db=db) as chat:
        with pytest.raises(ConfigError, match="say something first"):
            chat.retry()
        first = chat.say("hello", seed=1)
        again = chat.retry(seed=2)
        assert again.turn_id != first.turn_id
        assert [b.number for b in chat.branches()] == [1, 2]
        edited = chat.edit("hi there", seed=3)
        assert [(t.speaker, t.text) for t in chat.history()] == [("user", "hi there"), ("bot", edited.text)]
        chat.switch(1)
        assert [t.text for t in chat.history()] == ["hello", first.text]
        conversation = chat.id
    with bot.conversation(db=f"sqlite:///{db}", conversation_id=conversation) as chat:  # a URL works too
        transcript = chat.transcript(all_branches=True)
        assert [t.text for t in transcript.turns] == ["hello", first.text] and len(transcript.branches) == 3
    report = chatbot.replay(conversation, db=db, all_branches=True)
    assert report.identical and report.counts() == (3, 3)
    with pytest.raises(ConversationNotFoundError):
        chatbot.replay(999, db=db)
    with pytest.raises(ConversationNotFoundError):
        bot.conversation(db=db, conversation_id=999)


@pytest.mark.slow  # loads or trains a real model
def test_bad_input_is_the_projects_own_error(bot, tmp_path):
    with pytest.raises(ConfigError, match="history must be a list"):
        bot.reply("hello")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="history is empty"):
        bot.reply([])
    with pytest.raises(ConfigError, match="empty message"):
        bot.reply(["\x1b[31m"])
    with pytest.raises(ConfigError, match="--top-p"):
        bot.reply(HISTORY, decoding=chatbot.Decoding(top_p=0))
    with pytest.raises(CheckpointError, match="no such model directory"):
        chatbot.load(tmp_path / "nothing")
    with pytest.raises(StorageError, match="unknown kind of database"):
        bot.conversation(db="nonsense://")
    with pytest.raises(ConfigError, match="unknown setting hidden_size"):
        chatbot.train("chatterbot:english", out=tmp_path / "m", preset="tiny", hidden_size=8)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow  # loads or trains a real model
def test_train_is_what_the_command_line_runs_and_evaluate_scores_it(tmp_path, capsys):
    settings = dict(preset="tiny", epochs=1, vocabulary_size=400, length_groups=1, max_dialogues=120)
    result = chatbot.train("chatterbot:english", out=tmp_path / "api", model="lm", log=lambda line: None, verbose=0, **settings)
    flags = ["--preset", "tiny", "--epochs", "1", "--vocabulary-size", "400", "--length-groups", "1", "--max-dialogues", "120"]
    assert main(["train", "--corpus", "chatterbot:english", "--model", "lm", "--out", str(tmp_path / "cli"), *flags]) == 0
    capsys.readouterr()
    assert result.epochs_run == 1 and result.out_dir == tmp_path / "api"
    assert (tmp_path / "api" / "config.json").read_text() == (tmp_path / "cli" / "config.json").read_text()
    for a, b in zip(keras.models.load_model(tmp_path / "api" / "model.keras").get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    report = chatbot.evaluate([tmp_path / "api", tmp_path / "cli"], "chatterbot:english", contexts=2, ngram_baseline=True)
    perplexity = report.perplexity()
    assert list(perplexity) == ["unigram", "kn-3gram", "api", "cli"]
    assert perplexity["api"] == pytest.approx(perplexity["cli"], rel=1e-6)  # the same run, from Python and from the shell
    assert report.to_dict()["rows"][2]["generation"]["contexts"] == 2


def test_corpus_load_streams_dialogues_by_split():
    test = list(chatbot.corpus.load("chatterbot:english", split="test"))
    every = list(chatbot.corpus.load("chatterbot:english"))
    assert test and {d.split for d in test} == {"test"} and len(every) > len(test)
    assert test == [d for d in every if d.split == "test"]
    with pytest.raises(ConfigError, match="split must be one of"):
        next(chatbot.corpus.load("chatterbot:english", split="dev"))


@pytest.mark.slow  # loads or trains a real model
def test_a_loaded_model_fine_tunes_with_keras_fit_and_saves_in_the_native_format(tiny_model_dir, tmp_path):
    bot = chatbot.load(tiny_model_dir)
    dialogues = list(chatbot.corpus.load("chatterbot:english", split="train"))[:40]
    batches = chatbot.training.dialogue_batches(
        dialogues, bot.tokenizer, batch_size=8, max_turns=bot.config.max_turns, max_utterance_length=bot.config.max_utterance_length
    )
    before = [w.copy() for w in bot.model.get_weights()]
    bot.model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = bot.model.fit(batches, epochs=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][1] < history.history["loss"][0]
    assert any(not np.array_equal(a, b) for a, b in zip(before, bot.model.get_weights(), strict=True))
    bot.model.save(tmp_path / "tuned.keras")
    again = keras.models.load_model(tmp_path / "tuned.keras", safe_mode=True, compile=False)
    for a, b in zip(again.get_weights(), bot.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CorpusError, match="nothing to train on"):
        chatbot.training.dialogue_batches([], bot.tokenizer)


def test_the_public_surface_matches_its_record_or_the_changelog_says_why():
    """A public name that disappears or changes its signature must be named in CHANGELOG.md's "Unreleased" section
    (then `python -m tests.api_surface --write` records the new surface with the release)."""
    from tests.api_surface import RECORD, changelog_unreleased, surface

    recorded = dict(line.split(" ", 1) for line in RECORD.read_text().splitlines() if line and not line.startswith("#"))
    current = surface()
    changed = sorted(name for name in recorded if current.get(name) != recorded[name])
    added = sorted(set(current) - set(recorded))
    unexplained = [name for name in changed if f"`{name.split('.')[0]}" not in changelog_unreleased()]
    assert not unexplained, f"changed or removed without a CHANGELOG.md entry under Unreleased: {unexplained}"
    assert not added, f"new public names not recorded in {RECORD.name}: {added} (python -m tests.api_surface --write)"
    assert chatbot.__version__ in (REPO / "CHANGELOG.md").read_text()


def _resolves(dotted: str) -> bool:
    """`chatbot.a.b.C.d` names a module or an attribute reachable from one."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(value, name):
                return False
            value = getattr(value, name)
        return True
    return False


def test_the_api_reference_builds_without_warnings_and_every_public_name_is_documented(tmp_path):
    """What CI builds (bin/api-docs builds the same into docs/api/): pdoc must not warn, every public function,
    class and method has a docstring (a property is named in its class's), every `chatbot.…` reference in
    those docstrings resolves, and the committed docs/api/ documents the same names as a fresh build."""
    import importlib
    import inspect
    import re
    import warnings

    import pdoc
    import pdoc.render

    from tests.api_surface import PDOC_MODULES, surface

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.render.configure(docformat="google", search=False, show_source=False)
        pdoc.pdoc(*PDOC_MODULES, output_directory=tmp_path)
    assert not [f"{w.message}" for w in caught if "pdoc" in w.filename], "pdoc warned"

    undocumented, texts = [], []
    for name, kind in surface().items():
        owner, _, member = name.rpartition(".")
        value = getattr(chatbot, name) if not owner else getattr(getattr(chatbot, owner), member)
        if kind == "property":
            if member not in (inspect.getdoc(getattr(chatbot, owner)) or ""):
                undocumented.append(name)
        elif inspect.isfunction(value) or inspect.isclass(value) or inspect.ismethod(value):
            doc = value.__doc__ or ""
            undocumented += [] if doc.strip() else [name]
            texts.append(doc)
    assert not undocumented, f"public names without a docstring: {undocumented}"
    texts += [importlib.import_module(m).__doc__ or "" for m in PDOC_MODULES if not m.startswith("!")]
    references = {ref for text in texts for ref in re.findall(r"`(chatbot(?:\.\w+)+)", text)}
    assert references and not sorted(r for r in references if not _resolves(r)), "references that do not resolve"

    ids = lambda page: set(re.findall(r'id="([A-Za-z_][\w.]*)"', page.read_text(encoding="utf-8")))  # noqa: E731
    committed = REPO / "docs" / "api"
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.html"))
    assert built == sorted(p.relative_to(committed) for p in committed.rglob("*.html")), "docs/api/ is stale: run bin/api-docs"
    for page in built:
        assert ids(committed / page) == ids(tmp_path / page), f"docs/api/{page} is stale: run bin/api-docs"


def test_a_bad_corpus_is_reported_before_tensorflow_starts(tmp_path):
    """Issue 27, item 16: `chatbot train --corpus nope` answered after TensorFlow's import (4.3 s); now before it."""
    code = (
        "import sys\nfrom chatbot.cli.parser import main\n"
        f"code = main(['train', '--corpus', 'nope', '--out', {str(tmp_path / 'm')!r}])\n"
        "print(code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.split() == ["1", "False"], result.stdout + result.stderr
    assert "unknown corpus 'nope'" in result.stderr and not (tmp_path / "m").exists()
