"""A scripted dialogue model: the real inference contract answered from a fixed table (a null model).

`ScriptedModel` implements `encode_context(context_tokens) -> state` and
`decode_step(token_ids, state) -> (logits, state)` with TensorFlow ops, so the
real `ReplyGenerator`, samplers (compiled with XLA or eager), `DialogueManager`,
REPL and HTTP server run on it unchanged; only the numbers are fixed instead of
learned (as keras-hub's sampler tests do). The reply to a history is row
`sum of the history's piece ids mod len(REPLIES)` of the table, so a test can
say exactly what the bot must answer (`expected_reply`) and whether the
context window was applied. `chatbot serve --model scripted` serves it: the
ceiling of the HTTP and database path, with no model cost to speak of.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import tensorflow as tf

from chatbot.config import TrainConfig, model_config
from chatbot.inference.checkpoint import Checkpoint
from chatbot.inference.framing import context_array
from chatbot.text.tokenizer import EOS_ID, Tokenizer

REPLIES = (
    "hello there, how are you?",
    "i like talking about books.",
    "that sounds interesting, tell me more.",
    "i am fine, thank you.",
    "what is your favorite movie?",
)
MARGIN = 40.0  # logit of the scripted token over every other: every sampler picks it (p(other) < e^-40 · V)
TOKENIZER_TEXTS = list(REPLIES) + [
    "hi, how are you doing today?",
    "i am doing well, and you?",
    "do you like music or books?",
    "my favorite movie is a long story about a robot.",
    "tell me something about yourself.",
    "first conversation second conversation back again one two three",
]


class ScriptedModel:
    """Answers row `sum(piece ids of the context) mod len(replies)` of a fixed reply table.

    Args:
        replies: `(R, P)` token ids, each row a reply followed by EOS and padded with EOS.
        vocabulary_size: logits width V.
    """

    latent_dim = 0

    def __init__(self, replies: list[list[int]], vocabulary_size: int):
        self.vocabulary_size = vocabulary_size
        width = max(len(row) for row in replies)
        self.table = tf.constant([row + [EOS_ID] * (width - len(row)) for row in replies], tf.int32)  # (R, P)

    def encode_context(self, context_tokens):
        """`(batch_size, num_turns, utterance_length)` int32 → state `(row (batch_size,), position (batch_size,))`."""
        pieces = tf.where(context_tokens > EOS_ID, context_tokens, 0)  # real pieces only: no pad, BOS or EOS
        row = tf.math.floormod(tf.reduce_sum(pieces, axis=[1, 2]), tf.shape(self.table)[0])
        return row, tf.zeros_like(row)

    def decode_step(self, token_ids, state):
        """`(batch_size,)` previous tokens (ignored) → `(batch_size, vocabulary_size)` logits peaked on the table's next token."""
        row, position = state
        position_in_table = tf.minimum(position, tf.shape(self.table)[1] - 1)
        target = tf.gather_nd(self.table, tf.stack([row, position_in_table], axis=1))  # (B,)
        logits = tf.one_hot(target, self.vocabulary_size, on_value=MARGIN, off_value=0.0)
        return logits, (row, position + 1)


def scripted_tokenizer() -> Tokenizer:
    return Tokenizer.train(TOKENIZER_TEXTS * 20, vocabulary_size=320)


def scripted_checkpoint(directory: Path, tokenizer: Tokenizer | None = None, max_turns: int = 6) -> Checkpoint:
    """A Checkpoint whose model is a ScriptedModel over REPLIES (nothing is written to `directory`)."""
    tokenizer = tokenizer or scripted_tokenizer()
    replies = [tokenizer.encode(text) + [EOS_ID] for text in REPLIES]
    config = model_config("tiny", vocabulary_size=tokenizer.vocabulary_size, max_turns=max_turns)
    model_id = hashlib.sha256(repr(replies).encode()).hexdigest()[:16]
    return Checkpoint(Path(directory), ScriptedModel(replies, tokenizer.vocabulary_size), tokenizer, config, TrainConfig(), model_id)


def expected_reply(checkpoint: Checkpoint, history: list[str], context_turns: int | None = None) -> str:
    """The text the scripted model answers to `history` (the last `context_turns` texts of it)."""
    window = history[-(context_turns or checkpoint.model_config.max_turns - 1) :]
    tokens = context_array(checkpoint.tokenizer.encode_batch(window), checkpoint.model_config.max_utterance_length)
    total = int(tokens[tokens > EOS_ID].sum())
    return REPLIES[total % len(REPLIES)]
