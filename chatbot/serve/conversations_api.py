"""``/v1/conversations``: the REPL's features as resources, for clients that keep no history themselves.

Create, list (newest first, with search), get, rename and delete
conversations; export one (JSONL or Markdown); post a message and get the
reply (streamed or not); retry a reply (the earlier one kept as an
alternative); edit a message of yours (a new branch); list branches and
switch the active one; pick another candidate of a reply; read the
transcript with every branch; and replay a conversation (regenerate each
stored reply with its model, settings and seed, and say whether it came back
identical). Every action is one call of the dialogue manager, the same call
the REPL makes, so both give the same result on the same conversation.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from chatbot.dialogue.manager import Exchange
from chatbot.inference.responder import new_seed
from chatbot.serve.conversation_protocol import (
    MAX_ID,
    BranchList,
    BranchObject,
    ConversationCreate,
    ConversationDeleted,
    ConversationList,
    ConversationObject,
    ConversationUpdate,
    EditRequest,
    ExchangeObject,
    MessageCreate,
    PickRequest,
    ReplayedTurn,
    ReplayObject,
    ReplayRequest,
    RetryRequest,
    Transcript,
    TurnList,
    TurnObject,
)
from chatbot.serve.errors import APIError, stream_error
from chatbot.serve.views import (
    SSE_EVENT,
    conversation_view,
    decoding_from,
    exchange_view,
    owned,
    owner,
    turn_view,
    until_stored,
    word_deltas,
)
from chatbot.storage import Turn

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="an id, as the API returns it")]  # else 400, never a database overflow
Number = Annotated[int, Path(ge=1, le=10_000, description="a branch number, as GET /branches numbers them")]


def _worker(request: Request):
    return request.app.state.worker


def _conversation(request: Request, conversation_id: int):
    """The conversation if it exists and the request's key may see it (else ConversationNotFoundError → 404)."""
    return owned(request, _worker(request).manager.resume(conversation_id))


def _turns_view(manager, turns: list[Turn]) -> list[TurnObject]:
    models = manager.store.models()
    return [turn_view(t, models) for t in turns]


@router.post("", response_model=ConversationObject, summary="Start a conversation")
async def create_conversation(body: ConversationCreate, request: Request) -> ConversationObject:
    worker = _worker(request)

    def create():
        manager = worker.manager
        conversation = manager.start(owner(request), body.system)
        if body.title and body.title.strip():
            conversation = manager.rename(conversation.id, body.title)
        return conversation_view(conversation, manager.store.models(), num_turns=0)

    return await worker.call(create)


@router.get("", response_model=ConversationList, summary="Conversations, newest first (search: in titles and every turn)")
async def list_conversations(
    request: Request,
    search: str | None = Query(None, max_length=1000),
    limit: int = Query(20, ge=1, le=100),
    before: int | None = Query(None, ge=1, le=MAX_ID, description="the last_id of the previous page"),
) -> ConversationList:
    worker = _worker(request)

    def listing():
        manager = worker.manager
        found = manager.store.list_conversations(limit + 1, search=search or None, owner=owner(request), before=before)
        conversations = {c.id: c for c in manager.store.conversations([s.id for s in found[:limit]])} if found else {}
        models = manager.store.models()
        data = [conversation_view(conversations[s.id], models, s.num_turns, s.last_turn_at) for s in found[:limit]]
        return ConversationList(data=data, has_more=len(found) > limit, last_id=data[-1].id if data else None)

    return await worker.call(listing)


@router.get("/{conversation_id}", response_model=ConversationObject, summary="One conversation")
async def get_conversation(conversation_id: Id, request: Request) -> ConversationObject:
    worker = _worker(request)

    def get():
        conversation = _conversation(request, conversation_id)
        turns = worker.manager.history(conversation_id)
        last = max((t.created_at for t in turns), default=None)
        return conversation_view(conversation, worker.manager.store.models(), len(turns), last)

    return await worker.call(get)


@router.post("/{conversation_id}", response_model=ConversationObject, summary="Rename a conversation")
@router.patch("/{conversation_id}", response_model=ConversationObject, include_in_schema=False)
async def rename_conversation(conversation_id: Id, body: ConversationUpdate, request: Request) -> ConversationObject:
    worker = _worker(request)

    def rename():
        _conversation(request, conversation_id)
        return conversation_view(worker.manager.rename(conversation_id, body.title), worker.manager.store.models())

    return await worker.call(rename)


