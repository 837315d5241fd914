"""The queue of one conversation's replies, shared by every process on the database: tickets.

A front end about to answer a message in a conversation takes a ticket (a row
of ``reply_tickets``); the conversation's lowest live ticket may write to it,
and the others wait their turn, so two requests on one conversation are
answered in the order they arrived, each seeing the exchange before it, on
any number of processes or hosts sharing the database. Nothing spanning more
than one conversation is locked while a model generates: a ticket is a row
written and deleted in short transactions (on PostgreSQL only writers of the
same conversation wait for each other; on SQLite every write is short and
queued, `ConversationStore`'s writers' lock).

A ticket lives until its `expires_at`, which its holder renews while it waits
or answers; a holder killed mid-reply stops renewing, and its ticket expires
and is swept by the next writer, so the conversation is free again after at
most one time-to-live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chatbot.errors import ConversationBusyError, ConversationNotFoundError
from chatbot.storage.schema import Conversation, ReplyTicket, utc_now

Transaction = Callable[..., contextlib.AbstractContextManager[Session]]
T = TypeVar("T")


@dataclasses.dataclass
class Held(Generic[T]):
    """A conversation's turn while it is held: the ticket, and what the `first` step returned."""

    ticket: int
    result: T | None = None
    released: bool = False  # given back already (`ReplyTickets.release_with`)


TICKET_TTL = 10.0  # seconds a ticket lives unrenewed: how long a conversation stays blocked by a killed process
POLL_FIRST, POLL_MAX = 0.005, 0.1  # seconds between checks of the line while waiting (doubling up to the max)


