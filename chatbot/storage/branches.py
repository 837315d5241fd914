"""The turn tree of a conversation: alternatives (siblings), the active path, switching between branches.

A conversation is a tree of turns: each turn points to the previous one
(``parent_id``), and one root-to-leaf path is active. Regenerating a reply
(or editing a message) adds a sibling that takes over the active path; the
turns it replaces stay stored as alternatives. `TurnTree` holds the operations
on the tree, one transaction each; `ConversationStore` owns one (`turn_tree`)
and offers its operations as its own methods (`on_tree`). Their SQL is in
`chatbot.storage.turns`, run inside the caller's transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import false, select, true
from sqlalchemy.orm import aliased

from chatbot.errors import ConversationNotFoundError
from chatbot.storage.schema import Branch, Conversation, ModelRecord, Transcript, Turn
from chatbot.storage.tickets import Transaction
from chatbot.storage.turns import activate_path, active_path, add_alternative, add_child, locked_turn, path_to

P = ParamSpec("P")
R = TypeVar("R")


def number_branches(tree: list[Turn]) -> list[Branch]:
    """The branches of a conversation given all its turns (`TurnTree.tree`), by number.

    A turn continues its parent's branch if it is the parent's first child, and starts a
    new branch if the parent already had one (a /retry or /edit), so numbers never change
    as branches grow.
    """
    by_id = {turn.id: turn for turn in tree}
    number_of: dict[int | None, int] = {}
    leaf_of: dict[int, Turn] = {}
    has_child: set[int | None] = set()
    for turn in sorted(tree, key=lambda t: t.id):
        number = len(leaf_of) + 1 if turn.parent_id in has_child else number_of.get(turn.parent_id, 1)
        has_child.add(turn.parent_id)
        number_of[turn.id] = number
        leaf_of[number] = turn
    found: list[Branch] = []
    for number, leaf in sorted(leaf_of.items()):
        path: list[Turn] = []
        step: Turn | None = leaf
        while step is not None:
            path.append(step)
            step = by_id.get(step.parent_id) if step.parent_id is not None else None
        path.reverse()
        fork = next((index for index, turn in enumerate(path) if not turn.active), None)
        found.append(Branch(number, path, fork))
    return found


class TurnTree:
    """Reads and writes of the turn tree, one transaction each (a store's `turn_tree`).

    Args:
        transaction: the store's transaction factory (`ConversationStore._transaction`).
        conversation: reads one conversation or raises ConversationNotFoundError (`ConversationStore.get_conversation`).
        models: reads every registered model by id (`ConversationStore.models`).
        not_found: builds the error for an unknown conversation id.
    """

    def __init__(
        self,
        transaction: Transaction,
        conversation: Callable[[int], Conversation],
        models: Callable[[], dict[int, ModelRecord]],
        not_found: Callable[[int], ConversationNotFoundError],
    ):
        self._transaction = transaction
        self._conversation = conversation
        self._models = models
        self._not_found = not_found

    def turns(self, conversation_id: int, last: int | None = None) -> list[Turn]:
        """The active path of a conversation in order; with `last`, only its final `last` turns."""
        query = active_path(conversation_id)
        if last is not None:
            query = query.limit(last)
        with self._transaction() as session:
            rows = list(session.scalars(query))
        return rows[::-1]

    def branches(self, conversation_id: int) -> list[Branch]:
        """Every branch of a conversation, numbered as /switch and `replay --all-branches` show them (`number_branches`)."""
        return number_branches(self.tree(conversation_id))

    def transcript(self, conversation_id: int, all_branches: bool = False) -> Transcript:
        """The active path with its alternatives, and the numbered branches when there are
        alternatives or `all_branches` asks for them.

        Raises:
            ConversationNotFoundError: unknown conversation.
        """
        conversation = self._conversation(conversation_id)
        alternatives = self.alternatives_on_path(conversation_id)
        if alternatives or all_branches:
            tree = self.tree(conversation_id)  # ordered by position: its active turns are the active path
            turns, found = [turn for turn in tree if turn.active], number_branches(tree)
        else:
            turns, found = self.turns(conversation_id), []
        return Transcript(conversation, turns, alternatives, found, self._models(), all_branches)

    def add_alternative(
        self,
        turn_id: int,
        text: str,
        model_id: int | None = None,
        decoding: dict | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
    ) -> Turn:
        """Add a sibling of turn `turn_id` (same conversation, parent, position, speaker) and make it active.

        `turn_id` and the active turns after it become inactive; they stay
        stored and `alternatives` still lists them. If `turn_id` is itself off
        the active path, the path is switched to run through the new turn.
        Editing the first user message retitles the conversation unless it was renamed.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
            StorageError: the database cannot be written.
        """
        with self._transaction(write=True) as session:
            return add_alternative(session, turn_id, text, model_id, decoding, seed, latency_ms)

    def add_child(
        self,
        parent_id: int,
        speaker: str,
        text: str,
        model_id: int | None = None,
        decoding: dict | None = None,
        seed: int | None = None,
        latency_ms: float | None = None,
    ) -> Turn:
        """Add a turn after turn `parent_id` and make the path through it the active one.

        When `parent_id` already has children, the new turn is their alternative (a new branch);
        when it ends the active path, this is an append.

        Raises:
            ConversationNotFoundError: no turn with id `parent_id`.
            StorageError: the database cannot be written.
        """
        with self._transaction(write=True) as session:
            return add_child(session, parent_id, speaker, text, model_id, decoding, seed, latency_ms)

    def activate(self, turn_id: int) -> list[Turn]:
        """Make the path through turn `turn_id` the active one and return it.

        The path runs from the first turn down to `turn_id`, then on through the
        newest child of each turn to a leaf: switching to a leaf selects exactly
        that branch. Nothing is deleted.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
            StorageError: the database cannot be written.
        """
        with self._transaction(write=True) as session:
            target = locked_turn(session, turn_id)
            activate_path(session, target)
        return self.turns(target.conversation_id)

    def path(self, turn_id: int, last: int | None = None) -> list[Turn]:
        """The turns from the first of the conversation to turn `turn_id`, following parents (on any branch);
        with `last`, only the final `last` of them.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
        """
        with self._transaction() as session:
            return path_to(session, turn_id, last)

    def get_turn(self, turn_id: int) -> Turn:
        """Raises ConversationNotFoundError for an unknown turn id."""
        with self._transaction() as session:
            turn = session.get(Turn, turn_id)
        if turn is None:
            raise ConversationNotFoundError(f"no turn with id {turn_id}")
        return turn

    def active_paths(self, conversation_ids: list[int] | None = None) -> Iterator[tuple[Conversation, list[Turn]]]:
        """(conversation, its active path) for the given conversations, or all of them, oldest first.

        Raises:
            ConversationNotFoundError: one of `conversation_ids` is unknown (checked before anything is yielded).
        """
        query = select(Conversation).order_by(Conversation.id)
        turns = select(Turn).where(Turn.active == true()).order_by(Turn.conversation_id, Turn.position)
        if conversation_ids is not None:
            query = query.where(Conversation.id.in_(conversation_ids))
            turns = turns.where(Turn.conversation_id.in_(conversation_ids))
        # One transaction, so a conversation created (or turned) between the two reads cannot
        # show turns without its conversation: a snapshot on PostgreSQL's repeatable read and SQLite's WAL.
        with self._transaction(snapshot=True) as session:
            conversations = list(session.scalars(query))
            paths: dict[int, list[Turn]] = {c.id: [] for c in conversations}
            for turn in session.scalars(turns):
                if turn.conversation_id in paths:
                    paths[turn.conversation_id].append(turn)
        missing = sorted(set(conversation_ids or ()) - set(paths))
        if missing:
            raise self._not_found(missing[0])
        for conversation in conversations:
            yield conversation, paths[conversation.id]

    def find_path(self, digest: str, owner: str | None = None, conversation_id: int | None = None) -> Turn | None:
        """The last turn of a stored path whose `path_digest` is `digest` (the active one first, then the newest).

        Args:
            owner: only in this API key's conversations (None: in any conversation).
            conversation_id: only in this conversation.
        """
        query = select(Turn).join(Conversation, Conversation.id == Turn.conversation_id).where(Turn.path_digest == digest)
        if owner is not None:
            query = query.where(Conversation.owner == owner)
        if conversation_id is not None:
            query = query.where(Turn.conversation_id == conversation_id)
        with self._transaction() as session:
            return session.scalar(query.order_by(Turn.active.desc(), Turn.id.desc()).limit(1))

    def children(self, turn_id: int) -> list[Turn]:
        """The turns that follow turn `turn_id` (its continuations on every branch), oldest first."""
        with self._transaction() as session:
            return list(session.scalars(select(Turn).where(Turn.parent_id == turn_id).order_by(Turn.id)))

    def tree(self, conversation_id: int) -> list[Turn]:
        """Every turn of a conversation, all branches, by position then age (parents before children)."""
        with self._transaction() as session:
            return list(session.scalars(select(Turn).where(Turn.conversation_id == conversation_id).order_by(Turn.position, Turn.id)))

    def alternatives(self, turn_id: int) -> list[Turn]:
        """Turn `turn_id` and its siblings (same parent and position), oldest first.

        Raises:
            ConversationNotFoundError: no turn with id `turn_id`.
        """
        with self._transaction() as session:
            turn = session.get(Turn, turn_id)
            if turn is None:
                raise ConversationNotFoundError(f"no turn with id {turn_id}")
            query = (
                select(Turn)
                .where(
                    Turn.conversation_id == turn.conversation_id,
                    Turn.position == turn.position,
                    Turn.parent_id.is_not_distinct_from(turn.parent_id),
                )
                .order_by(Turn.id)
            )
            return list(session.scalars(query))

    def alternatives_on_path(self, conversation_id: int) -> dict[int, list[Turn]]:
        """For each active turn that has siblings, its (inactive) siblings oldest first, keyed by the active turn's id.

        Active turns without alternatives are left out; keys follow the path's order.
        """
        on_path = aliased(Turn)
        query = (
            select(on_path.id, Turn)
            .join(
                Turn,
                (Turn.conversation_id == on_path.conversation_id)
                & (Turn.position == on_path.position)
                & Turn.parent_id.is_not_distinct_from(on_path.parent_id)
                & (Turn.active == false()),  # a sibling of an active turn is inactive: lets the index cover the join
            )
            .where(on_path.conversation_id == conversation_id, on_path.active == true())
            .order_by(on_path.position, Turn.id)
        )
        with self._transaction() as session:
            rows = session.execute(query).all()
        siblings: dict[int, list[Turn]] = {}
        for active_id, sibling in rows:
            siblings.setdefault(active_id, []).append(sibling)
        return siblings


class HasTurnTree(Protocol):
    """Whatever owns a turn tree and offers its operations (`ConversationStore`)."""

    turn_tree: TurnTree


def on_tree(operation: Callable[Concatenate[TurnTree, P], R]) -> Callable[Concatenate[HasTurnTree, P], R]:
    """A method of the owner of a `turn_tree` that runs `operation` on it: ``branches = on_tree(TurnTree.branches)``
    makes ``store.branches(id)`` mean ``store.turn_tree.branches(id)``, with the same signature (checked by mypy) and docstring."""

    @functools.wraps(operation)
    def forward(owner: HasTurnTree, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return operation(owner.turn_tree, *args, **kwargs)

    return forward
