"""The terminal chat: a prompt-toolkit loop over a DialogueManager. No SQL here."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatbot.checkpoint import check_model_dir
from chatbot.decoding import DecodingConfig, decoding_from_args, describe
from chatbot.errors import ChatbotError, CheckpointError, ConfigError
from chatbot.manager import DialogueManager, new_seed
from chatbot.transcript import branch_lines, branches, session_lines, transcript_lines

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
    need them, which run eagerly meanwhile: see ReplyGenerator's `background_compile`.)

    Args:
        store: the conversation store (opened on the main thread; all SQL stays there).
        load: builds `(checkpoint, generator)` (imports TensorFlow; runs in the thread).
    """

    def __init__(self, store, load: Callable[[], tuple], context_turns: int | None):
        self.store = store
        self.context_turns = context_turns
        self._loaded: tuple | None = None
        self._error: BaseException | None = None
        self._manager: DialogueManager | None = None
        self._ready = threading.Event()

        def run():
            try:
                self._loaded = load()
            except BaseException as exc:  # reported on the main thread when a reply needs the model
                self._error = exc
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, name="chatbot-model-load", daemon=True)
        self._thread.start()

    def finish(self, compile_seconds: float = 5.0) -> bool:
        """Wait for the loading thread to end, then up to `compile_seconds` for background compiles.

        Leaving the chat while TensorFlow is still importing or compiling in a thread would
        abort the interpreter at exit ("terminate called without an active exception").

        Returns:
            True when no background thread is left running.
        """
        self._thread.join()
        generation = sys.modules.get("chatbot.generation")
        if generation is None:  # never imported: loading failed early, and nothing compiles
            return True
        COMPILE_THREAD = generation.COMPILE_THREAD
        deadline = time.monotonic() + compile_seconds
        for thread in threading.enumerate():
            if thread.name == COMPILE_THREAD:
                thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.name == COMPILE_THREAD and thread.is_alive() for thread in threading.enumerate())

    def manager(self, waiting: Callable[[], None] = lambda: None) -> DialogueManager:
        """The DialogueManager, once the model is loaded. Raises what loading raised."""
        if self._manager is None:
            if not self._ready.is_set():
                waiting()
                self._ready.wait()
            if self._error is not None:
                raise self._error
            checkpoint, generator = self._loaded
            self._manager = DialogueManager(self.store, checkpoint, context_turns=self.context_turns, generator=generator)
        return self._manager