class ReplyTickets:
    """Take, check, renew and return reply tickets (one short transaction each).

    Args:
        transaction: the store's transaction factory (`ConversationStore._transaction`).
        not_found: builds the error for an unknown conversation id.
    """

    def __init__(self, transaction: Transaction, not_found: Callable[[int], ConversationNotFoundError], ttl: float = TICKET_TTL):
        self._transaction = transaction
        self._not_found = not_found
        self.ttl = ttl
        self._held: set[int] = set()  # tickets this process waits with or answers under, renewed by `_keeper`
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    @contextlib.contextmanager
    def turn(self, conversation_id: int, wait: float, first: Callable[[Session], T] | None = None) -> Iterator[Held[T]]:
        """Wait up to `wait` seconds for this conversation's turn, hold it for the block, then give it back.

        `first(session)` is run in the write transaction that finds the ticket first in line (the one
        that takes it, when nobody waits ahead: one transaction instead of two), and its result is the
        held turn's `result`. `release_with` gives the turn back in the block's last write. While the
        ticket is held (waiting or answering) a background thread renews it every third of its
        time-to-live; Ctrl-C or any error in the block gives it back.

        Raises:
            ConversationBusyError: the turn did not come within `wait` seconds (nothing was written
                but the ticket, which is deleted again).
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
            What `first` raises (the ticket is given back).
        """
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
        ticket, found, result = self.take(conversation_id, holder, self.ttl, first)
        held: Held[T] = Held(ticket, result)
        self._hold(ticket)
        try:
            deadline = time.monotonic() + wait
            delay = POLL_FIRST
            while not found:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConversationBusyError(
                        f"conversation {conversation_id} is answering another message (in another chat or request) "
                        f"and was not free within {wait:g} s; nothing was stored, send the message again in a moment",
                        retry_after=max(1.0, wait / 4),
                    )
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, POLL_MAX)
                now_first = self.first(ticket, conversation_id)
                if now_first is None:
                    raise ConversationBusyError(
                        f"conversation {conversation_id}: this process lost its place in the conversation's queue "
                        "(it stalled longer than the ticket lives); send the message again",
                        retry_after=1.0,
                    )
                found = now_first
                if found and first is not None:
                    with self._transaction(write=True) as session:
                        held.result = first(session)
            yield held
        finally:
            with self._lock:
                self._held.discard(ticket)
            if not held.released:
                with contextlib.suppress(Exception):  # an unreachable database: the ticket expires by itself
                    self.release(ticket)

    def release_with(self, held: Held, last: Callable[[Session], T]) -> T:
        """Run `last(session)` and give the turn back, in one write transaction; returns what `last` returns."""
        with self._transaction(write=True) as session:
            result = last(session)
            session.execute(delete(ReplyTicket).where(ReplyTicket.id == held.ticket))
        held.released = True
        return result

    def _hold(self, ticket: int) -> None:
        with self._lock:
            self._held.add(ticket)
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._renew_held, name="chatbot-tickets", daemon=True)
                self._keeper.start()

    def _renew_held(self) -> None:
        """Renew the held tickets every third of the time-to-live; end when none is held."""
        while True:
            time.sleep(self.ttl / 3)
            with self._lock:
                held = sorted(self._held)
                if not held:
                    self._keeper = None
                    return
            with contextlib.suppress(Exception):  # a database error now: the next round tries again
                self.renew(held, self.ttl)

    def take(
        self, conversation_id: int, holder: str, ttl: float, first: Callable[[Session], T] | None = None
    ) -> tuple[int, bool, T | None]:
        """A new ticket for `conversation_id`, live for `ttl` seconds; whether it is first in line; and, when it
        is, what `first(session)` returned (run in the same transaction).

        Expired tickets never count; when others are ahead, those of the conversation are deleted (their holders died).

        Raises:
            ConversationNotFoundError: unknown conversation.
            StorageError: the database cannot be written.
        """
        now = utc_now()
        with self._transaction(write=True) as session:
            # The conversation's row lock first: the ticket's foreign key would take a share lock on that row,
            # and two such holders both asking for the row lock in `first` (PostgreSQL) would deadlock.
            if session.get(Conversation, conversation_id, with_for_update=True) is None:
                raise self._not_found(conversation_id)
            ticket = ReplyTicket(conversation_id=conversation_id, holder=holder[:200], expires_at=now + dt.timedelta(seconds=ttl))
            session.add(ticket)
            session.flush()
            if _first(session, conversation_id, now) == ticket.id:
                return ticket.id, True, first(session) if first is not None else None
            # others are in line: sweep the tickets of holders that died (they are not counted anyway)
            session.execute(delete(ReplyTicket).where(ReplyTicket.conversation_id == conversation_id, ReplyTicket.expires_at <= now))
            return ticket.id, False, None

    def first(self, ticket_id: int, conversation_id: int) -> bool | None:
        """True when `ticket_id` is the conversation's lowest live ticket, False while others are ahead,
        None when the ticket is gone (it expired unrenewed and was swept)."""
        now = utc_now()
        with self._transaction() as session:
            live = session.scalar(select(ReplyTicket.id).where(ReplyTicket.id == ticket_id, ReplyTicket.expires_at > now))
            if live is None:
                return None
            return _first(session, conversation_id, now) == ticket_id

    def renew(self, ticket_ids: list[int], ttl: float) -> None:
        """Push the expiry of these tickets `ttl` seconds past now."""
        if not ticket_ids:
            return
        with self._transaction(write=True) as session:
            expires = utc_now() + dt.timedelta(seconds=ttl)
            session.execute(update(ReplyTicket).where(ReplyTicket.id.in_(ticket_ids)).values(expires_at=expires))

    def release(self, ticket_id: int) -> None:
        """Give the ticket back (the next in line may answer)."""
        with self._transaction(write=True) as session:
            session.execute(delete(ReplyTicket).where(ReplyTicket.id == ticket_id))

    def holders(self, conversation_id: int) -> list[str]:
        """Who holds live tickets of the conversation, first in line first (for messages and tests)."""
        now = utc_now()
        with self._transaction() as session:
            query = (
                select(ReplyTicket.holder)
                .where(ReplyTicket.conversation_id == conversation_id, ReplyTicket.expires_at > now)
                .order_by(ReplyTicket.id)
            )
            return list(session.scalars(query))


def _first(session: Session, conversation_id: int, now: dt.datetime) -> int | None:
    return session.scalar(
        select(func.min(ReplyTicket.id)).where(ReplyTicket.conversation_id == conversation_id, ReplyTicket.expires_at > now)
    )
