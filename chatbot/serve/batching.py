"""The worker's one inference thread: requests from many threads, decoded one batch at a time.

Keras models are not safe to call from several threads at once, and a reply
at batch size 1 is memory-bound (every decoder step reads every weight for one
token), so each worker runs its model on one thread of its own and decodes
concurrent requests together. `BatchingGenerator` stands where a
`ReplyGenerator` stands (`candidates(context_tokens, config, seed)`), so the
dialogue manager's one reply path runs unchanged: a request thread puts its
job on a bounded queue and waits; the inference thread takes the first job,
gathers whatever else arrives within `window_ms` (up to `max_batch`), and
decodes the jobs that share a sampler graph and its knobs as one padded batch
(`chatbot.inference.batch_generation.BatchReplyGenerator.candidates_batch`), the rest one by one.

A batch's replies are the ones each request gets alone, token for token (the
same seeds drive the same draws; `tests/test_serve_batching.py` and
`benchmarks/serve_load.py` check it), which is what lets batching be the default.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

from chatbot.errors import OverloadedError
from chatbot.inference.decoding import DecodingConfig


@dataclasses.dataclass
class _Job:
    context_tokens: object  # (1, num_turns, utterance_length) int32
    config: DecodingConfig
    seed: int
    eager: bool
    call: Callable[[], object] | None = None  # `run`: a function for the inference thread instead of a reply
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class BatchingGenerator:
    """A `ReplyGenerator` front that many threads may call; one thread runs the model.

    Args:
        generator: the BatchReplyGenerator (compiled graphs) the inference thread drives.
        window_ms: how long to wait for more requests once one arrives (0: decode each alone).
        max_batch: most requests in one batch.
        max_queue: most requests waiting; a request beyond it raises OverloadedError at once.
        in_flight: how many requests the worker is handling now; the window is waited only when it is
            above one (a lone request is decoded at once). None: always wait.
    """

    def __init__(
        self, generator, window_ms: float = 2.0, max_batch: int = 16, max_queue: int = 64, in_flight: Callable[[], int] | None = None
    ):
        self.generator = generator
        self.window = window_ms / 1000.0
        self.in_flight = in_flight
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="chatbot-inference", daemon=True)
        self._thread.start()

    # --- request threads -----------------------------------------------------

    def candidates(self, context_tokens, config: DecodingConfig, seed: int, eager: bool = False) -> list:
        """What `ReplyGenerator.candidates` returns, computed on the inference thread (this thread waits).

        Raises:
            OverloadedError: `max_queue` requests are already waiting.
            What the generator raises.
        """
        job = _Job(context_tokens, config, seed, eager)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise OverloadedError(
                f"this server worker is answering {self._queue.maxsize} requests already; try again in a moment", retry_after=1.0
            ) from None
        return self._wait(job)

    def run(self, function: Callable[[], object]):
        """Run `function()` on the inference thread (compiling, warming up) and return its result."""
        job = _Job(None, DecodingConfig(), 0, False, call=function)
        self._queue.put(job)
        return self._wait(job)

    @staticmethod
    def _wait(job: _Job):
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    @property
    def batches(self) -> Counter[int]:
        """How many batches of each number of requests the generator decoded together (a copy)."""
        return Counter(getattr(self.generator, "batches", {}))

    @property
    def context_shape(self) -> tuple[int, int]:
        return self.generator.context_shape

    def close(self) -> None:
        """Stop the inference thread after the jobs already queued."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    # --- the inference thread ----------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            alone = self.in_flight is not None and self.in_flight() <= 1 and self._queue.empty()
            if job.call is None and self.window > 0 and not alone and self._batch_key(job.config) is not None:
                deadline = time.monotonic() + self.window
                while len(jobs) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    try:
                        more = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    jobs.append(more)
            try:
                self._serve(jobs)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive any job: hand the error to the waiters
                for waiting in jobs:
                    if not waiting.done.is_set():
                        waiting.error = exc
                        waiting.done.set()

    def _serve(self, jobs: list[_Job]) -> None:
        groups: dict[tuple, list[_Job]] = {}
        for index, job in enumerate(jobs):
            if job.call is not None:
                self._finish([job], lambda call: [call()], job.call)
                continue
            key = None if job.eager else self._batch_key(job.config)
            groups.setdefault(("alone", index) if key is None else key, []).append(job)
        for group in groups.values():
            requests = [(job.context_tokens, job.config, job.seed, job.eager) for job in group]
            self._finish(group, self._decode, requests)

    def _batch_key(self, config: DecodingConfig) -> tuple | None:
        """The generator's batch key (None: decode alone; a generator without batches decodes all alone)."""
        batch_key = getattr(self.generator, "batch_key", None)
        return batch_key(config) if batch_key is not None else None

    def _decode(self, requests: list[tuple]) -> list[list]:
        """Each request's candidates: one batch when there are several (they share a batch key), else alone."""
        if len(requests) == 1:
            context, config, seed, eager = requests[0]
            return [self.generator.candidates(context, config, seed, eager=eager)]
        return self.generator.candidates_batch([(context, config, seed) for context, config, seed, _ in requests])

    def _finish(self, group: list[_Job], compute: Callable[..., list], argument) -> None:
        """Set each job's result from `compute(argument)` (one per job), or its error, and wake its thread."""
        try:
            results = compute(argument)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request threads, never lost
            for job in group:
                job.error = exc
                job.done.set()
            return
        for job, result in zip(group, results, strict=True):
            job.result = result
            job.done.set()
