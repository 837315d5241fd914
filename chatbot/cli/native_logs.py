"""Keep TensorFlow's native (C++) start-up chatter off the person's terminal.

TensorFlow 2.21 logs through absl before any setting applies (the
TF_CPP_MIN_LOG_LEVEL variable does not silence it), so the CLI points file
descriptor 2 at /dev/null and gives Python's `sys.stderr` a private duplicate
of the real one: our messages and tracebacks still show, native logs do not.
Set CHATBOT_DEBUG=1 to see them.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_logs_silenced():
    """Silence fd 2 for native code while `sys.stderr` keeps writing to the real stderr."""
    original = sys.stderr
    if os.environ.get("CHATBOT_DEBUG") or original is not sys.__stderr__ or original is None:
        yield  # debugging, or stderr is already captured (tests): leave it alone
        return
    original.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding=original.encoding, errors="backslashreplace")
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        sys.stderr.close()
        sys.stderr = original