class ChatREPL:
    """A terminal conversation.

    Args:
        manager: answers and stores turns: a DialogueManager, or a ModelLoader still loading one.
        decoding: initial decoding settings (changed by /greedy, /top-p, ...).
        prompt_session: a prompt-toolkit PromptSession (tests pass one on pipe input).
        write: prints one line of output.
        conversation_id: resume this conversation; None starts a new one at the first message.
        seed: seed of the first reply; later replies draw fresh seeds (every seed is stored).
    """

    def __init__(
        self,
        manager: DialogueManager | ModelLoader,
        decoding: DecodingConfig,
        prompt_session: PromptSession,
        write: Callable[[str], None] = print,
        conversation_id: int | None = None,
        seed: int | None = None,
    ):
        self._manager = manager
        self.store = manager.store
        self.decoding = decoding
        self.prompt_session = prompt_session
        self.write = write
        self.conversation_id = conversation_id
        self.seed = seed

    @property
    def manager(self) -> DialogueManager:
        if isinstance(self._manager, ModelLoader):
            manager = self._manager.manager(waiting=lambda: self.write("(loading the model …)"))
            self._manager = manager
            checkpoint = manager.checkpoint
            self.write(f"(model {checkpoint.path.name} ready: {checkpoint.model_config.architecture}, {checkpoint.model_id[:8]})")
        return self._manager

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
        manager = self.manager  # load before the message is stored: a failed load stores nothing
        if self.conversation_id is None:
            self.conversation_id = manager.start().id
        self._answer_message(manager.add_user_turn(self.conversation_id, line))
        return True

    def _answer_message(self, user_turn) -> None:
        """Reply to a just-stored user message, noting first when the model reads only its start."""
        manager = self.manager
        if manager.is_truncated(user_turn.text):
            limit = manager.max_utterance_length - 2
            self.write(f"(note: the model reads only the first {limit} tokens of a message; the rest was ignored)")
        self._answer(manager.context(user_turn.conversation_id))

    def _answer(self, history, replaces=None) -> None:
        """Generate for `history`, let the person pick when there are several candidates, store, print."""
        manager = self.manager
        seed = new_seed() if self.seed is None else self.seed
        self.seed = None
        candidates = manager.candidates(history, self.decoding, seed)
        chosen = self._pick(candidates) if len(candidates.texts) > 1 else 0
        turn = manager.add_bot_turn(self.conversation_id, candidates, chosen, replaces=replaces)
        self.write(f"bot> {turn.text}")

    def _pick(self, candidates) -> int:
        for number, (text, found) in enumerate(zip(candidates.texts, candidates.found), start=1):
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
            for text in session_lines(self.store.list_conversations(10)):
                self.write(text)
        elif name == "/resume":
            if not argument.isdigit():
                raise ConfigError("usage: /resume ID (see /sessions)")
            self.store.get_conversation(int(argument))
            self.conversation_id = int(argument)
            self._show_resumed()
        elif name == "/history":
            if self.conversation_id is None:
                self.write("no messages yet in this conversation")
            else:
                for text in transcript_lines(self.store, self.conversation_id):
                    self.write(text)
        elif name == "/retry":
            if self.conversation_id is None:
                raise ConfigError("nothing to retry yet: send a message first")
            previous, history = self.manager.last_bot_turn(self.conversation_id)
            self._answer(history, replaces=previous)
            self.write(f"(the earlier reply is kept as an alternative: {previous.text})")
        elif name == "/edit":
            self._edit(argument)
        elif name == "/branches":
            for text in branch_lines(branches(self.store.tree(self._current("no branches yet")))):
                self.write(text)
            self.write("(/switch N continues from branch N)")
        elif name == "/switch":
            conversation_id = self._current("no branches yet")
            found = branches(self.store.tree(conversation_id))
            if not argument.isdigit() or not 1 <= int(argument) <= len(found):
                raise ConfigError(f"usage: /switch N with N from 1 to {len(found)} (see /branches)")
            path = self.store.activate(found[int(argument) - 1].path[-1].id)
            self._show_resumed(f"switched to branch {argument} ({len(path)} turns); the last ones:")
        elif name == "/title":
            conversation_id = self._current("no conversation yet: send a message first")
            if argument:
                self.store.rename_conversation(conversation_id, argument)
            self.write(f"title: {self.store.get_conversation(conversation_id).title}")
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
        manager = self.manager
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
        turns = self.store.turns(self.conversation_id)
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
    """`chatbot chat`: open the store, show the prompt, and load the model in the background
    (tests pass a session on pipe input)."""
    from chatbot.checkpoint import find_default_model
    from chatbot.paths import storage_dir
    from chatbot.store import open_store

    decoding = decoding_from_args(args)
    store = open_store(args.db)
    if args.resume is not None:
        store.get_conversation(args.resume)  # fail before the slow model load
    model_dir = find_default_model() if args.model is None else args.model
    check_model_dir(model_dir)  # a missing model fails now, not at the first message

    def load():
        from chatbot.checkpoint import load_checkpoint
        from chatbot.manager import default_context_turns, make_generator

        checkpoint = load_checkpoint(model_dir)
        turns = default_context_turns(checkpoint) if args.context_turns is None else args.context_turns
        generator = make_generator(checkpoint, turns, background_compile=True) if turns >= 1 else None
        return checkpoint, generator

    loader = ModelLoader(store, load, args.context_turns)
    print(f"model {model_dir} loading in the background; decoding: {describe(decoding)}", file=sys.stderr, flush=True)
    session = prompt_session or PromptSession(history=private_history(storage_dir() / "repl_history"))
    try:
        status = ChatREPL(loader, decoding, session, write=write, conversation_id=args.resume, seed=args.seed).run()
    finally:
        settled = loader.finish()
    if not settled and prompt_session is None:
        # A graph is still compiling after every turn was committed: leave without interpreter
        # finalisation, which would abort in the compiler's thread. (Not for in-process callers.)
        sys.stdout.flush()
        sys.stderr.flush()
        store.close()
        os._exit(status)
    return status
