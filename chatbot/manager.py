"""DialogueManager: conversation state, context building and replies. No terminal I/O."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time

from chatbot.checkpoint import Checkpoint
from chatbot.corpus.dialogue import normalize_text
from chatbot.decoding import DecodingConfig, Generator
from chatbot.errors import ConfigError
from chatbot.store import Conversation, ConversationStore, Turn
from chatbot.training.data import context_array

MAX_MESSAGE_CHARS = 4000  # longer messages are cut before they are stored


@dataclasses.dataclass(frozen=True)
class Reply:
    """The stored user turn, the stored bot turn, and whether the user's message was cut."""

    user_turn: Turn
    bot_turn: Turn
    truncated: bool  # the message was longer than the model reads; only its start was used


class DialogueManager:
    """Starts and resumes conversations and answers in them.

    The context of a reply is the last `context_turns` stored turns of the
    conversation, so a resumed conversation continues with the same context.
    The user's turn is committed before generation, the bot's right after.

    Args:
        store: where conversations live.
        checkpoint: the model that answers.
        context_turns: stored turns fed as context (default: the model's window, max_turns - 1).
    """

    def __init__(self, store: ConversationStore, checkpoint: Checkpoint, context_turns: int | None = None):
        self.store = store
        self.checkpoint = checkpoint
        self.context_turns = checkpoint.model_config.max_turns - 1 if context_turns is None else context_turns
        if self.context_turns < 1:
            raise ConfigError(f"--context-turns must be at least 1, got {self.context_turns}")
        self.max_utterance_length = checkpoint.model_config.max_utterance_length
        self.generator = Generator(checkpoint.model)
        self.model_id = store.register_model(
            checkpoint.model_id,
            checkpoint.path.name,
            str(checkpoint.path.resolve()),
            dataclasses.asdict(checkpoint.model_config),
        )

    def start(self) -> Conversation:
        return self.store.create_conversation(self.model_id)

    def resume(self, conversation_id: int) -> Conversation:
        """Raises ConversationNotFoundError for an unknown id."""
        return self.store.get_conversation(conversation_id)

    def history(self, conversation_id: int) -> list[Turn]:
        return self.store.turns(conversation_id)

    def clean(self, text: str) -> str:
        """Whitespace-normalised text without control characters, cut to MAX_MESSAGE_CHARS."""
        text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
        return normalize_text(text)[:MAX_MESSAGE_CHARS]

    def is_truncated(self, text: str) -> bool:
        """True when the model reads only the start of `text` (more than max_utterance_length - 2 tokens)."""
        return len(self.checkpoint.tokenizer.encode(text)) > self.max_utterance_length - 2

    def reply(self, conversation_id: int, text: str, decoding: DecodingConfig, seed: int | None = None) -> Reply:
        """Store the user's message, generate and store the bot's reply.

        Raises:
            ConfigError: the message is empty after cleaning.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        text = self.clean(text)
        if not text:
            raise ConfigError("empty message: type some text")
        user_turn = self.store.add_turn(conversation_id, "user", text)
        seed = secrets.randbits(31) if seed is None else seed
        started = time.perf_counter()
        reply_text = self.generate(conversation_id, decoding, seed)
        latency_ms = (time.perf_counter() - started) * 1000.0
        bot_turn = self.store.add_turn(
            conversation_id,
            "bot",
            reply_text,
            model_id=self.model_id,
            decoding=decoding.to_dict(),
            seed=seed,
            latency_ms=round(latency_ms, 2),
        )
        return Reply(user_turn, bot_turn, self.is_truncated(text))

    def context_tokens(self, conversation_id: int):
        """`(1, num_turns, utterance_length)` int32: the last `context_turns` stored turns, framed."""
        turns = self.store.turns(conversation_id, last=self.context_turns)
        encoded = self.checkpoint.tokenizer.encode_batch([t.text for t in turns])
        return context_array(encoded, self.max_utterance_length)

    def generate(self, conversation_id: int, decoding: DecodingConfig, seed: int) -> str:
        """Reply text for the stored history (nothing is written)."""
        ids = self.generator.generate(self.context_tokens(conversation_id), decoding, seed)
        return self.checkpoint.tokenizer.decode(ids) or "…"


def decoding_of(turn: Turn) -> dict:
    return json.loads(turn.decoding) if turn.decoding else {}
