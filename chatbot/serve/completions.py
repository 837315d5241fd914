"""``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI's API, with every completion stored.

OpenAI's API is stateless: a client sends the whole conversation every time.
This server finds the stored conversation the messages continue: the messages
before the last, cleaned as the REPL cleans them, are digested as a path of
turns (`chatbot.storage.schema.path_digest`) and looked up among the caller's
conversations (the most recent match; ``conversation_id`` in the body picks
one). Then:

- the path ends a stored conversation's active path, or some earlier turn of it:
  the last message is stored after that turn (a new branch when the turn
  already has a continuation, as ``/edit`` makes) and answered;
- the whole request, last message included, is already stored: it is a resend,
  answered with a fresh alternative reply, as ``/retry`` makes; but a retried
  request (``Idempotency-Key``, or the ``openai`` client's
  ``x-stainless-retry-count`` above 0) gets the first reply back;
- nothing matches: a new conversation with the earlier messages stored as they
  were sent (assistant messages without a model or seed: replay skips them).

``system`` (and ``developer``) messages are stored with a new conversation
and never conditioned on: the models have no system prompt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chatbot.dialogue.manager import Exchange
from chatbot.errors import ConfigError
from chatbot.inference.responder import new_seed
from chatbot.serve.errors import APIError, stream_error
from chatbot.serve.openai_protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    ModelList,
    ModelObject,
)
from chatbot.serve.views import SSE_EVENT, decoding_from, finish_reason, notes, owned, owner, until_stored, usage, word_deltas
from chatbot.storage import Turn
from chatbot.storage.schema import path_digest, utc_now
from chatbot.text.messages import clean_message

router = APIRouter(tags=["openai"])
RETRY_WINDOW = dt.timedelta(minutes=10)  # a retried first message is matched to a conversation this recent
SPEAKER = {"user": "user", "assistant": "bot"}


@router.get("/v1/models", response_model=ModelList, summary="The model this server answers with")
async def list_models(request: Request) -> ModelList:
    worker = request.app.state.worker
    worker.require_model()
    model = ModelObject(
        id=worker.model_name,
        created=worker.model_created,
        owned_by="chatbot",
        model_id=worker.model_checksum,
        decoding=worker.default_decoding.to_dict(),
    )
    return ModelList(data=[model])


def message_text(message: ChatMessage, index: int) -> str:
    """The text of a message as it is stored (cleaned). Raises ConfigError for non-text content."""
    content = message.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        if any(part.type != "text" or part.text is None for part in content):
            raise APIError(
                400, f"messages[{index}].content: only text parts are understood (type 'text')", param=f"messages[{index}].content"
            )
        text = " ".join(part.text or "" for part in content)
    return clean_message(text).text


def parse_messages(messages: list[ChatMessage]) -> tuple[str | None, list[tuple[str, str]], str, int]:
    """(system prompt, earlier turns as (speaker, text), the last user message, characters removed from it).

    Raises:
        ConfigError: the last message is not the user's, or a user message is empty once cleaned.
    """
    if messages[-1].role != "user":
        raise APIError(
            400, f"messages: the last message must be the user's (role 'user'), got role {messages[-1].role!r}", param="messages"
        )
    system = [message_text(m, i) for i, m in enumerate(messages) if m.role in ("system", "developer")]
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            continue
        text = message_text(message, index)
        if not text:
            problem = f"messages[{index}].content: empty once escape codes and control characters are removed"
            raise APIError(400, problem, code="invalid_value", param=f"messages[{index}].content")
        turns.append((SPEAKER[message.role], text))
    last = messages[-1]
    raw = last.content if isinstance(last.content, str) else " ".join(p.text or "" for p in last.content or [])
    return ("\n".join(s for s in system if s) or None), turns[:-1], turns[-1][1], clean_message(raw).removed


def stored_reply(store, message: Turn) -> Turn | None:
    """The newest reply stored for `message` (None: it was never answered)."""
    replies = [turn for turn in store.children(message.id) if turn.speaker == "bot"]
    return replies[-1] if replies else None


def digest_of(turns: list[tuple[str, str]]) -> str | None:
    digest = None
    for speaker, text in turns:
        digest = path_digest(digest, speaker, text)
    return digest


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    summary="A reply to the messages, stored in the conversation they continue (OpenAI's Chat Completions)",
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "JSON, or events with stream"}},
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request):
    worker = request.app.state.worker
    worker.require_model()
    if body.model not in (worker.model_name, worker.model_checksum):
        raise APIError(
            404,
            f"the model {body.model!r} does not exist here; GET /v1/models lists {worker.model_name!r}",
            code="model_not_found",
            param="model",
        )
    stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    decoding = decoding_from(body, worker.default_decoding).replace(stop=stops)  # DecodingConfig checks them
    system, earlier, last, removed = parse_messages(body.messages)
    caller = owner(request)
    seed = new_seed() if body.seed is None else body.seed
    key = request.headers.get("idempotency-key")
    # the openai client's retry of a request whose answer it lost (with a key, the key dedupes it)
    retried = key is None and request.headers.get("x-stainless-retry-count", "0") not in ("", "0")
    request_digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    idempotency = worker.manager.store.idempotency
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise APIError(400, "Idempotency-Key: 1 to 255 characters", code="invalid_value", param="Idempotency-Key")
        recorded = await worker.call(
            lambda: idempotency.claim(caller or "", key, request_digest, stale_after=worker.config.busy_wait + 120)
        )
        if recorded is not None:
            if not recorded.same_request:
                raise APIError(
                    400, "this Idempotency-Key was used for a different request; use a new key per request", code="idempotency_key_reused"
                )
            if recorded.pending:
                raise APIError(
                    409,
                    "a request with this Idempotency-Key is still being answered",
                    "conflict_error",
                    "request_in_progress",
                    headers={"Retry-After": "1"},
                )
            completion = ChatCompletion.model_validate_json(recorded.response or "{}")
            return respond(completion, body, replayed=True)

    def exchange(on_user_turn=None) -> tuple[Exchange | None, Turn | None, Turn | None]:
        """(the exchange, or for a retried resend the stored reply and its message)."""
        manager = worker.manager
        store = manager.store
        conversation_id = body.conversation_id
        if conversation_id is not None:
            owned(request, store.get_conversation(conversation_id))
        if not earlier:
            if conversation_id is None and retried:  # a retry of a first message: answered already?
                resent = store.find_path(digest_of([("user", last)]), caller)
                reply = stored_reply(store, resent) if resent is not None else None
                if reply is not None and utc_now() - reply.created_at.replace(tzinfo=dt.UTC) < RETRY_WINDOW:
                    return None, resent, reply
            if conversation_id is None:
                conversation_id = manager.start(caller, system).id
            return manager.answer(conversation_id, last, decoding, seed, on_user_turn=on_user_turn), None, None
        found = store.find_path(digest_of(earlier), caller, conversation_id)
        if found is None:
            if conversation_id is not None:
                raise ConfigError(f"messages: the earlier messages are not a path of conversation {conversation_id}")
            conversation_id = manager.start(caller, system).id
            for speaker, text in earlier:
                store.add_turn(conversation_id, speaker, text)
            return manager.answer(conversation_id, last, decoding, seed, on_user_turn=on_user_turn), None, None
        conversation_id = found.conversation_id
        resent = store.find_path(digest_of([*earlier, ("user", last)]), caller, conversation_id)
        if resent is None:
            return manager.answer(conversation_id, last, decoding, seed, after=found.id, on_user_turn=on_user_turn), None, None
        reply = stored_reply(store, resent)
        if reply is not None and retried:
            return None, resent, reply
        if reply is not None:
            return manager.retry(conversation_id, decoding, seed, reply_id=reply.id, on_user_turn=on_user_turn), None, None
        store.activate(resent.id)  # the message is stored but was never answered (a cut connection, a crash)
        return manager.answer(conversation_id, None, decoding, seed, on_user_turn=on_user_turn), None, None

    def completion_of(result) -> ChatCompletion:
        found, message, reply = result
        if found is None:
            return stored_completion(worker, message, reply)
        return completion_from(worker, found, removed)

    if not body.stream:
        try:
            completion = completion_of(await worker.call(exchange))
        except BaseException:
            if key is not None:
                await worker.call(lambda: idempotency.drop(caller or "", key))
            raise
        if key is not None:
            await worker.call(lambda: idempotency.complete(caller or "", key, 200, completion.model_dump_json()))
        return respond(completion, body)

    try:
        task, first = await until_stored(worker, exchange)
    except BaseException:  # failed before anything was stored: a status, not an event
        if key is not None:
            await worker.call(lambda: idempotency.drop(caller or "", key))
        raise
    opening = None
    if first is not None:  # the message is stored: the role chunks go out now, before the reply is generated
        opening = ChatCompletionChunk(
            id=f"chatcmpl-{first.id}-{secrets.token_hex(4)}",
            created=int(time.time()),
            model=worker.model_name,
            choices=[ChunkChoice(index=i, delta=Delta(role="assistant", content="")) for i in range(decoding.num_return_sequences)],
            system_fingerprint=worker.model_checksum,
            conversation_id=first.conversation_id,
            seed=seed,
        )

    async def events():
        if opening is not None:
            yield f"data: {opening.model_dump_json()}\n\n"
        try:
            completion = completion_of(await task)
        except Exception as exc:  # noqa: BLE001 - after the 200: an error event, then [DONE]
            error = stream_error(exc, worker.manager.store.where, request.url.path)
            if key is not None:
                await worker.call(lambda: idempotency.drop(caller or "", key))
            yield f"data: {json.dumps(error.body())}\n\n"
            yield "data: [DONE]\n\n"
            return
        if opening is not None:
            completion = completion.model_copy(update={"id": opening.id, "created": opening.created})
        if key is not None:
            await worker.call(lambda: idempotency.complete(caller or "", key, 200, completion.model_dump_json()))
        for chunk in chunks(completion, body, opened=opening is not None):
            yield chunk

    headers = {"Conversation-Id": str(first.conversation_id)} if first is not None else {}
    return StreamingResponse(events(), media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})


def respond(completion: ChatCompletion, body: ChatCompletionRequest, replayed: bool = False):
    headers = {"Conversation-Id": str(completion.conversation_id)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if body.stream:

        async def events():
            for chunk in chunks(completion, body):
                yield chunk

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
    return JSONResponse(completion.model_dump(mode="json"), headers=headers)


def completion_from(worker, exchange: Exchange, removed: int) -> ChatCompletion:
    found = exchange.candidates
    reply = exchange.reply
    assert reply is not None
    choices = [
        Choice(index=index, message=AssistantMessage(content=text), finish_reason=finish_reason(candidate, stopped))
        for index, (text, candidate, stopped) in enumerate(zip(found.texts, found.found, found.stopped, strict=True))
    ]
    said = notes(exchange)
    if removed and not exchange.removed:
        said.insert(0, f"{removed} escape or control characters were removed from the message")
    return ChatCompletion(
        id=f"chatcmpl-{reply.id}",
        created=int(reply.created_at.timestamp()),
        model=worker.model_name,
        choices=choices,
        usage=usage(exchange),
        system_fingerprint=worker.model_checksum,
        conversation_id=exchange.conversation_id,
        seed=found.seed,
        notes=said,
    )


def stored_completion(worker, message: Turn, reply: Turn) -> ChatCompletion:
    """The completion a retried request gets back: the reply already stored for its message."""
    responder = worker.manager.responder
    history = [t.text for t in worker.manager.store.path(message.id, last=responder.context_turns)]
    prompt = int((responder.context_tokens(history) > 0).sum())
    completion = len(worker.manager.responder.checkpoint.tokenizer.encode(reply.text)) + 1
    from chatbot.serve.openai_protocol import Usage

    return ChatCompletion(
        id=f"chatcmpl-{reply.id}",
        created=int(reply.created_at.timestamp()),
        model=worker.model_name,
        choices=[Choice(index=0, message=AssistantMessage(content=reply.text), finish_reason="stop")],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        system_fingerprint=worker.model_checksum,
        conversation_id=reply.conversation_id,
        seed=reply.seed or 0,
        notes=["a retried request: this is the reply stored for it the first time"],
    )


def chunks(completion: ChatCompletion, body: ChatCompletionRequest, opened: bool = False):
    """The completion as server-sent events: a role chunk per choice (unless `opened`: sent already), the
    text in word-sized deltas, the finish reason, the usage when asked for, then ``[DONE]``."""

    def event(choices, usage=None) -> str:
        chunk = ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=choices,
            system_fingerprint=completion.system_fingerprint,
            usage=usage,
            conversation_id=completion.conversation_id,
            seed=completion.seed,
        )
        return f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"

    for choice in completion.choices:
        if not opened:
            yield event([ChunkChoice(index=choice.index, delta=Delta(role="assistant", content=""))])
        for piece in word_deltas(choice.message.content):
            yield event([ChunkChoice(index=choice.index, delta=Delta(content=piece))])
        yield event([ChunkChoice(index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)])
    if body.stream_options is not None and body.stream_options.include_usage:
        yield event([], completion.usage)
    yield "data: [DONE]\n\n"
