"""What one server worker process holds: the model (loaded in the background), the dialogue manager, its threads.

A worker keeps no conversation state between requests: everything lives in the
shared database, so any worker (or host) can take any request. At start it
opens the database, then loads and compiles the model on a background thread
(`/health` says 503 meanwhile, 200 once the default decoding answers in
compiled time); requests run the dialogue manager on a bounded pool of request
threads (the event loop never waits on TensorFlow or SQL), and every reply is
generated on the one inference thread of `chatbot.serve.batching`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import CheckpointError, OverloadedError
from chatbot.inference.decoding import DecodingConfig
from chatbot.serve.batching import BatchingGenerator
from chatbot.serve.keys import read_key_file
from chatbot.serve.settings import ServeConfig
from chatbot.storage import open_store

T = TypeVar("T")
SCRIPTED = "scripted"  # --model scripted: the null model of chatbot.inference.scripted


class Worker:
    """One worker's model, manager and threads.

    Args:
        config: the server's settings.
        started: `time.monotonic()` when the process started (to report how long it took to be ready).

    Raises:
        ConfigError: the API key file is invalid.
        StorageError: the database cannot be opened.
    """

    def __init__(self, config: ServeConfig, started: float | None = None):
        self.config = config
        self.started = time.monotonic() if started is None else started
        self.keys = read_key_file(config.api_key_file) if config.api_key_file else {}
        self.manager = DialogueManager(open_store(config.db), busy_wait=config.busy_wait)
        self.default_decoding = DecodingConfig()
        self.model_name: str | None = None
        self.model_checksum: str | None = None
        self.model_created = 0
        self.ready_seconds: float | None = None  # process start to compiled replies
        self.compile_seconds: float | None = None  # of which compiling (tracing and XLA) the default decoding
        self.problem: str | None = None  # why the model could not be loaded
        self.batching: BatchingGenerator | None = None  # once loaded
        self._requests = concurrent.futures.ThreadPoolExecutor(config.max_queue, thread_name_prefix="chatbot-request")
        self._inflight = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._load, name="chatbot-model-load", daemon=True).start()

    @property
    def ready(self) -> bool:
        return self.ready_seconds is not None

    @property
    def compiling(self) -> bool:
        """Graphs are compiling in the background (a batch size's after its first batch, a new setting's):
        until they are done, the requests they serve are decoded one by one, or eagerly."""
        compiler = getattr(self.batching.generator, "compiler", None) if self.batching is not None else None
        return compiler is not None and not compiler.ready()

    def _load(self) -> None:
        """Load, compile and warm up the model, then attach it (in a background thread)."""
        try:
            from chatbot.inference.batch_generation import BatchReplyGenerator

            checkpoint = self._checkpoint()
            turns = self.config.context_turns or checkpoint.model_config.max_turns - 1
            generator = BatchReplyGenerator(
                checkpoint.model, (turns, checkpoint.model_config.max_utterance_length), background_compile=True
            )
            batching = BatchingGenerator(
                generator, self.config.batch_window_ms, self.config.max_batch, self.config.max_queue, in_flight=lambda: self._inflight
            )
            self.compile_seconds = batching.run(lambda: generator.warm_up(self.default_decoding))  # before /health says 200
            self.manager.attach(checkpoint, turns, batching)
            self.batching = batching
            self.model_name = checkpoint.path.name
            self.model_checksum = checkpoint.model_id
            model_file = checkpoint.path / "model.keras"
            self.model_created = int(model_file.stat().st_mtime) if model_file.exists() else int(time.time())
            # A batch size compiles in the background the first time a batch of that size comes
            # (generator.candidates_batch); until then its requests are decoded one by one.
            self.ready_seconds = time.monotonic() - self.started
        except Exception as exc:  # noqa: BLE001 - reported by /health and every reply route, never a traceback
            self.problem = " ".join(str(exc).split()) or type(exc).__name__

    def _checkpoint(self):
        from chatbot.inference.checkpoint import find_default_model, load_checkpoint

        if self.config.model == SCRIPTED:
            from chatbot.inference.scripted import scripted_checkpoint

            return scripted_checkpoint(Path(SCRIPTED))
        return load_checkpoint(find_default_model() if self.config.model is None else self.config.model)

    def require_model(self) -> None:
        """Raise CheckpointError while the model loads or when it failed to (the routes turn it into 503)."""
        if self.problem is not None:
            raise CheckpointError(f"the model could not be loaded: {self.problem}")
        if not self.ready:
            raise CheckpointError("the model is still loading; try again in a few seconds (GET /health says when it is ready)")

    async def call(self, function: Callable[[], T]) -> T:
        """Run `function()` on a request thread and await it; the event loop never blocks on TensorFlow or SQL.

        Raises:
            OverloadedError: `max_queue` requests are already running on this worker.
        """
        with self._lock:
            if self._inflight >= self.config.max_queue:
                raise OverloadedError(
                    f"this server worker is answering {self.config.max_queue} requests already; try again in a moment", retry_after=1.0
                )
            self._inflight += 1
        try:
            context = contextvars.copy_context()
            return await asyncio.get_running_loop().run_in_executor(self._requests, context.run, function)
        finally:
            with self._lock:
                self._inflight -= 1

    def close(self) -> None:
        """Finish what runs, then release the threads and the database (on shutdown)."""
        self._requests.shutdown(wait=True, cancel_futures=False)
        if self.batching is not None:
            self.batching.close()
            compiler = getattr(self.batching.generator, "compiler", None)
            if compiler is not None:  # an interpreter finalised under a running XLA compile aborts
                compiler.wait(60.0)
        self.manager.close()
