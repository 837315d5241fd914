"""Between the wire and the dialogue manager: decoding settings from request fields, stored objects as responses, owner checks.

Shared by both APIs so that the same request fields mean the same decoding
everywhere, and a turn looks the same wherever it is returned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Literal, TypeVar

from fastapi import Request

from chatbot.dialogue.manager import Exchange
from chatbot.errors import ConfigError, ConversationNotFoundError
from chatbot.inference.decoding import DecodingConfig
from chatbot.serve.conversation_protocol import CandidateObject, ConversationObject, ExchangeObject, TurnObject
from chatbot.serve.openai_protocol import DecodingFields, Usage
from chatbot.storage import Conversation, ModelRecord, Turn, decoding_of

T = TypeVar("T")

# What one server-sent event is (the OpenAPI document describes streams by it): an event name, and JSON text.
SSE_EVENT = {"type": "object", "properties": {"event": {"type": "string"}, "data": {"type": "string"}}, "required": ["data"]}


def decoding_from(fields: DecodingFields, default: DecodingConfig) -> DecodingConfig:
    """The decoding a request asks for, starting from the server's default.

    ``temperature`` 0 or ``top_p`` 0 mean greedy; ``beam_width`` beam search; ``top_k`` top-k
    sampling; ``top_p`` nucleus sampling; ``n`` candidates (at most the beams).

    Raises:
        ConfigError: a combination DecodingConfig refuses (the message names the field).
    """
    changes: dict = {}
    if fields.beam_width is not None:
        changes.update(sampler="beam", num_beams=fields.beam_width)
    elif fields.temperature == 0 or fields.top_p == 0:
        changes["sampler"] = "greedy"
    elif fields.top_k is not None:
        changes.update(sampler="top_k", top_k=fields.top_k)
    elif fields.top_p is not None:
        changes.update(sampler="top_p", top_p=fields.top_p)
    if fields.temperature:
        changes["temperature"] = fields.temperature
    if fields.top_p and fields.top_p > 0:
        changes["top_p"] = fields.top_p
    tokens = fields.max_completion_tokens or fields.max_tokens
    if tokens is not None:
        changes.update(max_reply_tokens=tokens, min_reply_tokens=min(default.min_reply_tokens, tokens))
    if fields.n is not None:
        changes["num_return_sequences"] = fields.n
    if fields.no_repeat_ngram is not None:
        changes["no_repeat_ngram"] = fields.no_repeat_ngram
    try:
        return default.replace(**changes)
    except ConfigError as exc:
        message = str(exc).replace("--candidates", "n").replace("--beam", "beam_width").replace("--max-reply-tokens", "max_tokens")
        raise ConfigError(message) from None


def unix(moment: dt.datetime | None) -> int | None:
    """Seconds since 1970 of a stored (naive UTC) time."""
    if moment is None:
        return None
    return int(moment.replace(tzinfo=dt.UTC).timestamp() if moment.tzinfo is None else moment.timestamp())


def owned(request: Request, conversation: Conversation) -> Conversation:
    """`conversation` if the request's key may see it. Raises ConversationNotFoundError (404) otherwise:
    another key's conversation is indistinguishable from one that does not exist."""
    worker = request.app.state.worker
    if worker.keys and conversation.owner != getattr(request.state, "owner", None):
        raise ConversationNotFoundError(f"no conversation {conversation.id}")
    return conversation


def owner(request: Request) -> str | None:
    """The request's key name (None without keys): what lists and new conversations are scoped to."""
    return getattr(request.state, "owner", None) if request.app.state.worker.keys else None


def conversation_view(conversation: Conversation, models: dict[int, ModelRecord], num_turns=None, last_turn_at=None) -> ConversationObject:
    record = models.get(conversation.model_id) if conversation.model_id is not None else None
    return ConversationObject(
        id=conversation.id,
        title=conversation.title,
        created_at=unix(conversation.created_at) or 0,
        model=record.name if record else None,
        system_prompt=conversation.system_prompt,
        num_turns=num_turns,
        last_turn_at=unix(last_turn_at),
    )


