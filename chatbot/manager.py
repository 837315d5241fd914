"""DialogueManager: conversations, branches, context and replies, for any front end. No terminal I/O.

`DialogueManager` is what the REPL talks to: it lists, resumes, renames and
switches conversations through the store, and answers through a `Responder`
(checkpoint, context window, generator) once a model is attached. Context
framing comes from `chatbot.framing`, shared with training.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

from chatbot.checkpoint import Checkpoint
from chatbot.corpus.dialogue import normalize_text
from chatbot.decoding import DECODER_VERSION, DecodingConfig
from chatbot.errors import ConfigError
from chatbot.framing import context_array
from chatbot.messages import clean_message
from chatbot.storage import Branch, Conversation, ConversationStore, ConversationSummary, Transcript, Turn, open_store


@dataclasses.dataclass(frozen=True)
class Reply:
    """The stored user turn, the stored bot turn, and whether the user's message was cut."""

    user_turn: Turn
    bot_turn: Turn
    truncated: bool  # the message was longer than the model reads; only its start was used


class Responder:
    """A model answering stored histories: checkpoint, context window and compiled generator. No storage.

    Args:
        checkpoint: the model that answers.
        context_turns: turns of a history fed as context (default: the model's window, max_turns - 1).
        generator: a ReplyGenerator already built for this checkpoint (e.g. loaded in the background).

    Raises:
        ConfigError: `context_turns` < 1.
    """

    def __init__(self, checkpoint: Checkpoint, context_turns: int | None = None, generator=None):
        self.checkpoint = checkpoint
        self.context_turns = default_context_turns(checkpoint) if context_turns is None else context_turns
        if self.context_turns < 1:
            raise ConfigError(f"--context-turns must be at least 1, got {self.context_turns}")
        self.max_utterance_length = checkpoint.model_config.max_utterance_length
        self.generator = generator or make_generator(checkpoint, self.context_turns)

    def token_window(self, text: str) -> tuple[int, int]:
        """(tokens of `text` the model reads, tokens of `text`): it reads at most max_utterance_length - 2."""
        total = len(self.checkpoint.tokenizer.encode(text))
        return min(total, self.max_utterance_length - 2), total

    def is_truncated(self, text: str) -> bool:
        """True when the model reads only the start of `text` (see `token_window`)."""
        kept, total = self.token_window(text)
        return kept < total

    def context_tokens(self, history: list[str]):
        """`(1, num_turns, utterance_length)` int32: the last `context_turns` texts of `history`, framed."""
        encoded = self.checkpoint.tokenizer.encode_batch(list(history[-self.context_turns :]))
        return context_array(encoded, self.max_utterance_length)

    def candidates(self, history: list[str], decoding: DecodingConfig, seed: int, eager: bool = False) -> Candidates:
        """`decoding.num_return_sequences` candidate replies to the texts of `history`, best first
        (with `eager`, on the eager path even when the generator is compiled)."""
        started = time.perf_counter()
        found = self.generator.candidates(self.context_tokens(history), decoding, seed, eager=eager)
        texts = [normalize_text(self.checkpoint.tokenizer.decode(list(c.token_ids))) or "…" for c in found]
        return Candidates(texts, found, decoding, seed, (time.perf_counter() - started) * 1000.0)

    def settings(self, candidates: Candidates, chosen: int = 0) -> dict:
        """What regenerates a stored reply exactly: the decoding settings plus the pick, context window,
        decoder version and path (compiled or eager)."""
        decoding = candidates.decoding.to_dict()
        if len(candidates.texts) > 1:
            decoding["chosen"] = chosen
        decoding["context_turns"] = self.context_turns
        decoding["decoder_version"] = DECODER_VERSION
        decoding["compiled"] = all(c.compiled for c in candidates.found)
        return decoding