@router.delete("/{conversation_id}", response_model=ConversationDeleted, summary="Delete a conversation and every branch of it")
async def delete_conversation(conversation_id: Id, request: Request) -> ConversationDeleted:
    worker = _worker(request)

    def delete():
        _conversation(request, conversation_id)
        return ConversationDeleted(id=conversation_id, deleted=True, turns=worker.manager.store.delete_conversation(conversation_id))

    return await worker.call(delete)


@router.get(
    "/{conversation_id}/export",
    summary="The conversation as a file: JSONL (one record, as `chatbot sessions export`) or Markdown",
    responses={200: {"content": {"application/x-ndjson": {}, "text/markdown": {}}}},
)
async def export_conversation(conversation_id: Id, request: Request, format: Literal["jsonl", "markdown"] = "jsonl") -> Response:
    from chatbot.dialogue.export import export_text

    worker = _worker(request)

    def export():
        _conversation(request, conversation_id)
        store = worker.manager.store
        return "".join(export_text(store.active_paths([conversation_id]), "jsonl" if format == "jsonl" else "md", store.models()))

    text = await worker.call(export)
    media, suffix = ("application/x-ndjson", "jsonl") if format == "jsonl" else ("text/markdown; charset=utf-8", "md")
    disposition = f'attachment; filename="conversation-{conversation_id}.{suffix}"'
    return Response(text, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/{conversation_id}/turns", response_model=TurnList, summary="The active path, first turn first")
async def list_turns(conversation_id: Id, request: Request) -> TurnList:
    worker = _worker(request)

    def turns():
        _conversation(request, conversation_id)
        manager = worker.manager
        alternatives = manager.store.alternatives_on_path(conversation_id)
        models = manager.store.models()
        return TurnList(data=[turn_view(t, models, len(alternatives.get(t.id, []))) for t in manager.history(conversation_id)])

    return await worker.call(turns)


@router.get("/{conversation_id}/transcript", response_model=Transcript, summary="The active path and every branch")
async def get_transcript(conversation_id: Id, request: Request) -> Transcript:
    worker = _worker(request)

    def transcript():
        conversation = _conversation(request, conversation_id)
        found = worker.manager.transcript(conversation_id, all_branches=True)
        models = found.models
        alternatives = {active: len(siblings) for active, siblings in found.alternatives.items()}
        return Transcript(
            conversation=conversation_view(conversation, models, len(found.turns)),
            turns=[turn_view(t, models, alternatives.get(t.id, 0)) for t in found.turns],
            branches=[
                BranchObject(number=b.number, active=b.active, fork=b.fork, turns=[turn_view(t, models) for t in b.path])
                for b in found.branches
            ],
        )

    return await worker.call(transcript)


@router.get("/{conversation_id}/branches", response_model=BranchList, summary="Every branch (made by retries and edits), numbered")
async def list_branches(conversation_id: Id, request: Request) -> BranchList:
    worker = _worker(request)

    def branches():
        _conversation(request, conversation_id)
        models = worker.manager.store.models()
        found = worker.manager.branches(conversation_id)
        return BranchList(
            data=[BranchObject(number=b.number, active=b.active, fork=b.fork, turns=[turn_view(t, models) for t in b.path]) for b in found]
        )

    return await worker.call(branches)


@router.post("/{conversation_id}/branches/{number}/activate", response_model=TurnList, summary="Continue from branch `number`")
async def switch_branch(conversation_id: Id, number: Number, request: Request) -> TurnList:
    worker = _worker(request)

    def switch():
        _conversation(request, conversation_id)
        manager = worker.manager
        with manager.store.tickets.turn(conversation_id, manager.busy_wait):
            path = manager.switch(conversation_id, number)
        return TurnList(data=_turns_view(manager, path))

    return await worker.call(switch)


async def _exchange(request: Request, conversation_id: int, run, stream: bool = False):
    """Run one manager exchange (`run(on_user_turn)`) on a request thread; answer JSON or, with `stream`, events."""
    worker = _worker(request)
    worker.require_model()

    def view(exchange: Exchange) -> ExchangeObject:
        return exchange_view(exchange, worker.manager.store.models(), worker.model_checksum)

    def call(on_user_turn=None):
        _conversation(request, conversation_id)
        return view(run(on_user_turn))

    if not stream:
        return await worker.call(call)
    task, first = await until_stored(worker, call)

    async def events():
        if first is not None:
            yield f"event: message\ndata: {turn_view(first).model_dump_json()}\n\n"
        try:
            exchange = await task
        except Exception as exc:  # noqa: BLE001 - after the 200: an error event (the app's handlers are not reached)
            yield f"event: error\ndata: {json.dumps(stream_error(exc, worker.manager.store.where, request.url.path).body())}\n\n"
            return
        if exchange.reply is not None:
            for piece in word_deltas(exchange.reply.content):
                yield f"event: delta\ndata: {json.dumps({'content': piece})}\n\n"
        yield f"event: done\ndata: {exchange.model_dump_json()}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Conversation-Id": str(conversation_id), "Cache-Control": "no-cache"}
    )


