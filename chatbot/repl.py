"""The terminal chat: a prompt-toolkit loop over a DialogueManager, its only way to the data.

`ChatREPL` reads lines and /commands and asks the manager for everything
(replies, sessions, branches, titles); `ModelLoader` loads the model in a
background thread so the prompt shows first; `run_chat` wires them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatbot.checkpoint import check_model_dir
from chatbot.decoding import DecodingConfig, decoding_from_args, describe
from chatbot.errors import ChatbotError, CheckpointError, ConfigError
from chatbot.manager import DialogueManager, new_seed
from chatbot.transcript import branch_lines, session_lines, transcript_lines

RESUME_SHOWN_TURNS = 6  # turns printed when a conversation is resumed

HELP = """commands:
  /help              this list
  /new               start a new conversation (the current one stays saved)
  /sessions          list recent conversations
  /resume ID         continue conversation ID with its history as context
  /history           show this conversation so far
  /retry             replace the last reply with a fresh one (the earlier one is kept as an alternative)
  /edit [TEXT]       rewrite your last message and answer it again (the earlier exchange stays on its branch)
  /branches          list this conversation's branches (made by /retry and /edit)
  /switch N          continue from branch N
  /title [TEXT]      show or change this conversation's title
  /candidates N      show N candidate replies with scores and pick one (1 = off)
  /settings          show the decoding settings
  /greedy            always the most probable token
  /sample            sample from the whole distribution (with the temperature)
  /top-k K           sample among the K most probable tokens
  /top-p P           sample from the smallest set of tokens holding probability P
  /beam N            beam search with N beams
  /temperature T     sharpen (< 1) or flatten (> 1) the sampling distribution
  /quit              leave (Ctrl-D works too); Ctrl-C clears the line"""

# /command → (DecodingConfig field changes from the argument, usage)
SETTINGS: dict[str, tuple[Callable[[str], dict], str]] = {
    "/greedy": (lambda _: {"sampler": "greedy"}, "/greedy"),
    "/sample": (lambda _: {"sampler": "sample"}, "/sample"),
    "/top-k": (lambda a: {"sampler": "top_k", "top_k": int(a)}, "/top-k K with K >= 1"),
    "/top-p": (lambda a: {"sampler": "top_p", "top_p": float(a)}, "/top-p P with 0 < P <= 1"),
    "/beam": (lambda a: {"sampler": "beam", "num_beams": int(a)}, "/beam N with N >= 1"),
    "/temperature": (lambda a: {"temperature": float(a)}, "/temperature T with T > 0"),
    "/candidates": (lambda a: {"num_return_sequences": int(a)}, "/candidates N with N >= 1"),
}


class ModelLoader:
    """Loads the model in a background thread while the person types; the first reply waits
    only for the load. (The decoding graphs compile in the background after the replies that
    need them, which run eagerly meanwhile: see the generator's BackgroundCompiler.)

    Args:
        load: builds `(checkpoint, generator)` (imports TensorFlow; runs in the thread).
    """

    def __init__(self, load: Callable[[], tuple]):
        self._loaded: tuple | None = None
        self._error: BaseException | None = None

        def run():
            try:
                self._loaded = load()
            except BaseException as exc:  # reported on the main thread when a reply needs the model
                self._error = exc

        self._thread = threading.Thread(target=run, name="chatbot-model-load", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> tuple:
        """`(checkpoint, generator)`, waiting for the load. Raises what loading raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._loaded is not None  # the thread ended without an error, so it loaded
        return self._loaded

    def finish(self, compile_seconds: float = 5.0) -> bool:
        """Wait for the loading thread to end, then up to `compile_seconds` for background compiles.

        Leaving the chat while TensorFlow is still importing or compiling in a thread would
        abort the interpreter at exit ("terminate called without an active exception").

        Returns:
            True when no background thread is left running.
        """
        self._thread.join()
        generator = self._loaded[1] if self._loaded is not None else None
        compiler = getattr(generator, "compiler", None)
        return compiler is None or compiler.wait(compile_seconds)


class ChatREPL:
    """A terminal conversation. It talks only to the DialogueManager.

    Args:
        manager: answers and stores turns; it may have no model yet (see `loader`).
        decoding: initial decoding settings (changed by /greedy, /top-p, ...).
        prompt_session: a prompt-toolkit PromptSession (tests pass one on pipe input).
        write: prints one line of output.
        conversation_id: resume this conversation; None starts a new one at the first message.
        seed: seed of the first reply; later replies draw fresh seeds (every seed is stored).
        loader: loads the model in the background; attached to `manager` when a reply first needs it.
        context_turns: turns of context when the model is attached (default: the model's window).
    """

    def __init__(
        self,
        manager: DialogueManager,
        decoding: DecodingConfig,
        prompt_session: PromptSession,
        write: Callable[[str], None] = print,
        conversation_id: int | None = None,
        seed: int | None = None,
        loader: ModelLoader | None = None,
        context_turns: int | None = None,
    ):
        self.manager = manager
        self.decoding = decoding
        self.prompt_session = prompt_session
        self.write = write
        self.conversation_id = conversation_id
        self.seed = seed
        self.loader = loader
        self.context_turns = context_turns

    def _model_ready(self) -> DialogueManager:
        """The manager with its model attached, waiting for the background load the first time."""
        if not self.manager.ready:
            if self.loader is None:
                raise ConfigError("no model to answer with")
            if not self.loader.ready():
                self.write("(loading the model …)")
            checkpoint, generator = self.loader.result()
            self.manager.attach(checkpoint, self.context_turns, generator)
            self.write(f"(model {checkpoint.path.name} ready: {checkpoint.model_config.architecture}, {checkpoint.model_id[:8]})")
        return self.manager

    def run(self) -> int:
        if self.conversation_id is not None:
            self._show_resumed()
        self.write("type a message, /help for commands, Ctrl-D to leave")
        while True:
            try:
                line = self.prompt_session.prompt("you> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line
            except EOFError:
                break
            try:
                if not self.handle(line):
                    break
            except CheckpointError:
                raise  # the model cannot load: nothing can be answered (the message was not stored)
            except ChatbotError as exc:
                self.write(f"error: {exc}")
        if self.conversation_id is not None:
            self.write(f"saved as conversation {self.conversation_id}; continue with: chatbot chat --resume {self.conversation_id}")
        return 0

    def handle(self, line: str) -> bool:
        """Act on one input line; False means leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        manager = self._model_ready()  # load before the message is stored: a failed load stores nothing
        if self.conversation_id is None:
            self.conversation_id = manager.start().id
        self._answer_message(manager.add_user_turn(self.conversation_id, line))
        return True

    def _answer_message(self, user_turn) -> None:
        """Reply to a just-stored user message, noting first when the model reads only its start."""
        manager = self._model_ready()
        if manager.is_truncated(user_turn.text):
            limit = manager.max_utterance_length - 2
            self.write(f"(note: the model reads only the first {limit} tokens of a message; the rest was ignored)")
        self._answer(manager.context(user_turn.conversation_id))

    def _answer(self, history, replaces=None) -> None:
        """Generate for `history`, let the person pick when there are several candidates, store, print."""
        manager = self._model_ready()
        seed = new_seed() if self.seed is None else self.seed
        self.seed = None
        candidates = manager.candidates(history, self.decoding, seed)
        chosen = self._pick(candidates) if len(candidates.texts) > 1 else 0
        turn = manager.add_bot_turn(self._current("no conversation yet"), candidates, chosen, replaces=replaces)
        self.write(f"bot> {turn.text}")

    def _pick(self, candidates) -> int:
        for number, (text, found) in enumerate(zip(candidates.texts, candidates.found, strict=True), start=1):
            self.write(f"  {number}. {text}   (score {found.score:.2f}, log p {found.log_probability:.1f})")
        while True:
            try:
                answer = self.prompt_session.prompt(f"pick 1-{len(candidates.texts)} (Enter = 1)> ").strip()
            except (EOFError, KeyboardInterrupt):
                return 0  # the reply is stored anyway: nothing is lost
            if not answer:
                return 0
            if answer.isdigit() and 1 <= int(answer) <= len(candidates.texts):
                return int(answer) - 1
            self.write(f"type a number from 1 to {len(candidates.texts)}, or Enter for 1")

    def command(self, line: str) -> bool:
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.write(HELP)
        elif name == "/new":
            self.conversation_id = None
            self.write("new conversation: it starts with your next message")
        elif name == "/sessions":
            for text in session_lines(self.manager.sessions(10)):
                self.write(text)
        elif name == "/resume":
            if not argument.isdigit():
                raise ConfigError("usage: /resume ID (see /sessions)")
            self.manager.resume(int(argument))
            self.conversation_id = int(argument)
            self._show_resumed()
        elif name == "/history":
            if self.conversation_id is None:
                self.write("no messages yet in this conversation")
            else:
                for text in transcript_lines(self.manager.transcript(self.conversation_id)):
                    self.write(text)
        elif name == "/retry":
            if self.conversation_id is None:
                raise ConfigError("nothing to retry yet: send a message first")
            previous, history = self._model_ready().last_bot_turn(self.conversation_id)
            self._answer(history, replaces=previous)
            self.write(f"(the earlier reply is kept as an alternative: {previous.text})")
        elif name == "/edit":
            self._edit(argument)
        elif name == "/branches":
            for text in branch_lines(self.manager.branches(self._current("no branches yet"))):
                self.write(text)
            self.write("(/switch N continues from branch N)")
        elif name == "/switch":
            conversation_id = self._current("no branches yet")
            path = self.manager.switch(conversation_id, int(argument) if argument.isdigit() else 0)
            self._show_resumed(f"switched to branch {argument} ({len(path)} turns); the last ones:")
        elif name == "/title":
            conversation_id = self._current("no conversation yet: send a message first")
            if argument:
                self.manager.rename(conversation_id, argument)
            self.write(f"title: {self.manager.resume(conversation_id).title}")
        elif name == "/settings":
            self.write(f"decoding: {describe(self.decoding)}")
        elif name in SETTINGS:
            change, usage = SETTINGS[name]
            try:
                changes = change(argument)
            except ValueError:
                raise ConfigError(f"usage: {usage}, got {argument!r}") from None
            if changes.get("sampler") == "beam" and self.decoding.num_return_sequences > changes["num_beams"]:
                changes["num_return_sequences"] = changes["num_beams"]
            self.decoding = self.decoding.replace(**changes)
            self.write(f"decoding: {describe(self.decoding)}")
            if name == "/temperature" and self.decoding.sampler in ("greedy", "beam"):
                self.write("(the temperature applies when sampling: /sample, /top-k or /top-p)")
        else:
            self.write(f"unknown command {name}; /help lists the commands")
        return True

    def _current(self, nothing: str) -> int:
        """The current conversation's id; ConfigError(`nothing`) before the first message."""
        if self.conversation_id is None:
            raise ConfigError(nothing)
        return self.conversation_id

    def _edit(self, text: str) -> None:
        """/edit: replace the last user message (asking for the new text, prefilled, when none is given)."""
        conversation_id = self._current("nothing to edit yet: send a message first")
        manager = self._model_ready()
        previous = manager.last_user_turn(conversation_id)
        if not text:
            try:
                text = self.prompt_session.prompt("edit> ", default=previous.text)
            except (EOFError, KeyboardInterrupt):
                self.write("(edit cancelled)")
                return
        user_turn, previous = manager.edit_user_turn(conversation_id, text, previous)
        self._answer_message(user_turn)
        self.write(f"(your earlier message is kept on another branch: {previous.text}; /branches lists them)")

    def _show_resumed(self, heading: str | None = None) -> None:
        turns = self.manager.history(self._current("no conversation yet"))
        self.write(heading or f"resumed conversation {self.conversation_id} ({len(turns)} turns); the last ones:")
        for turn in turns[-RESUME_SHOWN_TURNS:]:
            self.write(f"{'you' if turn.speaker == 'user' else 'bot'}> {turn.text}")


def private_history(path: os.PathLike) -> History:
    """Input history kept in a file readable by its owner only (it holds what the person typed)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


def run_chat(args, prompt_session: PromptSession | None = None, write: Callable[[str], None] = print) -> int:
    """`chatbot chat`: open the conversations, show the prompt, and load the model in the background
    (tests pass a session on pipe input)."""
    from chatbot.checkpoint import find_default_model
    from chatbot.paths import storage_dir

    decoding = decoding_from_args(args)
    manager = DialogueManager.open(args.db)
    if manager.upgrade_note:
        print(manager.upgrade_note, file=sys.stderr)
    if args.resume is not None:
        manager.resume(args.resume)  # fail before the slow model load
    model_dir = find_default_model() if args.model is None else args.model
    check_model_dir(model_dir)  # a missing model fails now, not at the first message

    def load():
        from chatbot.checkpoint import load_checkpoint
        from chatbot.manager import default_context_turns, make_generator

        checkpoint = load_checkpoint(model_dir)
        turns = default_context_turns(checkpoint) if args.context_turns is None else args.context_turns
        generator = make_generator(checkpoint, turns, background_compile=True) if turns >= 1 else None
        return checkpoint, generator

    loader = ModelLoader(load)
    print(f"model {model_dir} loading in the background; decoding: {describe(decoding)}", file=sys.stderr, flush=True)
    session = prompt_session or PromptSession(history=private_history(storage_dir() / "repl_history"))
    repl = ChatREPL(
        manager,
        decoding,
        session,
        write=write,
        conversation_id=args.resume,
        seed=args.seed,
        loader=loader,
        context_turns=args.context_turns,
    )
    try:
        status = repl.run()
    finally:
        settled = loader.finish()
    if not settled and prompt_session is None:
        # A graph is still compiling after every turn was committed: leave without interpreter
        # finalisation, which would abort in the compiler's thread. (Not for in-process callers.)
        sys.stdout.flush()
        sys.stderr.flush()
        manager.close()
        os._exit(status)
    return status
