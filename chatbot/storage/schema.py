"""The tables of the conversation database (SQLAlchemy 2 ORM classes) and the values read from them.

These classes describe the latest schema; `chatbot.storage.database` builds it
step by step through named migrations, so a new database and an upgraded one
end identical.

A conversation is a tree of turns: each turn points to the previous one
(``parent_id``), and one root-to-leaf path is active. Regenerating a reply
(or editing a message) adds a sibling that takes over the active path; the
turns it replaces stay stored as alternatives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

from sqlalchemy import ForeignKey, Index, String, Text, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SPEAKERS = ("user", "bot")
TITLE_LENGTH = 60  # characters of the first user message kept as the conversation title


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class ModelRecord(Base):
    """A trained model a reply came from, identified by the checksum of its files."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    checksum: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    config: Mapped[str] = mapped_column(Text)  # JSON of ModelConfig
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)


class Conversation(Base):
    """A conversation: its title, first model, and who may see it over HTTP.

    ``owner`` is the name of the API key that created it (`chatbot serve --api-key-file`);
    None for conversations made in the terminal or by a server without keys.
    ``system_prompt`` is a Chat Completions ``system`` message: stored, shown, never fed to the model.
    """

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_owner", "owner", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(String(TITLE_LENGTH + 1))
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    owner: Mapped[str | None] = mapped_column(String(100))
    system_prompt: Mapped[str | None] = mapped_column(Text)


class Turn(Base):
    """One utterance. Bot turns also record the model, decoding settings (JSON), seed and latency.

    Turns form a tree per conversation: siblings (same parent, same position)
    are alternatives of each other, and exactly one turn per position of the
    active path has ``active`` set.
    """

    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_conversation_active_position", "conversation_id", "active", "position"),
        Index("ix_turns_path_digest", "path_digest"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id"))  # previous turn on the path; None for the first
    position: Mapped[int]  # depth in the tree, 0-based; siblings share it
    active: Mapped[bool] = mapped_column(default=True, server_default=true())  # on the conversation's active path
    speaker: Mapped[str] = mapped_column(String(8))  # "user" or "bot"
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    decoding: Mapped[str | None] = mapped_column(Text)  # JSON of DecodingConfig
    seed: Mapped[int | None]
    latency_ms: Mapped[float | None]  # wall time to generate the reply, milliseconds
    path_digest: Mapped[str | None] = mapped_column(String(64))  # `path_digest` of the path from the first turn to this one


class ReplyTicket(Base):
    """A place in the queue of one conversation's replies (`chatbot.storage.tickets`): the lowest live
    ticket of a conversation may write to it; a holder that dies stops renewing, and its ticket expires."""

    __tablename__ = "reply_tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    holder: Mapped[str] = mapped_column(String(200))  # host:pid:thread of the process waiting or answering
    expires_at: Mapped[dt.datetime]


class IdempotencyRecord(Base):
    """The first result of a request sent with an ``Idempotency-Key`` (a retry gets it back)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_owner_key", "owner", "key", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))  # the API key's name ("" without keys)
    key: Mapped[str] = mapped_column(String(255))
    request_digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request: one key, one request
    status_code: Mapped[int | None]  # None while the first request is still being answered
    response: Mapped[str | None] = mapped_column(Text)  # its JSON body
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)


class SchemaMigration(Base):
    """One applied migration (see `chatbot.storage.database.MIGRATIONS`)."""

    __tablename__ = "schema_migrations"
    version: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utc_now)


@dataclasses.dataclass(frozen=True)
class ConversationSummary:
    """One row of a conversation list."""

    id: int
    title: str | None
    created_at: dt.datetime
    num_turns: int  # turns on the active path
    model_name: str | None
    last_turn_at: dt.datetime | None = None  # when the newest turn was stored
    owner: str | None = None  # the API key's name that made it (None: a terminal or a server without keys)


def path_digest(parent_digest: str | None, speaker: str, text: str) -> str:
    """SHA-256 (hex) naming a path of turns by its speakers and texts: the parent's digest extended by one turn.

    Two paths with the same texts in the same order have the same digest, in any conversation;
    a Chat Completions request finds the stored path its messages continue by it.
    """
    return hashlib.sha256(f"{parent_digest or ''}\x1f{speaker}\x1e{text}".encode()).hexdigest()


def auto_title(text: str) -> str:
    """The title a conversation gets from its first user message: the message, cut to TITLE_LENGTH characters."""
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def decoding_of(turn: Turn) -> dict:
    """The settings stored with a bot turn (JSON of DecodingConfig plus chosen, context_turns, decoder_version); {} for none."""
    return json.loads(turn.decoding) if turn.decoding else {}


@dataclasses.dataclass(frozen=True)
class Branch:
    """One root-to-leaf path of a conversation's tree of turns.

    Attributes:
        number: 1-based and stable: branch 1 is the conversation as first written, and every
            /retry or /edit starts the next number (what /switch takes).
        path: the turns from the first to the leaf.
        fork: index in `path` of the first turn off the active path; None for the active branch.
    """

    number: int
    path: list[Turn]
    fork: int | None

    @property
    def active(self) -> bool:
        return self.fork is None


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What a transcript shows of one conversation (`ConversationStore.transcript`).

    Attributes:
        turns: the active path, first to last.
        alternatives: for each active turn that has siblings, those siblings (`alternatives_on_path`).
        branches: every branch, numbered (empty when there are no alternatives and none were asked for).
        models: every registered model by id (to name the model of each bot turn).
        all_branches: every branch was asked for (a transcript then shows them all).
    """

    conversation: Conversation
    turns: list[Turn]
    alternatives: dict[int, list[Turn]]
    branches: list[Branch]
    models: dict[int, ModelRecord]
    all_branches: bool = False