@router.post(
    "/{conversation_id}/messages",
    response_model=ExchangeObject,
    summary="Send a message and get the reply (stream: events message, delta…, done)",
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}},
)
async def post_message(conversation_id: Id, body: MessageCreate, request: Request):
    worker = _worker(request)
    worker.require_model()
    decoding = decoding_from(body, worker.default_decoding)
    seed = new_seed() if body.seed is None else body.seed
    return await _exchange(
        request,
        conversation_id,
        lambda hook: worker.manager.answer(conversation_id, body.content, decoding, seed, on_user_turn=hook),
        body.stream,
    )


@router.post(
    "/{conversation_id}/retry",
    response_model=ExchangeObject,
    summary="A fresh reply in place of the last one (or turn_id); the earlier is kept",
)
async def retry_reply(conversation_id: Id, body: RetryRequest, request: Request):
    worker = _worker(request)
    worker.require_model()
    decoding = decoding_from(body, worker.default_decoding)
    seed = new_seed() if body.seed is None else body.seed
    return await _exchange(
        request, conversation_id, lambda hook: worker.manager.retry(conversation_id, decoding, seed, reply_id=body.turn_id)
    )


@router.post(
    "/{conversation_id}/edit", response_model=ExchangeObject, summary="Rewrite your last message (or turn_id) and answer it: a new branch"
)
async def edit_message(conversation_id: Id, body: EditRequest, request: Request):
    worker = _worker(request)
    worker.require_model()
    decoding = decoding_from(body, worker.default_decoding)
    seed = new_seed() if body.seed is None else body.seed
    return await _exchange(
        request, conversation_id, lambda hook: worker.manager.edit(conversation_id, body.content, decoding, seed, turn_id=body.turn_id)
    )


@router.post(
    "/{conversation_id}/turns/{turn_id}/pick", response_model=TurnObject, summary="Store another candidate of a reply in its place"
)
async def pick_candidate(conversation_id: Id, turn_id: Id, body: PickRequest, request: Request) -> TurnObject:
    worker = _worker(request)

    def pick():
        _conversation(request, conversation_id)
        return turn_view(worker.manager.pick(conversation_id, turn_id, body.index), worker.manager.store.models())

    return await worker.call(pick)


@router.post(
    "/{conversation_id}/replay", response_model=ReplayObject, summary="Regenerate every stored reply and say whether it came back identical"
)
async def replay_conversation(conversation_id: Id, body: ReplayRequest, request: Request) -> ReplayObject:
    from chatbot.evaluation.replay import ModelCache, regenerate

    worker = _worker(request)
    worker.require_model()
    if not body.regenerate:
        raise APIError(400, "regenerate: only true is supported (GET /transcript reads the stored turns)", param="regenerate")

    def replay():
        _conversation(request, conversation_id)
        manager = worker.manager
        models = ModelCache(loaded={worker.model_checksum: (manager.responder.checkpoint, worker.batching)}, load_others=False)
        results = regenerate(manager.store, conversation_id, models, all_branches=body.all_branches)
        replies = [
            ReplayedTurn(
                turn_id=r.turn.id,
                position=r.turn.position,
                active=bool(r.turn.active),
                stored=r.turn.text,
                regenerated=r.text,
                identical=r.identical,
                note=r.problem,
            )  # fmt: skip
            for r in results
        ]
        return ReplayObject(
            conversation_id=conversation_id, replies=replies, identical=sum(r.identical for r in replies), total=len(replies)
        )

    return await worker.call(replay)
