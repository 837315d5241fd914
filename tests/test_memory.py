"""A bot that remembers what was said: HRAN against HRED on stated facts and later questions (issue 23).

The corpus is synthetic: the user states two facts ("my pet is pony", "my city is oslo"), the
bot acknowledges each, then the user asks about each of them in turn ("what is my pet ?") and
the bot answers ("your pet is pony"). Three slots of twelve values each, so naming the right
value needs the history: knowing the slot (the question's word) gives one in twelve. HRED must
carry both values through one context vector; HRAN can read them back from the words.

Both models are trained by `chatbot.training.trainer.train` (what `chatbot train` runs) on the
same corpus with the same sizes and updates (tiny preset with 8 turns, 6 epochs of 63 updates of 32:
learning the copy is sudden, 1500 dialogues gave HRAN 27% where 2000 give 97-99%), then asked in real conversations through the dialogue manager (SQLite store, compiled greedy
decoding, the bot's own acknowledgements in the context). Measured with this recipe on 2 cores:
HRAN named the right value in 57 of 60 follow-ups, HRED in 5 (8%, chance); both named the slot
asked in all 60. With 64 more dialogues as a valid split (validation on them instead of on all
2,000 train dialogues, a quarter of each run's time; every epoch still runs): HRAN 57 of 60, HRED 1.
"""

from __future__ import annotations

import json
import random

import pytest
from conftest import trained_once

from chatbot.config import TrainConfig, model_config
from chatbot.dialogue.manager import DialogueManager
from chatbot.inference.checkpoint import load_checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.storage import ConversationStore

pytestmark = pytest.mark.slow  # trains an HRAN and an HRED until they learn

SLOTS = {
    "city": "oslo paris lima cairo tokyo delhi rome quito dublin hanoi seoul nairobi".split(),
    "pet": "pony cat dog frog owl goat parrot rabbit turtle hamster lizard snake".split(),
    "color": "red blue green pink black white orange purple yellow brown grey gold".split(),
}
ACKNOWLEDGEMENTS = ["ok", "noted", "got it", "i see"]
CONVERSATIONS = 30  # two follow-ups each


def facts_dialogue(rng: random.Random) -> list[str]:
    """Two stated facts, each acknowledged, then a question about each (in random order) and its answer."""
    first, second = rng.sample(sorted(SLOTS), 2)
    values = {first: rng.choice(SLOTS[first]), second: rng.choice(SLOTS[second])}
    turns = [
        f"my {first} is {values[first]}",
        rng.choice(ACKNOWLEDGEMENTS),
        f"my {second} is {values[second]}",
        rng.choice(ACKNOWLEDGEMENTS),
    ]
    for asked in rng.sample([first, second], 2):
        turns += [f"what is my {asked} ?", f"your {asked} is {values[asked]}"]
    return turns


def write_facts_corpus(path, count: int, seed: int, valid: int = 0) -> None:
    """`count` dialogues in the train split, then `valid` more in the valid split, as JSON lines (the questions
    asked later are drawn apart). A small valid split keeps each epoch's validation pass to a few batches;
    without one, training validates on all of the train split."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count + valid):
            split = "train" if index < count else "valid"
            out.write(json.dumps({"id": f"facts-{seed}-{index}", "split": split, "turns": facts_dialogue(rng)}) + "\n")


def recall(model_dir, db_url: str) -> tuple[float, float]:
    """(share of follow-ups answered with the right value, share naming the slot asked) in real conversations."""
    manager = DialogueManager(ConversationStore(db_url), load_checkpoint(model_dir))
    rng, right, slot, asked = random.Random(99), 0, 0, 0
    greedy = DecodingConfig(sampler="greedy")
    for _ in range(CONVERSATIONS):
        dialogue = facts_dialogue(rng)
        conversation = manager.start()
        for index in range(0, len(dialogue), 2):
            said = manager.answer(conversation.id, dialogue[index], greedy, seed=0).reply.text.split()
            if index >= 4:  # a question: the reply is the answer
                expected = dialogue[index + 1].split()
                right, slot, asked = right + (said == expected), slot + (said[:2] == expected[:2]), asked + 1
    manager.store.close()
    return right / asked, slot / asked


@pytest.fixture(scope="module")
def facts_corpus(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    path = root / "facts.jsonl"
    write_facts_corpus(path, 2000, seed=0, valid=64)
    return str(path)


def train_on_facts(tmp_path_factory, corpus: str, architecture: str):
    config = model_config("tiny", model=architecture, max_turns=8)
    # patience 6: every epoch runs, whatever the valid split says (it decides only which epoch is saved)
    train_config = TrainConfig(corpus=corpus, epochs=6, batch_size=32, vocabulary_size=400, learning_rate=2e-2, length_groups=1, patience=6)
    return trained_once(tmp_path_factory, f"facts-{architecture}", config, train_config)


def test_hran_answers_from_the_history(tmp_path_factory, facts_corpus, tmp_path):
    right, slot = recall(train_on_facts(tmp_path_factory, facts_corpus, "hran"), f"sqlite:///{tmp_path}/hran.db")
    assert slot >= 0.95 and right >= 0.90, (right, slot)


def test_hred_of_the_same_size_and_updates_knows_the_slot_but_not_the_value(tmp_path_factory, facts_corpus, tmp_path):
    """The form is learned (the slot asked is named), the value is not: the gap to HRAN is memory. (Apart from
    the HRAN test so the two trainings run side by side.)"""
    right, slot = recall(train_on_facts(tmp_path_factory, facts_corpus, "hred"), f"sqlite:///{tmp_path}/hred.db")
    assert slot >= 0.95 and right <= 0.30, (right, slot)
