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
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(String(TITLE_LENGTH + 1))
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))


class Turn(Base):
    """One utterance. Bot turns also record the model, decoding settings (JSON), seed and latency.

    Turns form a tree per conversation: siblings (same parent, same position)
    are alternatives of each other, and exactly one turn per position of the
    active path has ``active`` set.
    """

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_conversation_active_position", "conversation_id", "active", "position"),)
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
