"""`chatbot serve`: check the settings, then run uvicorn with one or more worker processes.

Before any worker starts: a non-loopback ``--host`` without ``--api-key-file``
is refused (a server open to the network must know who is calling), the key
file is read and made owner-only, the model directory and the database are
checked (each failure one line). The configuration then travels to the
workers in the environment (`ServeConfig.to_environment`), and uvicorn's
supervisor runs them: each builds its app with `chatbot.serve.app.create_app`.
SIGTERM or Ctrl-C: no new connections, the requests in flight finish (up to
`shutdown_seconds`), and the server exits 0. XLA's persistent compilation
cache lives in ``$CHATBOT_HOME/cache/xla``, so a restarted worker compiles less.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

from chatbot.errors import ConfigError
from chatbot.serve.settings import ENVIRONMENT_VARIABLE, ServeConfig


def config_from_args(args) -> ServeConfig:
    """The ServeConfig of parsed `chatbot serve` flags. Raises ConfigError for a value out of range."""
    return ServeConfig(
        model=args.model,
        db=args.db,
        host=args.host,
        port=args.port,
        workers=args.workers,
        api_key_file=args.api_key_file,
        cors_origins=tuple(args.cors_origin or ()),
        context_turns=args.context_turns,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        busy_wait=args.busy_wait,
        max_body_bytes=args.max_body_bytes,
    )


def check(config: ServeConfig) -> ServeConfig:
    """Refuse what would fail in every worker, with one line each; returns the config with its cache folder.

    Raises:
        ConfigError: a non-loopback host without keys, a bad key file, the serve extra missing.
        CheckpointError: the model directory is missing or incomplete.
        StorageError: the database cannot be opened or written.
    """
    from chatbot.inference.checkpoint import check_model_dir, find_default_model
    from chatbot.paths import cache_dir
    from chatbot.serve.keys import read_key_file
    from chatbot.serve.worker import SCRIPTED
    from chatbot.storage import open_store

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"chatbot serve needs FastAPI and uvicorn ({exc.name} is missing): pip install -e '.[serve]'") from None
    if not config.loopback and not config.api_key_file:
        raise ConfigError(
            f"--host {config.host} would let anyone on the network talk to the bot and read its conversations: "
            "give --api-key-file FILE (lines of name:key), or keep the default --host 127.0.0.1"
        )
    if config.api_key_file:
        read_key_file(config.api_key_file)
    if config.model != SCRIPTED:
        check_model_dir(find_default_model() if config.model is None else config.model)
    store = open_store(config.db)
    try:
        if store.upgrade_note:
            print(store.upgrade_note, file=sys.stderr)
        store.check_writable()
    finally:
        store.close()
    return dataclasses.replace(config, compile_cache=config.compile_cache or str(cache_dir() / "xla"))


def run_server(args) -> int:
    """`chatbot serve`: check, then serve until SIGTERM or Ctrl-C. Returns 0 after a clean shutdown."""
    import uvicorn

    from chatbot.inference.compiler import persistent_cache

    config = check(config_from_args(args))
    os.environ[ENVIRONMENT_VARIABLE] = config.to_environment()
    # Each worker's TensorFlow would start a thread per core; workers sharing the cores would then
    # oversubscribe them (two workers on two cores ran slower than one). Give each its share.
    share = str(max(1, (os.cpu_count() or 1) // config.workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", share)
    if config.compile_cache:
        persistent_cache(config.compile_cache)
    keys = "API keys from " + config.api_key_file if config.api_key_file else "no API keys (loopback only)"
    print(
        f"chatbot serve: http://{config.host}:{config.port} · {config.workers} worker(s) · model {config.model or 'default'} · {keys}; "
        "GET /health says 200 once the model answers",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again so the process ends by it;
    # a server asked to stop has done nothing wrong: that second delivery exits 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        "chatbot.serve.app:create_app",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level="warning",
        timeout_graceful_shutdown=int(config.shutdown_seconds),
        server_header=False,
    )
    return 0


def _stopped(signal_number, frame) -> None:
    """Exit 0 at once: the server has shut down (uvicorn delivers the stop signal again after that), and a
    process that ran TensorFlow can abort in interpreter finalisation (its thread pools), as the chat can."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
