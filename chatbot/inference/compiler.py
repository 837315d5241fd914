"""BackgroundCompiler: graph compilations in daemon threads, and a way to wait for them.

A chat answers a setting it has not compiled yet on the eager path while XLA
compiles in the background (`chatbot.inference.generation.ReplyGenerator` with
`background_compile=True`); whoever must not leave while a compile runs waits here.
`persistent_cache` keeps XLA's compiled programs on disk, so the next chat or
server process loads them instead of compiling again.
"""

from __future__ import annotations

import os
import threading
import time


class BackgroundCompiler:
    """Runs graph compilations in daemon threads and says when they are done.

    Owned by a `ReplyGenerator` made with `background_compile=True`; whoever must not
    leave while a compile runs (the chat, at exit: an interpreter finalised under a
    running XLA compile aborts) waits with `wait`.
    """

    def __init__(self):
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, compile_graphs, *args) -> None:
        """Run `compile_graphs(*args)` in a new daemon thread."""
        thread = threading.Thread(target=compile_graphs, args=args, name="chatbot-compile", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def ready(self) -> bool:
        """No compile is running."""
        with self._lock:
            return not any(thread.is_alive() for thread in self._threads)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the running compiles; True when none is left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return self.ready()


def persistent_cache(folder: str) -> None:
    """Point TensorFlow's XLA persistent compilation cache at `folder` (before TensorFlow is imported), so a
    restarted worker reads its compiled programs instead of compiling them again."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