class DialogueManager:
    """Conversations and replies: what the REPL (and any other front end) talks to. No terminal I/O.

    The store is there from the start, so conversations can be listed, shown,
    resumed, renamed and switched while the model is still loading; `attach`
    adds the model when it is ready, and only replies need it. The context of a
    reply is the last `context_turns` turns on the conversation's active path,
    so a resumed conversation continues with the same context. The user's turn
    is committed before generation, the bot's right after.

    Args:
        store: where conversations live.
        checkpoint, context_turns, generator: the model, attached at once when given (see `attach`).

    Raises:
        ConfigError: `context_turns` < 1.
        StorageError: the model cannot be registered in the store.
    """

    def __init__(self, store: ConversationStore, checkpoint: Checkpoint | None = None, context_turns: int | None = None, generator=None):
        self.store = store
        self._responder: Responder | None = None
        self.model_id: int | None = None
        if checkpoint is not None:
            self.attach(checkpoint, context_turns, generator)

    @classmethod
    def open(cls, url: str | None = None) -> DialogueManager:
        """A manager without a model over the store at `url` (default: storage/chatbot.db).

        Raises:
            StorageError: the database cannot be opened (see ConversationStore).
        """
        return cls(open_store(url))

    def attach(self, checkpoint: Checkpoint, context_turns: int | None = None, generator=None) -> None:
        """Answer with this model from now on, registering it in the store.

        Args:
            context_turns: stored turns fed as context (default: the model's window, max_turns - 1).
            generator: a ReplyGenerator already built for this checkpoint (e.g. loaded in the background).
        Raises:
            ConfigError: `context_turns` < 1.
            StorageError: the model cannot be registered.
        """
        responder = Responder(checkpoint, context_turns, generator)
        self.model_id = self.store.register_model(
            checkpoint.model_id,
            checkpoint.path.name,
            str(checkpoint.path.resolve()),
            dataclasses.asdict(checkpoint.model_config),
        )
        self._responder = responder

    @property
    def ready(self) -> bool:
        """A model is attached: replies can be generated."""
        return self._responder is not None

    @property
    def responder(self) -> Responder:
        if self._responder is None:
            raise ConfigError("no model attached yet: DialogueManager.attach(checkpoint) first")
        return self._responder

    @property
    def checkpoint(self) -> Checkpoint:
        return self.responder.checkpoint

    @property
    def context_turns(self) -> int:
        return self.responder.context_turns

    @property
    def max_utterance_length(self) -> int:
        return self.responder.max_utterance_length

    @property
    def generator(self):
        return self.responder.generator

    @property
    def upgrade_note(self) -> str | None:
        """One line for the person when opening upgraded the database's schema (None otherwise)."""
        return self.store.upgrade_note

    def check_writable(self) -> None:
        """Raise StorageError now if the store cannot be written (see `ConversationStore.check_writable`)."""
        self.store.check_writable()

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()

    # --- conversations --------------------------------------------------

    def start(self) -> Conversation:
        return self.store.create_conversation(self.model_id)

    def resume(self, conversation_id: int) -> Conversation:
        """The stored conversation (to continue it). Raises ConversationNotFoundError for an unknown id."""
        return self.store.get_conversation(conversation_id)

    def sessions(self, limit: int | None = 10, search: str | None = None) -> list[ConversationSummary]:
        """The most recent conversations first (see `ConversationStore.list_conversations`)."""
        return self.store.list_conversations(limit, search=search)

    def history(self, conversation_id: int) -> list[Turn]:
        """The active path of a conversation, first turn first."""
        return self.store.turns(conversation_id)

    def transcript(self, conversation_id: int, all_branches: bool = False) -> Transcript:
        """The active path with its alternatives and numbered branches (`chatbot.transcript.transcript_lines` prints it).

        Raises:
            ConversationNotFoundError: unknown conversation.
        """
        return self.store.transcript(conversation_id, all_branches)

    def branches(self, conversation_id: int) -> list[Branch]:
        """Every branch of a conversation (made by /retry and /edit), by number."""
        return self.store.branches(conversation_id)

    def switch(self, conversation_id: int, number: int) -> list[Turn]:
        """Continue from branch `number` (1-based, as `branches` numbers them); returns its path.

        Raises:
            ConfigError: no branch with that number.
        """
        found = self.branches(conversation_id)
        if not 1 <= number <= len(found):
            raise ConfigError(f"usage: /switch N with N from 1 to {len(found)} (see /branches)")
        return self.store.activate(found[number - 1].path[-1].id)

    def rename(self, conversation_id: int, title: str) -> Conversation:
        """Set the title (whitespace collapsed, cut to TITLE_LENGTH characters).

        Raises:
            ConfigError: the title is empty.
            ConversationNotFoundError: unknown conversation.
        """
        try:
            return self.store.rename_conversation(conversation_id, title)
        except ValueError as exc:
            raise ConfigError(f"rename: {exc}") from None

    def clean(self, text: str) -> str:
        """The text stored for a message: `chatbot.messages.clean_message` (no escape or control characters, ≤ 64 Ki)."""
        return clean_message(text).text

    # --- replies --------------------------------------------------------

    def add_user_turn(self, conversation_id: int, text: str) -> Turn:
        """Clean and store the user's message (committed before any generation).

        Raises:
            ConfigError: the message is empty after cleaning.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        text = self.clean(text)
        if not text:
            raise ConfigError("empty message: type some text")
        return self.store.add_turn(conversation_id, "user", text)

    def candidates(self, history: list[Turn], decoding: DecodingConfig, seed: int) -> Candidates:
        """Generate `decoding.num_return_sequences` candidate replies to `history` (nothing is written)."""
        found = self.responder.candidates([t.text for t in history], decoding, seed)
        return dataclasses.replace(found, after_turn_id=history[-1].id if history else None)

    def add_bot_turn(self, conversation_id: int, candidates: Candidates, chosen: int = 0, replaces: Turn | None = None) -> Turn:
        """Store candidate `chosen` as the bot's turn; with `replaces`, as an alternative to that
        turn (which is kept, inactive). With several candidates the choice is recorded."""
        decoding = self.responder.settings(candidates, chosen)
        text, seed, latency_ms = candidates.texts[chosen], candidates.seed, round(candidates.latency_ms, 2)
        if replaces is not None:
            return self.store.add_alternative(replaces.id, text, self.model_id, decoding, seed, latency_ms)
        return self.store.add_turn(conversation_id, "bot", text, self.model_id, decoding, seed, latency_ms, after=candidates.after_turn_id)

    def reply(self, conversation_id: int, text: str, decoding: DecodingConfig, seed: int | None = None) -> Reply:
        """Store the user's message, generate and store the bot's reply (the best candidate).

        Raises:
            ConfigError: the message is empty after cleaning.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        user_turn = self.add_user_turn(conversation_id, text)
        found = self.candidates(self.context(conversation_id), decoding, new_seed() if seed is None else seed)
        return Reply(user_turn, self.add_bot_turn(conversation_id, found), self.responder.is_truncated(user_turn.text))

    def edit_user_turn(self, conversation_id: int, text: str, previous: Turn | None = None) -> tuple[Turn, Turn]:
        """Store `text` as an alternative to the last user message on the active path and make it active.

        The earlier message and the replies after it stay stored, on their own branch.
        `previous`: that last user message, when the caller has already read it.

        Returns:
            (the new user turn, the turn it replaced).
        Raises:
            ConfigError: the conversation has no user message yet, or `text` is empty after cleaning.
            StorageError: the database cannot be written.
        """
        text = self.clean(text)
        if not text:
            raise ConfigError("empty message: type some text")
        previous = previous or self.last_user_turn(conversation_id)
        return self.store.add_alternative(previous.id, text), previous

    def last_user_turn(self, conversation_id: int) -> Turn:
        """The last user message on the active path. Raises ConfigError when there is none."""
        for turn in reversed(self.store.turns(conversation_id, last=2)):
            if turn.speaker == "user":
                return turn
        raise ConfigError("nothing to edit: the conversation has no message of yours yet")

    def unanswered(self, conversation_id: int) -> Turn | None:
        """The last turn of the active path when it is a user message with no reply yet (after a
        Ctrl-C mid-reply, a failed generation or a crash), else None."""
        last = self.store.turns(conversation_id, last=1)
        return last[0] if last and last[0].speaker == "user" else None

    def last_bot_turn(self, conversation_id: int) -> tuple[Turn, list[Turn]]:
        """The last turn of the active path, which must be the bot's, and the history before it.

        Raises:
            ConfigError: the conversation does not end with a bot reply.
        """
        turns = self.store.turns(conversation_id, last=self.context_turns + 1)
        if not turns or turns[-1].speaker != "bot":
            raise ConfigError("nothing to retry: the conversation does not end with a bot reply")
        return turns[-1], turns[:-1]

    # --- context --------------------------------------------------------

    def context(self, conversation_id: int) -> list[Turn]:
        """The last `context_turns` turns of the active path."""
        return self.store.turns(conversation_id, last=self.context_turns)

    def context_tokens(self, history: list[Turn]):
        """`(1, num_turns, utterance_length)` int32: the last `context_turns` of `history`, framed."""
        return self.responder.context_tokens([t.text for t in history])

    def generate(self, conversation_id: int, decoding: DecodingConfig, seed: int) -> str:
        """Reply text for the stored history (nothing is written)."""
        return self.candidates(self.context(conversation_id), decoding, seed).texts[0]


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Candidate replies, best first, with how they were made (enough to regenerate them)."""

    texts: list[str]
    found: list  # generation.Candidate: token ids, log-probability (nats), score
    decoding: DecodingConfig
    seed: int
    latency_ms: float  # wall time to generate them all
    after_turn_id: int | None = None  # the last turn of the history they answer (a reply is stored only after it)


def new_seed() -> int:
    return secrets.randbits(31)


def default_context_turns(checkpoint: Checkpoint) -> int:
    return checkpoint.model_config.max_turns - 1


def make_generator(checkpoint: Checkpoint, context_turns: int | None = None, background_compile: bool = False):
    """A ReplyGenerator sized for this checkpoint's contexts (imports TensorFlow)."""
    from chatbot.generation import ReplyGenerator

    turns = default_context_turns(checkpoint) if context_turns is None else context_turns
    shape = (max(turns, 1), checkpoint.model_config.max_utterance_length)
    return ReplyGenerator(checkpoint.model, shape, background_compile=background_compile)
