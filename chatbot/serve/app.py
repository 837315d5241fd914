"""The FastAPI application of `chatbot serve`: limits, API keys, errors in OpenAI's shape, ``/health``.

`create_app(config)` builds it around one `Worker`. Every route but
``/health`` needs ``Authorization: Bearer KEY`` when the server has keys
(`chatbot.serve.keys`); a body over `max_body_bytes` is refused with 413
before it is read whole; every error, whatever raised it, leaves as
``{"error": {"message", "type", "param", "code"}}`` with its status (400
bad input, 401 no or wrong key, 404 unknown conversation or model, 409
conversation busy, 413, 503 overloaded, loading or storage down, each
with ``Retry-After`` where waiting helps) and never a stack trace. CORS is
off unless origins are named. ``/`` is the chat page (`chatbot.serve.page`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbot import __version__
from chatbot.errors import (
    ChatbotError,
)
from chatbot.serve.errors import INTERNAL, APIError, api_error, log_unexpected
from chatbot.serve.keys import owner_of
from chatbot.serve.openai_protocol import ErrorResponse
from chatbot.serve.settings import ServeConfig
from chatbot.serve.worker import Worker

log = logging.getLogger("chatbot.serve")


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413: by Content-Length at once, else while they are read."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(self.limit).response()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge
            return message

        await self.app(scope, counted, send)


class SecurityHeaders:
    """Every response says: do not sniff content types; scripts, frames and objects only from this origin
    (a page can run no inline script, so text inserted into it cannot become code)."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"),
    ]

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is over {limit:,} bytes, this server's limit", code="request_too_large")


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The application for one worker process (uvicorn's factory: the config comes from the environment)."""
    from chatbot.serve import completions, conversations_api, page

    if config is None:  # a `chatbot serve` worker process (uvicorn's factory), before its model load imports TensorFlow
        from chatbot.inference.lean_import import skip_optional_imports

        skip_optional_imports()
        config = ServeConfig.from_environment()
    started = time.monotonic()
    holder: dict[str, Worker] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        holder["worker"] = Worker(config, started)
        app.state.worker = holder["worker"]
        try:
            yield
        finally:
            holder["worker"].close()

    app = FastAPI(
        title="chatbot",
        version=__version__,
        summary="Hierarchical recurrent dialogue models over HTTP: OpenAI's Chat Completions and a conversation API.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load scripts from a CDN and run inline ones, which this server's
        # Content-Security-Policy forbids (they rendered blank in Chromium): the document is /openapi.json.
        docs_url=None,
        redoc_url=None,
        responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 503)},
    )
    app.state.config = config

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(ChatbotError)
    async def _domain_error(request: Request, exc: ChatbotError):
        return api_error(exc, app.state.worker.manager.store.where).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        if first.get("type") == "json_invalid":
            return APIError(400, f"the body is not valid JSON: {first.get('msg', 'parse error')}", code="invalid_json").response()
        message = f"{param or 'the body'}: {first.get('msg', 'invalid value')}"
        return APIError(400, message, code="invalid_value", param=param).response()

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge):
        return too_large(config.max_body_bytes).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log_unexpected(f"{request.method} {request.url.path}", exc)  # the log has it; the client never sees it
        return APIError(500, INTERNAL, "server_error", "internal_error").response()

    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Conversation-Id", "Retry-After"],
        )

    @app.get("/health", summary="503 until this worker answers in compiled time, then 200 with the model", tags=["health"])
    async def health():
        worker = app.state.worker
        if worker.problem is not None:
            return JSONResponse({"status": "failed", "worker": os.getpid(), "problem": worker.problem}, status_code=503)
        if not worker.ready:
            return JSONResponse({"status": "loading", "worker": os.getpid()}, status_code=503, headers={"Retry-After": "2"})
        return {
            "status": "ok",
            "worker": os.getpid(),
            "model": worker.model_name,
            "model_id": worker.model_checksum,
            "ready_after_seconds": round(worker.ready_seconds, 2),
            "compile_seconds": round(worker.compile_seconds or 0.0, 2),
            "batches": dict(sorted(worker.batching.batches.items())) if worker.batching is not None else {},
            "compiling": worker.compiling,
        }

    dependencies = [Depends(authenticated)]
    app.include_router(completions.router, dependencies=dependencies)
    app.include_router(conversations_api.router, dependencies=dependencies)
    page.add_page(app)
    return app


async def authenticated(request: Request) -> str | None:
    """The owner of the request: its key's name (None without keys). Raises 401 for a missing or wrong key."""
    worker: Worker = request.app.state.worker
    if not worker.keys:
        return None
    owner = owner_of(request.headers.get("authorization"), worker.keys)
    if owner is None:
        raise APIError(
            401,
            "missing or wrong API key: send Authorization: Bearer KEY with a key from the server's --api-key-file",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.owner = owner
    return owner
