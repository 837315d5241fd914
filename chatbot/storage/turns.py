"""The SQL of single turns, run inside the caller's transaction: append, branch, switch the active path, read a path.

`ConversationStore`, the `TurnTree` operations and the exchange steps
(`chatbot.storage.exchanges`) each open one transaction and call these, so
several of them can share one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select, true, update
from sqlalchemy.orm import Session

from chatbot.errors import ConversationChangedError, ConversationNotFoundError
from chatbot.storage.schema import SPEAKERS, Conversation, Turn, auto_title, path_digest, utc_now


def active_path(conversation_id: int):
    """Active turns of a conversation, last first (an index range scan over (conversation_id, active, position))."""
    return select(Turn).where(Turn.conversation_id == conversation_id, Turn.active == true()).order_by(Turn.position.desc())


def new_turn(
    parent: Turn | None,
    conversation_id: int,
    speaker: str,
    text: str,
    model_id: int | None,
    decoding: dict | None,
    seed: int | None,
    latency_ms: float | None,
) -> Turn:
    """An active turn following `parent` (or first in the conversation)."""
    return Turn(
        conversation_id=conversation_id,
        parent_id=None if parent is None else parent.id,
        position=0 if parent is None else parent.position + 1,
        active=True,
        speaker=speaker,
        text=text,
        created_at=utc_now(),
        model_id=model_id,
        decoding=json.dumps(decoding) if decoding is not None else None,
        seed=seed,
        latency_ms=latency_ms,
        path_digest=path_digest(None if parent is None else parent.path_digest, speaker, text),
    )


def locked_turn(session: Session, turn_id: int) -> Turn:
    """Turn `turn_id`, with its conversation locked for writing (one writer per conversation).

    Raises:
        ConversationNotFoundError: no turn with id `turn_id`.
    """
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise ConversationNotFoundError(f"no turn with id {turn_id}")
    session.get(Conversation, turn.conversation_id, with_for_update=True)
    return turn


def activate_path(session: Session, turn: Turn) -> None:
    """Make the path through `turn` the active one: up to the first turn, and down through the
    newest child of each turn to a leaf. Only the turns that change are touched: the inactive
    ancestors up to where the path joins the active one, and the active turns below that point.
    """
    inactive_ancestors: list[Turn] = []
    fork_position = -1
    parent_id = turn.parent_id
    while parent_id is not None:
        ancestor = session.get_one(Turn, parent_id)
        if ancestor.active:
            fork_position = ancestor.position
            break
        inactive_ancestors.append(ancestor)
        parent_id = ancestor.parent_id
    descendants: list[Turn] = []
    current = turn
    while True:
        child = session.scalar(
            select(Turn).where(Turn.conversation_id == turn.conversation_id, Turn.parent_id == current.id).order_by(Turn.id.desc()).limit(1)
        )
        if child is None:
            break
        descendants.append(child)
        current = child
    session.execute(
        update(Turn)
        .where(Turn.conversation_id == turn.conversation_id, Turn.active == true(), Turn.position > fork_position)
        .values(active=False)
    )
    for on_path in [*inactive_ancestors, turn, *descendants]:
        on_path.active = True


def append_turn(
    session: Session,
    conversation_id: int,
    speaker: str,
    text: str,
    model_id=None,
    decoding: dict | None = None,
    seed=None,
    latency_ms=None,
    after: int | None = None,
    not_found: Callable[[int], ConversationNotFoundError] = lambda c: ConversationNotFoundError(f"no conversation with id {c}"),
) -> Turn:
    """`ConversationStore.add_turn` inside the caller's write transaction."""
    if speaker not in SPEAKERS:
        raise ValueError(f"speaker must be one of {SPEAKERS}, got {speaker!r}")
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise not_found(conversation_id)
    parent = session.scalar(active_path(conversation_id).limit(1))
    if after is not None and (parent is None or parent.id != after):
        raise ConversationChangedError(
            f"conversation {conversation_id} changed in another chat while this reply was made, so it was not "
            "stored: /history shows the conversation, /retry answers its last message"
        )
    turn = new_turn(parent, conversation_id, speaker, text, model_id, decoding, seed, latency_ms)
    session.add(turn)
    session.flush()  # gives the turn its id
    if speaker == "user" and conversation.title is None:
        conversation.title = auto_title(text)
    return turn


def add_alternative(
    session: Session, turn_id: int, text: str, model_id=None, decoding: dict | None = None, seed=None, latency_ms=None
) -> Turn:
    """`TurnTree.add_alternative` inside the caller's write transaction."""
    original = locked_turn(session, turn_id)
    conversation = session.get_one(Conversation, original.conversation_id)
    if original.position == 0 and original.speaker == "user" and conversation.title == auto_title(original.text):
        conversation.title = auto_title(text)
    parent = session.get(Turn, original.parent_id) if original.parent_id is not None else None
    turn = new_turn(parent, original.conversation_id, original.speaker, text, model_id, decoding, seed, latency_ms)
    session.add(turn)
    session.flush()  # gives the turn its id
    activate_path(session, turn)
    return turn


def add_child(
    session: Session, parent_id: int, speaker: str, text: str, model_id=None, decoding: dict | None = None, seed=None, latency_ms=None
) -> Turn:
    """`TurnTree.add_child` inside the caller's write transaction."""
    parent = locked_turn(session, parent_id)
    turn = new_turn(parent, parent.conversation_id, speaker, text, model_id, decoding, seed, latency_ms)
    session.add(turn)
    session.flush()  # gives the turn its id
    activate_path(session, turn)
    return turn


def path_to(session: Session, turn_id: int, last: int | None = None) -> list[Turn]:
    """`TurnTree.path` inside the caller's transaction. Raises ConversationNotFoundError for an unknown turn."""
    found: list[Turn] = []
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise ConversationNotFoundError(f"no turn with id {turn_id}")
    while turn is not None and (last is None or len(found) < last):
        found.append(turn)
        turn = session.get(Turn, turn.parent_id) if turn.parent_id is not None else None
    return found[::-1]
