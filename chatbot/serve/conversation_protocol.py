"""The conversation API's wire format (pydantic models): conversations, turns, exchanges, branches, replays.

Names follow OpenAI's Conversations API where they fit (``object`` fields,
``list`` objects with ``data`` and ``has_more``); turns carry what regenerates
them (model, seed, decoding settings). Ids are integers, as the command line
shows them (``chatbot chat --resume 3``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.serve.openai_protocol import DecodingFields, Usage

MAX_ID = 2**62  # ids fit a 64-bit integer column (SQLite and PostgreSQL); larger ones are refused, not overflowed


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str | None = Field(None, max_length=1000)
    system: str | None = Field(None, max_length=65_536, description="a system prompt: stored and shown, not fed to the model")


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1, max_length=1000)


class ConversationObject(BaseModel):
    id: int
    object: Literal["conversation"] = "conversation"
    title: str | None
    created_at: int  # Unix seconds
    model: str | None  # the model it was started with
    system_prompt: str | None = None
    num_turns: int | None = None  # turns on the active path (in lists)
    last_turn_at: int | None = None


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationObject]
    has_more: bool
    last_id: int | None  # pass as `before` for the next page


class ConversationDeleted(BaseModel):
    id: int
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool
    turns: int


class TurnObject(BaseModel):
    id: int
    object: Literal["conversation.turn"] = "conversation.turn"
    role: Literal["user", "assistant"]
    content: str
    position: int  # 0-based depth; alternatives share it
    parent_id: int | None
    active: bool  # on the active path
    created_at: int
    model: str | None = None  # replies: the model's name
    model_id: str | None = None  # replies: the checksum of the model's files (GET /v1/models' model_id)
    seed: int | None = None
    decoding: dict | None = None  # replies: the settings that regenerate them (DecodingConfig and the pick)
    latency_ms: float | None = None
    alternatives: int = 0  # other turns at this place (from retries and edits)


class TurnList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TurnObject]


class MessageCreate(DecodingFields):
    content: str = Field(max_length=1_000_000)
    stream: bool = False


class RetryRequest(DecodingFields):
    turn_id: int | None = Field(None, ge=1, le=MAX_ID, description="the reply to replace (default: the last)")


class EditRequest(DecodingFields):
    content: str = Field(max_length=1_000_000)
    turn_id: int | None = Field(None, ge=1, le=MAX_ID, description="the message of yours to rewrite (default: the last)")


class PickRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    index: int = Field(ge=0, le=63, description="0-based: which candidate of the reply to store in its place")


class CandidateObject(BaseModel):
    index: int
    content: str
    score: float  # what candidates are ranked by (length-normalised log-probability)
    log_probability: float  # nats
    finish_reason: Literal["stop", "length"]


class ExchangeObject(BaseModel):
    object: Literal["conversation.exchange"] = "conversation.exchange"
    conversation_id: int
    message: TurnObject | None  # the message stored (None: a retry, or a kept message answered)
    reply: TurnObject | None
    replaced: TurnObject | None = None  # a retry's earlier reply, an edit's earlier message: kept as alternatives
    candidates: list[CandidateObject]
    chosen: int
    notes: list[str]
    usage: Usage
    system_fingerprint: str


class BranchObject(BaseModel):
    number: int  # 1-based, stable (what /switch takes)
    active: bool
    fork: int | None  # index in `turns` of the first turn off the active path
    turns: list[TurnObject]


class BranchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BranchObject]


class Transcript(BaseModel):
    object: Literal["conversation.transcript"] = "conversation.transcript"
    conversation: ConversationObject
    turns: list[TurnObject]  # the active path
    branches: list[BranchObject]  # every branch, when there are alternatives


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    regenerate: bool = True
    all_branches: bool = False


class ReplayedTurn(BaseModel):
    turn_id: int
    position: int
    active: bool
    stored: str
    regenerated: str | None  # None: it could not be regenerated (see note)
    identical: bool
    note: str | None = None


class ReplayObject(BaseModel):
    object: Literal["conversation.replay"] = "conversation.replay"
    conversation_id: int
    replies: list[ReplayedTurn]
    identical: int
    total: int
