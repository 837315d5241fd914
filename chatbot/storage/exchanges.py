"""One exchange's reads and writes in as few transactions as they fit: the message with the turn, the reply with its release.

An exchange holds its conversation's turn (`chatbot.storage.tickets`) while it
stores the user's message, reads the context, generates and stores the reply.
The steps here are run inside the tickets' own transactions: `opening` in the
one that finds the ticket first in line (usually the one that takes it),
`replying` in the one that gives it back, so an exchange costs three
transactions (take, give back, and the generation between them reads nothing)
rather than seven.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sqlalchemy.orm import Session

from chatbot.errors import ConfigError
from chatbot.storage.schema import Turn
from chatbot.storage.turns import active_path, add_alternative, add_child, append_turn, path_to


@dataclasses.dataclass(frozen=True)
class Opened:
    """What an exchange found and stored when it got its turn.

    Attributes:
        asked: the user turn to answer (stored now, or already stored).
        stored: the user turn this exchange stored (None: it answers one already stored).
        previous: the turn the message follows (None for a first message).
        replaced: a retry's earlier reply (kept as an alternative when the new one is stored), or an
            edit's earlier message (kept, on its branch).
        history: the last `context` turns of the path ending at `asked`, first first.
    """

    asked: Turn
    stored: Turn | None
    previous: Turn | None
    replaced: Turn | None
    history: list[Turn]


def opening(
    store, conversation_id: int, text: str | None, after: int | None, context: int, replaces: int | None = None
) -> Callable[[Session], Opened]:
    """The step that stores `text` after turn `after` (None: at the end of the active path), or as an
    alternative of user turn `replaces` (an edit: a new branch, the first message included), or, with
    `text` None, finds the unanswered message that ends the conversation; and reads the context.

    Raises (when run):
        ConfigError: `text` is None and the conversation does not end with an unanswered message;
            `after` or `replaces` is not a turn of this conversation.
        ConversationNotFoundError: unknown conversation or turn.
    """

    def step(session: Session) -> Opened:
        if replaces is not None:
            edited = session.get(Turn, replaces)
            if edited is None or edited.conversation_id != conversation_id or edited.speaker != "user" or text is None:
                raise ConfigError(f"turn {replaces} is not a message of yours in conversation {conversation_id}")
            asked = add_alternative(session, replaces, text)
            previous = session.get(Turn, asked.parent_id) if asked.parent_id is not None else None
            return Opened(asked, asked, previous, edited, path_to(session, asked.id, context))
        if after is not None:
            previous = session.get(Turn, after)
            if previous is None or previous.conversation_id != conversation_id:
                raise ConfigError(f"turn {after} is not in conversation {conversation_id}")
        else:
            previous = session.scalar(active_path(conversation_id).limit(1))
        if text is None:
            if previous is None or previous.speaker != "user":
                raise ConfigError("nothing to answer: the conversation does not end with a message of yours")
            asked, stored, previous = previous, None, session.get(Turn, previous.parent_id) if previous.parent_id else None
        elif after is None:
            asked = stored = append_turn(session, conversation_id, "user", text, not_found=store._not_found)
        else:
            asked = stored = add_child(session, after, "user", text)
        return Opened(asked, stored, previous, None, path_to(session, asked.id, context))

    return step


def retrying(store, conversation_id: int, reply_id: int | None, context: int) -> Callable[[Session], Opened]:
    """The step that finds what a retry answers: the last reply's message (or bot turn `reply_id`'s), or
    an unanswered message that ends the conversation; and reads the context.

    Raises (when run):
        ConfigError: nothing to retry; `reply_id` is not a reply of this conversation.
    """

    def step(session: Session) -> Opened:
        if reply_id is None:
            last = session.scalar(active_path(conversation_id).limit(1))
            if last is None:
                raise ConfigError("nothing to retry: the conversation has no messages yet")
        else:
            last = session.get(Turn, reply_id)
            if last is None or last.conversation_id != conversation_id or last.speaker != "bot":
                raise ConfigError(f"turn {reply_id} is not a reply in conversation {conversation_id}")
        if last.speaker == "user":
            asked, replaced = last, None
        elif last.parent_id is None:
            raise ConfigError("nothing to retry: the reply answers no message")
        else:
            asked, replaced = session.get_one(Turn, last.parent_id), last
        previous = session.get(Turn, asked.parent_id) if asked.parent_id is not None else None
        return Opened(asked, None, previous, replaced, path_to(session, asked.id, context))

    return step


def replying(store, opened: Opened, text: str, model_id, decoding: dict, seed: int, latency_ms: float) -> Callable[[Session], Turn]:
    """The step that stores the reply: after the message it answers (which must still end the conversation,
    else ConversationChangedError), or, for a retry, as an alternative of the reply it replaces."""

    def step(session: Session) -> Turn:
        if opened.replaced is not None and opened.replaced.speaker == "bot":
            return add_alternative(session, opened.replaced.id, text, model_id, decoding, seed, latency_ms)
        conversation_id = opened.asked.conversation_id
        return append_turn(session, conversation_id, "bot", text, model_id, decoding, seed, latency_ms, opened.asked.id, store._not_found)

    return step
