"""Conversations as a front end lists, reads, renames and switches them: the half of the dialogue manager that needs no model.

`Conversations` is the base of `chatbot.dialogue.manager.DialogueManager`: everything a
front end does with stored conversations besides answering (listing,
searching, showing, switching branches, renaming, keeping a message for later),
each one call to the store. It works before any model is loaded.
"""

from __future__ import annotations

from typing import Self

from chatbot.errors import ConfigError
from chatbot.storage import Branch, Conversation, ConversationStore, ConversationSummary, Transcript, Turn, open_store
from chatbot.text.messages import CleanMessage, clean_message


class Conversations:
    """Stored conversations for a front end, through `store`. No terminal or HTTP code, no model.

    Args:
        store: where conversations live.
    """

    def __init__(self, store: ConversationStore):
        self.store = store
        self.model_id: int | None = None  # the model new conversations are made with (set by DialogueManager.attach)

    @classmethod
    def open(cls, url: str | None = None, create: bool = True) -> Self:
        """A manager (no model yet) over the store at `url` (default: storage/chatbot.db).

        Raises:
            StorageError: the database cannot be opened (see ConversationStore); without `create`, it does not exist.
        """
        return cls(open_store(url, create=create))

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

    def start(self, owner: str | None = None, system_prompt: str | None = None) -> Conversation:
        """A new conversation (see `ConversationStore.create_conversation`)."""
        return self.store.create_conversation(self.model_id, owner, system_prompt)

    def resume(self, conversation_id: int) -> Conversation:
        """The stored conversation (to continue it). Raises ConversationNotFoundError for an unknown id."""
        return self.store.get_conversation(conversation_id)

    def sessions(self, limit: int | None = 10, search: str | None = None, owner: str | None = None) -> list[ConversationSummary]:
        """The most recent conversations first (see `ConversationStore.list_conversations`)."""
        return self.store.list_conversations(limit, search=search, owner=owner)

    def history(self, conversation_id: int) -> list[Turn]:
        """The active path of a conversation, first turn first."""
        return self.store.turns(conversation_id)

    def transcript(self, conversation_id: int, all_branches: bool = False) -> Transcript:
        """The active path with its alternatives and numbered branches (`chatbot.chat.views.transcript_lines` prints it).

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

    def unanswered(self, conversation_id: int) -> Turn | None:
        """The last turn of the active path when it is a user message with no reply yet (after a
        Ctrl-C mid-reply, a failed generation or a crash), else None."""
        last = self.store.turns(conversation_id, last=1)
        return last[0] if last and last[0].speaker == "user" else None

    def add_user_turn(self, conversation_id: int, text: str) -> Turn:
        """Clean and store a message without answering it (the chat keeps what is typed while the model
        loads; `answer(conversation_id, None, …)` answers it later).

        Raises:
            ConfigError: the message is empty after cleaning.
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        return self.store.add_turn(conversation_id, "user", cleaned_message(text).text)

    def last_user_turn(self, conversation_id: int) -> Turn:
        """The last user message on the active path. Raises ConfigError when there is none."""
        for turn in reversed(self.store.turns(conversation_id, last=2)):
            if turn.speaker == "user":
                return turn
        raise ConfigError("nothing to edit: the conversation has no message of yours yet")


def cleaned_message(text: str) -> CleanMessage:
    """`clean_message(text)`. Raises ConfigError when nothing is left."""
    cleaned = clean_message(text)
    if not cleaned.text:
        raise ConfigError("empty message: type some text (escape codes and control characters are removed)")
    return cleaned
