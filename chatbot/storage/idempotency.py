"""Idempotency keys: a request sent again with the same ``Idempotency-Key`` gets the first result back.

Clients retry a POST whose answer they did not get (a dropped connection, a
timeout), and without a key the retry would store the exchange twice. The
first request with a key records it as pending; its response is stored when
it completes, and a repeat returns that response instead of running again.
A key is remembered for `KEEP_FOR`; a pending record older than the caller's
`stale_after` (its process died mid-request) is taken over by the next try.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import delete, select, update

from chatbot.storage.schema import IdempotencyRecord, utc_now
from chatbot.storage.tickets import Transaction

KEEP_FOR = dt.timedelta(hours=24)  # how long a key's first result is returned to repeats


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a key already holds.

    Attributes:
        pending: the first request with this key is still being answered.
        same_request: the repeat carries the same request (a different one under a used key is a client bug).
        status_code, response: the first result (JSON text), when not pending.
    """

    pending: bool
    same_request: bool
    status_code: int | None = None
    response: str | None = None


class IdempotencyKeys:
    """Claim, complete and drop idempotency keys (one short transaction each).

    Args:
        transaction: the store's transaction factory (`ConversationStore._transaction`).
    """

    def __init__(self, transaction: Transaction):
        self._transaction = transaction

    def claim(self, owner: str, key: str, request_digest: str, stale_after: float) -> Recorded | None:
        """Record `key` as pending for this request and return None, or return what the key already holds.

        Args:
            owner: whose key it is (keys of different owners never meet).
            request_digest: SHA-256 of the request, to tell a repeat from a different request.
            stale_after: seconds after which a pending record is taken to belong to a dead process.
        Raises:
            StorageError: the database cannot be written.
        """
        now = utc_now()
        with self._transaction(write=True) as session:
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - KEEP_FOR))
            found = session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.owner == owner, IdempotencyRecord.key == key))
            if found is None:
                session.add(IdempotencyRecord(owner=owner, key=key, request_digest=request_digest, created_at=now))
                return None
            same = found.request_digest == request_digest
            if found.status_code is not None:
                return Recorded(False, same, found.status_code, found.response)
            stale = session.scalar(
                select(IdempotencyRecord.id).where(
                    IdempotencyRecord.id == found.id, IdempotencyRecord.created_at < now - dt.timedelta(seconds=stale_after)
                )
            )
            if stale is not None and same:
                found.created_at = now  # its process died mid-request: this try takes it over
                return None
            return Recorded(True, same)

    def complete(self, owner: str, key: str, status_code: int, response: str) -> None:
        """Store the first result for `key` (returned to every repeat)."""
        with self._transaction(write=True) as session:
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.owner == owner, IdempotencyRecord.key == key)
                .values(status_code=status_code, response=response)
            )

    def drop(self, owner: str, key: str) -> None:
        """Forget a pending key (the request failed before storing anything: a retry should run again)."""
        with self._transaction(write=True) as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.owner == owner, IdempotencyRecord.key == key, IdempotencyRecord.status_code.is_(None)
                )
            )
