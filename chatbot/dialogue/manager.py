"""DialogueManager: conversations, branches, context and replies, for every front end. No terminal or HTTP code.

A whole exchange is one call (`DialogueManager.answer`, `.retry`, `.edit`): it
waits for the conversation's turn (`chatbot.storage.tickets`, so two chats,
requests or processes on one conversation are answered in order), cleans and
commits the user's message, generates from the stored context through a
`Responder`, lets the caller choose among candidates, commits the reply, and
returns an `Exchange` with the turns and their notes. The REPL, the HTTP
server, `replay`, `eval` and the benchmarks all reply through it or through
the same `Responder`, so none of them can answer differently. Context framing
comes from `chatbot.inference.framing`, shared with training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import cast

from chatbot.dialogue.conversations import Conversations, cleaned_message
from chatbot.errors import ConfigError
from chatbot.inference.checkpoint import Checkpoint
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.responder import Candidates, Responder, new_seed
from chatbot.storage import ConversationStore, Turn, decoding_of
from chatbot.storage.exchanges import Opened, opening, replying, retrying

BUSY_WAIT = 10.0  # seconds an exchange waits for a conversation busy with another reply before giving up


@dataclasses.dataclass(frozen=True)
class Exchange:
    """What one exchange stored, and what the person should be told about it.

    Attributes:
        conversation_id: the conversation (new when the call started one).
        user_turn: the message this call stored; None when it answered one already stored (a retry,
            or a message kept while the model loaded).
        reply: the stored reply; None when `choose` cancelled the pick (then nothing more was stored).
        candidates: every candidate made, best first (the reply is the chosen one).
        replaced: a retry's earlier reply, or an edit's earlier message: kept, as an alternative.
        removed: characters removed from the message (escape sequences, control characters).
        cut: characters beyond `chatbot.text.messages.MAX_MESSAGE_CHARS` that were dropped.
        window: (tokens the model reads, tokens) of the message when it reads only its start; else None.
        unanswered: the user message before this one, when it had no reply (after a cancelled
            reply or a crash): it is in this reply's context.
    """

    conversation_id: int
    user_turn: Turn | None
    reply: Turn | None
    candidates: Candidates
    replaced: Turn | None = None
    removed: int = 0
    cut: int = 0
    window: tuple[int, int] | None = None
    unanswered: Turn | None = None

    @property
    def chosen(self) -> int:
        """Index of the stored reply among `candidates` (0 without a pick)."""
        return int(decoding_of(self.reply).get("chosen", 0)) if self.reply is not None else 0


Choose = Callable[[Candidates], "int | None"]  # the index to store, or None to store nothing


def first_candidate(candidates: Candidates) -> int:
    return 0


class DialogueManager(Conversations):
    """Conversations and replies: what every front end talks to. No terminal or HTTP code.

    Conversations can be read while the model still loads (`Conversations`); `attach` adds it. A
    reply's context is the last `context_turns` turns of the path it answers; the user's turn is
    committed before generation, the bot's right after, one exchange per conversation at a time.

    Args:
        store: where conversations live.
        checkpoint, context_turns, generator: the model, attached at once when given (see `attach`).
        busy_wait: seconds an exchange waits for a conversation that is answering another message.

    Raises:
        ConfigError: `context_turns` < 1.
        StorageError: the model cannot be registered in the store.
    """

    def __init__(
        self,
        store: ConversationStore,
        checkpoint: Checkpoint | None = None,
        context_turns: int | None = None,
        generator=None,
        busy_wait: float = BUSY_WAIT,
    ):
        super().__init__(store)
        self.busy_wait = busy_wait
        self._responder: Responder | None = None
        if checkpoint is not None:
            self.attach(checkpoint, context_turns, generator)

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
        """The attached model's Responder. Raises ConfigError when no model is attached yet."""
        if self._responder is None:
            raise ConfigError("no model attached yet: DialogueManager.attach(checkpoint) first")
        return self._responder

    # --- exchanges --------------------------------------------------------

    def answer(
        self,
        conversation_id: int | None,
        text: str | None,
        decoding: DecodingConfig,
        seed: int | None = None,
        choose: Choose = first_candidate,
        after: int | None = None,
        owner: str | None = None,
        on_user_turn: Callable[[Turn], None] | None = None,
    ) -> Exchange:
        """One exchange: store the message, generate from the stored context, store the chosen reply.

        In order, holding the conversation's turn (`ReplyTickets.turn`: requests on one conversation
        are answered one at a time, in arrival order, on any number of processes): the message is
        cleaned (`chatbot.text.messages.clean_message`) and committed; the last `context_turns` turns of its
        path are the context; `decoding.num_return_sequences` candidates are generated with `seed`;
        `choose` picks one (None: nothing more is stored); the pick is committed as the reply, with
        what regenerates it (`Responder.settings`).

        Args:
            conversation_id: the conversation; None starts a new one (owned by `owner`).
            text: the user's message; None answers the conversation's last message, which must be an
                unanswered user turn.
            seed: the reply's seed (None: a fresh random one; every seed is stored).
            choose: picks the candidate to store (default: the best).
            after: store the message after this turn rather than at the end of the active path (a new
                branch when that turn already has a continuation); its path becomes the active one.
            on_user_turn: called with the committed message before generation starts (a streaming
                server sends its headers then).
        Raises:
            ConfigError: the message is empty after cleaning; `text` is None and the conversation does
                not end with an unanswered message; no model is attached.
            ConversationNotFoundError: unknown conversation or `after` turn.
            ConversationBusyError: the conversation stayed busy with another reply for `busy_wait` seconds.
            StorageError: the database cannot be written.
        """
        cleaned = cleaned_message(text) if text is not None else None
        if conversation_id is None:
            if cleaned is None:
                raise ConfigError("nothing to answer: a new conversation needs a message")
            conversation_id = self.start(owner).id
        step = opening(self.store, conversation_id, cleaned.text if cleaned else None, after, self.responder.history_turns)
        return self._answered(conversation_id, cleaned, step, decoding, seed, choose, on_user_turn)

    def _answered(self, conversation_id: int, cleaned, step, decoding, seed, choose, on_user_turn) -> Exchange:
        """The Exchange of a message stored (or found) by `step` and answered, with its notes."""
        opened, found, reply = self._exchange(conversation_id, step, decoding, seed, choose, on_user_turn)
        kept, total = self.responder.token_window(opened.asked.text)
        previous = opened.previous if opened.stored is not None else None
        return Exchange(
            conversation_id,
            opened.stored,
            reply,
            found,
            replaced=opened.replaced,
            removed=cleaned.removed if cleaned else 0,
            cut=cleaned.cut if cleaned else 0,
            window=(kept, total) if kept < total else None,
            unanswered=previous if previous is not None and previous.speaker == "user" else None,
        )

    def _exchange(self, conversation_id: int, step, decoding: DecodingConfig, seed: int | None, choose: Choose, on_user_turn):
        """Hold the conversation's turn: run `step` (storing the message, reading the context), generate, let
        `choose` pick, store the reply and give the turn back (`chatbot.storage.exchanges`, three transactions)."""
        responder = self.responder
        tickets = self.store.tickets
        with tickets.turn(conversation_id, self.busy_wait, first=step) as held:
            opened = cast(Opened, held.result)
            if on_user_turn is not None:
                on_user_turn(opened.asked)
            found = responder.candidates([t.text for t in opened.history], decoding, new_seed() if seed is None else seed)
            chosen = choose(found)
            reply = None
            if chosen is not None:
                settings, latency = responder.settings(found, chosen), round(found.latency_ms, 2)
                reply = tickets.release_with(
                    held, replying(self.store, opened, found.texts[chosen], self.model_id, settings, found.seed, latency)
                )
        return opened, found, reply

    def retry(
        self,
        conversation_id: int,
        decoding: DecodingConfig,
        seed: int | None = None,
        choose: Choose = first_candidate,
        reply_id: int | None = None,
        on_user_turn: Callable[[Turn], None] | None = None,
    ) -> Exchange:
        """A fresh reply in place of the last one (or of bot turn `reply_id`), which is kept as an alternative.

        When the conversation ends with an unanswered message (a cancelled reply, a crash), that
        message is answered instead. The new reply's branch becomes the active one.

        Raises:
            ConfigError: nothing to retry; `reply_id` is not a reply of this conversation.
            ConversationNotFoundError, ConversationBusyError, StorageError: as `answer`.
        """
        step = retrying(self.store, conversation_id, reply_id, self.responder.history_turns)
        opened, found, reply = self._exchange(conversation_id, step, decoding, seed, choose, on_user_turn)
        return Exchange(conversation_id, None, reply, found, replaced=opened.replaced)

    def edit(
        self,
        conversation_id: int,
        text: str,
        decoding: DecodingConfig,
        seed: int | None = None,
        choose: Choose = first_candidate,
        turn_id: int | None = None,
        on_user_turn: Callable[[Turn], None] | None = None,
    ) -> Exchange:
        """Rewrite the last message of yours (or user turn `turn_id`) and answer the new text.

        The new message is an alternative of the old one (a new branch, made active); the earlier
        message and everything after it stay stored on their branch.

        Raises:
            ConfigError: no message of yours to edit; `turn_id` is not a user turn of this
                conversation; the text is empty after cleaning.
            ConversationNotFoundError, ConversationBusyError, StorageError: as `answer`.
        """
        cleaned = cleaned_message(text)
        edited = self.last_user_turn(conversation_id).id if turn_id is None else turn_id
        step = opening(self.store, conversation_id, cleaned.text, None, self.responder.history_turns, replaces=edited)
        return self._answered(conversation_id, cleaned, step, decoding, seed, choose, on_user_turn)

    def pick(self, conversation_id: int, reply_id: int, index: int) -> Turn:
        """Store candidate `index` (0-based) of reply `reply_id`'s candidates in its place; the earlier
        pick stays as an alternative. The candidates' texts are stored with a reply made with several.

        Raises:
            ConfigError: the turn is not a reply of this conversation made with several candidates,
                or `index` is out of range.
        """
        reply = self.store.get_turn(reply_id)
        settings = decoding_of(reply)
        texts = settings.get("candidates")
        if reply.conversation_id != conversation_id or reply.speaker != "bot" or not texts:
            raise ConfigError(f"turn {reply_id} is not a reply with candidates in conversation {conversation_id}")
        if not 0 <= index < len(texts):
            raise ConfigError(f"pick: candidate {index} does not exist; pick from 0 to {len(texts) - 1}")
        with self.store.tickets.turn(conversation_id, self.busy_wait):
            return self.store.add_alternative(
                reply.id, texts[index], reply.model_id, {**settings, "chosen": index}, reply.seed, reply.latency_ms
            )