def turn_view(turn: Turn, models: dict[int, ModelRecord] | None = None, alternatives: int = 0) -> TurnObject:
    record = (models or {}).get(turn.model_id) if turn.model_id is not None else None
    settings = decoding_of(turn) or None
    if settings is not None:
        settings.pop("candidates", None)  # texts, not settings (the exchange lists the candidates)
    return TurnObject(
        id=turn.id,
        role="user" if turn.speaker == "user" else "assistant",
        content=turn.text,
        position=turn.position,
        parent_id=turn.parent_id,
        active=bool(turn.active),
        created_at=unix(turn.created_at) or 0,
        model=record.name if record else None,
        model_id=record.checksum if record and turn.speaker == "bot" else None,
        seed=turn.seed,
        decoding=settings if turn.speaker == "bot" else None,
        latency_ms=turn.latency_ms,
        alternatives=alternatives,
    )


def notes(exchange: Exchange) -> list[str]:
    """What the person should be told about an exchange, one sentence each (the REPL prints the same)."""
    found = []
    if exchange.removed:
        found.append(f"{exchange.removed} escape or control characters were removed from the message")
    if exchange.cut:
        found.append(f"the message was cut: its last {exchange.cut:,} characters were not stored")
    if exchange.window is not None:
        kept, total = exchange.window
        found.append(f"the model reads the first {kept} of the message's {total} tokens")
    if exchange.unanswered is not None:
        found.append(f"the message before this one (turn {exchange.unanswered.id}) had no reply; it is in this reply's context")
    return found


def usage(exchange: Exchange) -> Usage:
    completion = sum(len(c.token_ids) + int(c.ended) for c in exchange.candidates.found)
    prompt = exchange.candidates.prompt_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def finish_reason(candidate, stopped: bool = False) -> Literal["stop", "length"]:
    """OpenAI's finish reason: "stop" when the model ended the reply or a stop string cut it, "length" when
    it reached the token cap."""
    return "stop" if candidate.ended or stopped else "length"


def word_deltas(text: str) -> list[str]:
    """A reply as a stream sends it: word by word, each after the first with its leading space."""
    words = text.split(" ")
    return words[:1] + [" " + word for word in words[1:]]


def _settle(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


async def until_stored(worker, run: Callable[[Callable[[Turn], None]], T]) -> tuple[asyncio.Future, Turn | None]:
    """Start `run(on_user_turn)` on a request thread and wait until it has stored the user's message (or
    finished): a stream's headers go out then, after the errors that store nothing have become statuses.

    Returns:
        the running task (its result is `run`'s), and the stored message (None when `run` finished first).
    Raises:
        What `run` raised before storing the message.
    """
    loop = asyncio.get_running_loop()
    stored: asyncio.Future = loop.create_future()

    def on_user_turn(turn: Turn) -> None:
        loop.call_soon_threadsafe(_settle, stored, turn)

    task = asyncio.ensure_future(worker.call(lambda: run(on_user_turn)))
    await asyncio.wait({stored, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and task.exception() is not None:
        stored.cancel()
        raise task.exception()
    return task, stored.result() if stored.done() else None


def exchange_view(exchange: Exchange, models: dict[int, ModelRecord], fingerprint: str) -> ExchangeObject:
    found = exchange.candidates
    return ExchangeObject(
        conversation_id=exchange.conversation_id,
        message=turn_view(exchange.user_turn, models) if exchange.user_turn is not None else None,
        reply=turn_view(exchange.reply, models) if exchange.reply is not None else None,
        replaced=turn_view(exchange.replaced, models) if exchange.replaced is not None else None,
        candidates=[
            CandidateObject(
                index=i, content=text, score=c.score, log_probability=c.log_probability, finish_reason=finish_reason(c, stopped)
            )
            for i, (text, c, stopped) in enumerate(zip(found.texts, found.found, found.stopped, strict=True))
        ],
        chosen=exchange.chosen,
        notes=notes(exchange),
        usage=usage(exchange),
        system_fingerprint=fingerprint,
    )
