"""Keep TensorFlow's native (C++) start-up chatter off the person's terminal.

TensorFlow 2.21 logs through absl before any setting applies (the
TF_CPP_MIN_LOG_LEVEL variable does not silence it), so the CLI points file
descriptor 2 at /dev/null and gives Python's `sys.stderr` a private duplicate
of the real one: our messages and tracebacks still show, native logs do not.

TensorFlow's Python logger (`logging.getLogger("tensorflow")`) is not caught by
that: it gets its stream handler when TensorFlow is first imported, inside the
silenced block, so it writes to the duplicate. Its warnings are as much
TensorFlow's diagnostics as the native lines (the multi-line "N of the last M
calls ... triggered tf.function retracing" is one, for graphs made per setting on
purpose), so while silenced its records below ERROR are dropped too.
Set CHATBOT_DEBUG=1 to see them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

TENSORFLOW_LOGGER = "tensorflow"  # the logger TensorFlow's Python code writes to (tf.get_logger())


class _ErrorsOnly(logging.Filter):
    """Lets through only records at ERROR and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def native_logs_silenced():
    """Silence fd 2 for native code, and TensorFlow's Python warnings, while `sys.stderr` keeps writing to the real stderr."""
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
    errors_only = _ErrorsOnly()
    tensorflow_logger = logging.getLogger(TENSORFLOW_LOGGER)  # the same object TensorFlow configures later (no import here)
    tensorflow_logger.addFilter(errors_only)
    try:
        yield
    finally:
        tensorflow_logger.removeFilter(errors_only)
        sys.stderr.flush()
        os.dup2(real, 2)
        sys.stderr.close()
        sys.stderr = original
