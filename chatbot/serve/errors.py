"""The API's errors: one object in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with its status.

`APIError` is raised by the routes; `api_error` turns a domain error (`chatbot.errors`) into one:
400 bad input, 404 unknown conversation or turn (another key's is the same 404), 409 busy or
changed conversation, 503 overloaded, model unavailable or storage down, each with ``Retry-After``
where waiting helps. The message is the domain error's one line, without the database's name.
"""

from __future__ import annotations

import sys
import traceback

from fastapi.responses import JSONResponse

from chatbot.errors import (
    ChatbotError,
    CheckpointError,
    ConfigError,
    ConversationBusyError,
    ConversationChangedError,
    ConversationNotFoundError,
    OverloadedError,
    StorageError,
)


class APIError(Exception):
    """An error response: status, OpenAI error fields, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers=None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        """The error object, as a response body or a stream's error event carries it."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def api_error(exc: BaseException, where: str | None = None) -> APIError:
    """The response for a domain error (its message is one line; the database's name is left out)."""
    message = " ".join(str(exc).split())
    if where and message.startswith(f"{where}: "):
        message = message[len(where) + 2 :]
    if isinstance(exc, ConversationNotFoundError):
        return APIError(
            404, "no such conversation (or turn): it was never created, was deleted, or belongs to another key", code="not_found"
        )
    if isinstance(exc, ConversationBusyError):
        retry = str(max(1, round(exc.retry_after)))
        return APIError(409, message, "conflict_error", "conversation_busy", headers={"Retry-After": retry})
    if isinstance(exc, ConversationChangedError):
        return APIError(409, message, "conflict_error", "conversation_changed", headers={"Retry-After": "1"})
    if isinstance(exc, OverloadedError):
        return APIError(503, message, "server_error", "overloaded", headers={"Retry-After": str(max(1, round(exc.retry_after)))})
    if isinstance(exc, StorageError):
        return APIError(
            503, f"the conversation store is unavailable: {message}", "server_error", "storage_unavailable", headers={"Retry-After": "5"}
        )
    if isinstance(exc, CheckpointError):
        return APIError(503, message, "server_error", "model_unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, ConfigError | ChatbotError):
        return APIError(400, message, code="invalid_value")
    raise TypeError(exc)


INTERNAL = "internal server error; the server log has the details"


def log_unexpected(where: str, exc: BaseException) -> None:
    """Put an unexpected error's traceback in the server log (the client gets one line, never this)."""
    print(f"chatbot serve: internal error in {where}:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


def stream_error(exc: BaseException, where: str, path: str) -> APIError:
    """The error event for a failure after a stream's 200 went out: a domain error's own, or (logged) a 500."""
    if isinstance(exc, ChatbotError):
        return api_error(exc, where)
    log_unexpected(f"a stream of {path}", exc)
    return APIError(500, INTERNAL, "server_error", "internal_error")
