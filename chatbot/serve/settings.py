"""ServeConfig: every setting of `chatbot serve`, with its default, meaning and unit.

The command line fills it (`chatbot.serve.server.config_from_args`); each worker
process reads it back from the environment (`CHATBOT_SERVE_CONFIG`, JSON), so
workers started by uvicorn's supervisor share one configuration.
"""

from __future__ import annotations

import dataclasses
import json
import os

from chatbot.errors import ConfigError

ENVIRONMENT_VARIABLE = "CHATBOT_SERVE_CONFIG"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """How a server runs. Raises ConfigError for a value out of range (naming the flag)."""

    model: str | None = None  # model directory (None: the default model, as `chatbot chat` finds it); "scripted": a null model
    db: str | None = None  # SQLAlchemy URL of the conversations (None: storage/chatbot.db)
    host: str = "127.0.0.1"  # address to bind; anything but loopback needs --api-key-file
    port: int = 8000
    workers: int = 1  # processes, each with its own model copy and inference thread
    api_key_file: str | None = None  # lines of name:key; every route but /health then needs a key
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the API from a browser (none: CORS off)
    context_turns: int | None = None  # stored turns fed as context (None: the model's max_turns - 1)
    batch_window_ms: float = 2.0  # how long the inference thread waits to gather concurrent requests into one batch; 0 = off
    max_batch: int = 16  # most requests decoded in one batch
    max_queue: int = 64  # requests a worker holds at once (waiting or answering); more get 503 with Retry-After
    busy_wait: float = 10.0  # seconds a request waits for its conversation to finish another reply; then 409
    max_body_bytes: int = 1_048_576  # largest request body accepted (1 MiB); larger: 413
    compile_cache: str | None = None  # folder of XLA's persistent compilation cache (None: $CHATBOT_HOME/cache/xla)
    shutdown_seconds: float = 30.0  # on SIGTERM: how long in-flight requests may finish

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.port <= 65535, f"--port must be between 1 and 65535, got {self.port}"),
            (1 <= self.workers <= 64, f"--workers must be between 1 and 64, got {self.workers}"),
            (0 <= self.batch_window_ms <= 1000, f"--batch-window-ms must be between 0 and 1000, got {self.batch_window_ms}"),
            (1 <= self.max_batch <= 64, f"--max-batch must be between 1 and 64, got {self.max_batch}"),
            (1 <= self.max_queue <= 10_000, f"--max-queue must be between 1 and 10000, got {self.max_queue}"),
            (0 <= self.busy_wait <= 600, f"--busy-wait must be between 0 and 600 seconds, got {self.busy_wait}"),
            (1024 <= self.max_body_bytes <= 1 << 30, f"--max-body-bytes must be between 1 KiB and 1 GiB, got {self.max_body_bytes}"),
            (self.context_turns is None or self.context_turns >= 1, f"--context-turns must be at least 1, got {self.context_turns}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def to_environment(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> ServeConfig:
        """The configuration the `chatbot serve` process put in the environment for its workers."""
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            return cls()
        values = json.loads(text)
        values["cors_origins"] = tuple(values.get("cors_origins") or ())
        return cls(**values)
