"""`chatbot chat`: wires the database, the background model load, the input and the REPL.

Before the prompt: the database is opened and checked writable (a read-only,
locked or corrupt file fails here with one line), a `--resume` id is checked,
and the model directory is checked; the model then loads in a background
thread while the person types. The input is the terminal (prompt-toolkit), or
a file or pipe read line by line (`--input FILE`, or stdin that is not a
terminal), printed as a `you>`/`bot>` transcript or, with `--output jsonl`, as
one JSON object per reply.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable

from prompt_toolkit import PromptSession

from chatbot.chat.repl import HINT, ChatREPL, ModelLoader
from chatbot.chat.terminal import LineInput, binary, private_history, terminal_session
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ConfigError
from chatbot.inference.checkpoint import check_model_dir
from chatbot.inference.decoding import decoding_from_args, describe


def run_chat(args, prompt_session: PromptSession | None = None, write: Callable[[str], None] = print) -> int:
    """`chatbot chat`: open the conversations, check the database can be written, show the prompt,
    and load the model in the background (tests pass a session on pipe input).

    With `--input FILE`, or stdin from a file or pipe, messages are read line by line and the chat
    prints a `you>`/`bot>` transcript (`--output jsonl`: one JSON object per reply on stdout).

    Raises:
        StorageError: the database cannot be opened or written, is locked or fails its integrity check.
        ConversationNotFoundError: `--resume` names an unknown conversation.
        CheckpointError: the model directory is missing or incomplete.
        ConfigError: `--input` cannot be read.
    """
    from chatbot.inference.checkpoint import find_default_model
    from chatbot.paths import storage_dir

    decoding = decoding_from_args(args)
    manager = DialogueManager.open(args.db, create=args.resume is None)  # resuming reads an existing database
    if manager.upgrade_note:
        print(manager.upgrade_note, file=sys.stderr)
    manager.check_writable()  # a read-only, locked or corrupt database fails now, not after the first message
    if args.resume is not None:
        manager.resume(args.resume)  # fail before the slow model load
    model_dir = find_default_model() if args.model is None else args.model
    check_model_dir(model_dir)  # a missing model fails now, not at the first message
    input_file = args.input
    interactive = prompt_session is not None or (input_file is None and sys.stdin.isatty())
    jsonl = args.output == "jsonl"

    def load():
        from chatbot.inference.checkpoint import load_checkpoint
        from chatbot.inference.responder import default_context_turns, make_generator

        checkpoint = load_checkpoint(model_dir)
        turns = default_context_turns(checkpoint) if args.context_turns is None else args.context_turns
        generator = make_generator(checkpoint, turns, background_compile=interactive) if turns >= 1 else None
        return checkpoint, generator

    from chatbot.inference.compiler import persistent_cache
    from chatbot.paths import cache_dir

    with contextlib.suppress(OSError):  # an unwritable home: compile as before
        persistent_cache(str(cache_dir() / "xla"))  # before TensorFlow is imported (by the load): a second chat compiles less
    loader = ModelLoader(load)
    print(f"model {model_dir} loading in the background; decoding: {describe(decoding)}", file=sys.stderr, flush=True)
    if jsonl:
        write = _to_stderr
    stream = None
    if prompt_session is not None:
        session: PromptSession | LineInput = prompt_session
    elif interactive:
        session = terminal_session(private_history(storage_dir() / "repl_history"))
    else:
        try:
            stream = open(input_file, "rb") if input_file else binary(sys.stdin)
        except OSError as exc:
            raise ConfigError(f"--input {input_file}: cannot read it: {exc.strerror}") from None
        session = LineInput(stream, write=None if jsonl else write)
    repl = ChatREPL(
        manager,
        decoding,
        session,
        write=write,
        conversation_id=args.resume,
        seed=args.seed,
        loader=loader,
        context_turns=args.context_turns,
        hint=HINT if interactive else None,
        on_reply=_print_json if jsonl else None,
        db=args.db,
    )
    try:
        status = repl.run()
    finally:
        settled = loader.finish()
        if input_file and stream is not None:
            stream.close()
    if not settled and prompt_session is None:
        # A graph is still compiling after every turn was committed: leave without interpreter
        # finalisation, which would abort in the compiler's thread. (Not for in-process callers.)
        sys.stdout.flush()
        sys.stderr.flush()
        manager.close()
        os._exit(status)
    return status


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _print_json(turn) -> None:
    """`--output jsonl`: one reply as a JSON object on stdout."""
    record = {
        "conversation_id": turn.conversation_id,
        "turn_id": turn.id,
        "position": turn.position,
        "reply": turn.text,
        "seed": turn.seed,
        "latency_ms": turn.latency_ms,
    }
    print(json.dumps(record, ensure_ascii=False), flush=True)
