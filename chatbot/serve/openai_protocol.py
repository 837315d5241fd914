"""OpenAI's Chat Completions wire format (pydantic models), as OpenAI documents it, plus this project's extras.

Requests: ``model, messages, temperature, top_p, max_tokens`` (or
``max_completion_tokens``), ``n``, ``seed``, ``stop``, ``stream`` with
``stream_options.include_usage``, ``user``; this project's knobs as extra body
fields (``top_k``, ``beam_width``, ``no_repeat_ngram``, ``conversation_id``).
Fields OpenAI has and this server does not use (``frequency_penalty``,
``logit_bias``, ``tools``, …) are accepted and ignored, so existing clients work.

Responses: ``chat.completion`` (``id, object, created, model, choices,
usage, system_fingerprint``) or ``chat.completion.chunk`` events; the extras
``conversation_id``, ``seed`` and ``notes`` ride along. Errors are
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SEED_RANGE = (-(2**31), 2**31 - 1)  # seeds are int32 (the samplers' stateless random ops)
MAX_CHOICES = 16  # n: candidate replies per request
MAX_STOP = 4  # stop sequences per request (OpenAI's limit)


class ContentPart(BaseModel):
    """One part of a message's content; only ``{"type": "text", "text": …}`` is read."""

    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation the client sends (the whole history, as OpenAI's API is stateless)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class DecodingFields(BaseModel):
    """The decoding knobs both APIs share (None: the server's default)."""

    model_config = ConfigDict(extra="ignore")
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy decoding; otherwise the sampling temperature")
    top_p: float | None = Field(None, ge=0, le=1, description="nucleus sampling mass (Holtzman et al. 2019); 0: greedy")
    top_k: int | None = Field(None, ge=1, le=100_000, description="extra: sample among the k most probable tokens")
    beam_width: int | None = Field(None, ge=1, le=64, description="extra: beam search with this many beams")
    no_repeat_ngram: int | None = Field(None, ge=0, le=8, description="extra: block repeated n-grams of this size; 0 = off")
    max_tokens: int | None = Field(None, ge=1, le=512, description="longest reply in tokens (the tokenizer's pieces)")
    max_completion_tokens: int | None = Field(None, ge=1, le=512, description="the newer name of max_tokens")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES, description="candidate replies; the first is stored")
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1], description="the same seed, settings and model give the same reply")


class ChatCompletionRequest(DecodingFields):
    model: str = Field(max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP} sequences; the reply ends before the first")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    conversation_id: int | None = Field(None, ge=1, le=2**62, description="extra: continue this stored conversation")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int  # tokens of the framed context the model read
    completion_tokens: int  # tokens of the replies (all choices), the end token included where reached
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int  # Unix seconds
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str  # the model's checksum: with the seed, what identifies a reply exactly
    conversation_id: int  # extra: the stored conversation (also the Conversation-Id header)
    seed: int  # extra: the seed used (drawn when the request gave none)
    notes: list[str] = []  # extra: what the server changed about the request (e.g. control characters removed)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str
    usage: Usage | None = None
    conversation_id: int
    seed: int


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    model_id: str | None = None  # extra: the checksum of the model's files (the system_fingerprint of its replies)
    decoding: dict | None = None  # extra: the server's default decoding settings (what a request without knobs gets)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
