"""What every benchmark script shares: the checkout importable, and TensorFlow's native log lines off the terminal.

A script imports this first (`import _common`: the script's folder is on `sys.path` when it runs as
`python benchmarks/NAME.py`), keeps TensorFlow's imports inside its functions, and ends with
`_common.run(main)`. TensorFlow 2.21 writes its absl start-up lines to file descriptor 2 before
`TF_CPP_MIN_LOG_LEVEL` applies; `chatbot.cli.native_logs.native_logs_silenced`, which the `chatbot`
CLI uses too, points that descriptor at /dev/null while Python's `sys.stderr` keeps the real
stderr, so the script's own messages and tracebacks still show. Set CHATBOT_DEBUG=1 to see the
native lines. A child process inherits the silenced descriptor, so a child whose errors matter
has its stderr captured (or sends them back, as store_concurrency's chat processes do); a child
that is the `chatbot` CLI silences its own native lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# TensorFlow's C++ logging after start-up (the start-up lines ignore it), here and in child processes.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's `main` with native log lines silenced, and exit with its return code."""
    from chatbot.cli.native_logs import native_logs_silenced

    with native_logs_silenced():
        code = main()
    sys.exit(code)
