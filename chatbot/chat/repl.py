"""The terminal chat: a prompt-toolkit loop over a DialogueManager, its only way to the data.

`ChatREPL` reads lines and /commands and asks the manager for everything
(replies, sessions, branches, titles); `ModelLoader` loads the model in a
background thread so the prompt shows first; `run_chat` wires them.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from prompt_toolkit import PromptSession

from chatbot.chat.terminal import LineInput
from chatbot.chat.views import branch_lines, session_lines, transcript_lines
from chatbot.dialogue.manager import DialogueManager, Exchange
from chatbot.errors import ChatbotError, CheckpointError, ConfigError
from chatbot.inference.decoding import DecodingConfig, describe
from chatbot.paths import db_flag, program
from chatbot.text.messages import MAX_MESSAGE_CHARS, clean_message

RESUME_SHOWN_TURNS = 6  # turns printed when a conversation is resumed
HINT = "type a message, /help for commands, Ctrl-D to leave"

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


def _number(text: str) -> int:
    """`text` as a positive id or choice (ASCII digits, at most 18 of them: SQLite's integers), else 0."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else 0


def pick(candidates, prompt_session, write: Callable[[str], None]) -> int | None:
    """Show candidate replies and return the index the person picks (Enter or end of input: the
    first); None after Ctrl-C, which cancels the pick."""
    for number, (text, found) in enumerate(zip(candidates.texts, candidates.found, strict=True), start=1):
        write(f"  {number}. {text}   (score {found.score:.2f}, log p {found.log_probability:.1f})")
    while True:
        try:
            answer = prompt_session.prompt(f"pick 1-{len(candidates.texts)} (Enter = 1)> ").strip()
        except EOFError:
            return 0  # the input ended: the first candidate is stored, nothing is lost
        except KeyboardInterrupt:
            return None
        if not answer:
            return 0
        if 1 <= _number(answer) <= len(candidates.texts):
            return int(answer) - 1
        write(f"type a number from 1 to {len(candidates.texts)}, or Enter for 1")


def changed_setting(decoding: DecodingConfig, name: str, argument: str) -> DecodingConfig:
    """`decoding` after the settings command `name` (one of SETTINGS) with `argument`.

    Raises:
        ConfigError: the argument is not a valid value (the message shows the usage).
    """
    change, usage = SETTINGS[name]
    try:
        changes = change(argument)
    except ValueError:
        raise ConfigError(f"usage: {usage}, got {argument!r}") from None
    if changes.get("sampler") == "beam" and decoding.num_return_sequences > changes["num_beams"]:
        changes["num_return_sequences"] = changes["num_beams"]
    try:
        return decoding.replace(**changes)
    except ValueError as exc:  # DecodingConfig's own range checks
        raise ConfigError(f"usage: {usage}, got {argument!r}") from exc


class ModelLoader:
    """Loads the model in a background thread while the person types; the first reply waits
    only for the load. (The decoding graphs compile in the background after the replies that
    need them, which run eagerly meanwhile: see the generator's BackgroundCompiler.)

    Waiting is on an Event, not `Thread.join`: a join interrupted by Ctrl-C can leave the thread
    looking alive forever (CPython gh-90882), and the chat must still be able to leave.

    Args:
        load: builds `(checkpoint, generator)` (imports TensorFlow; runs in the thread).
    """

    def __init__(self, load: Callable[[], tuple]):
        self._loaded: tuple | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

        def run():
            try:
                self._loaded = load()
            except BaseException as exc:  # reported on the main thread when a reply needs the model
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, name="chatbot-model-load", daemon=True).start()

    def ready(self) -> bool:
        return self._done.is_set()

    def result(self) -> tuple:
        """`(checkpoint, generator)`, waiting for the load (Ctrl-C interrupts the wait). Raises what loading raised."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._loaded is not None  # the thread ended without an error, so it loaded
        return self._loaded

    def finish(self, compile_seconds: float = 5.0) -> bool:
        """Wait for the load to end, then up to `compile_seconds` for background compiles.

        Leaving the chat while TensorFlow is still importing or compiling in a thread would
        abort the interpreter at exit ("terminate called without an active exception").

        Returns:
            True when no background thread is left running.
        """
        self._done.wait()
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
        seed: seed of the first reply, and of the generator that draws every later reply's seed, so one seed
            replays a whole chat given the same messages (None: every reply a fresh random seed; all are stored).
        loader: loads the model in the background; attached to `manager` when a reply first needs it.
        context_turns: turns of context when the model is attached (default: the model's window).
        hint: the line shown before the first prompt (None: nothing, for files and pipes).
        on_reply: receives each stored bot turn instead of its `bot>` line being written (`--output jsonl`).
        db: the `--db` the chat was started with, repeated in the closing hint (None: the default database).
    """

    def __init__(
        self,
        manager: DialogueManager,
        decoding: DecodingConfig,
        prompt_session: PromptSession | LineInput,
        write: Callable[[str], None] = print,
        conversation_id: int | None = None,
        seed: int | None = None,
        loader: ModelLoader | None = None,
        context_turns: int | None = None,
        hint: str | None = HINT,
        on_reply: Callable | None = None,
        db: str | None = None,
    ):
        self.manager = manager
        self.decoding = decoding
        self.prompt_session = prompt_session
        self.write = write
        self.conversation_id = conversation_id
        self.seed = seed  # the next reply's seed (None: a fresh random one)
        self._seeds = random.Random(seed) if seed is not None else None  # later replies' seeds, from --seed
        self.loader = loader
        self.context_turns = context_turns
        self.hint = hint
        self.on_reply = on_reply
        self.db = db
        self._waiting = False  # a message kept after Ctrl-C while the model loaded waits for an answer

    def _model_ready(self) -> DialogueManager:
        """The manager with its model attached, waiting for the background load the first time."""
        if not self.manager.ready:
            if self.loader is None:
                raise ConfigError("no model to answer with (its loading was cancelled): restart the chat to load it")
            if not self.loader.ready():
                self.write("(loading the model …)")
            checkpoint, generator = self.loader.result()
            self.manager.attach(checkpoint, self.context_turns, generator)
            self.write(f"(model {checkpoint.path.name} ready: {checkpoint.model_config.architecture}, {checkpoint.model_id[:8]})")
        return self.manager

    def run(self) -> int:
        if self.conversation_id is not None:
            self._show_resumed()
        if self.hint:
            self.write(self.hint)
        while True:
            try:
                line = self.prompt_session.prompt("you> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line
            except EOFError:
                break
            except Exception as exc:  # noqa: BLE001 - input the terminal layer could not parse: say so, keep chatting
                self.write(f"error: could not read that input ({type(exc).__name__}: {exc}); type it again")
                continue
            try:
                if not self.handle(line):
                    break
            except KeyboardInterrupt:
                self.write("(cancelled)")  # Ctrl-C during a command: what was stored stays stored
            except CheckpointError:
                raise  # the model cannot load: nothing can be answered (the message was not stored)
            except ChatbotError as exc:
                self.write(f"error: {exc}")
        if self.conversation_id is not None:
            again = f"{program()} chat --resume {self.conversation_id}{db_flag(self.db)}"
            self.write(f"saved as conversation {self.conversation_id}; continue with: {again}")
        return 0

    def handle(self, line: str) -> bool:
        """Act on one input line; False means leave. A message kept while the model loaded is answered first, once it is ready."""
        if self._waiting and self.loader is not None and self.loader.ready():
            self._answer_kept()
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        if not clean_message(line).text:
            raise ConfigError("empty message: type some text (escape codes and control characters are removed)")
        if self.loader is None and not self.manager.ready:  # its loading was cancelled
            self._store_message(line)
            self.write("(no model loaded: your message is kept; restart the chat and /retry answers it)")
            return True
        try:
            self._model_ready()  # before the message is stored: a model that cannot load stores nothing
        except KeyboardInterrupt:
            self._store_message(line)
            if self._waiting:  # a second Ctrl-C while it still loads: go on without the model
                self.loader, self._waiting = None, False
                self.write("(model loading cancelled: your messages are kept; stored conversations can still be read)")
            else:
                self._waiting = True
                self.write("(stopped waiting for the model: your message is kept and answered once the model is ready)")
            return True
        if self._waiting:  # the model became ready while this line waited for it: the kept message comes first
            self._answer_kept()
        if self.conversation_id is None:  # made before the exchange, so a reply cancelled by Ctrl-C leaves a conversation to /retry in
            self.conversation_id = self.manager.start().id
        self._exchange(lambda manager, seed: manager.answer(self.conversation_id, line, self.decoding, seed, self._choose))
        return True

    def _exchange(self, run: Callable) -> Exchange | None:
        """Run one manager exchange (`run(manager, seed)`), print its notes and reply; Ctrl-C cancels the reply."""
        manager = self._model_ready()
        seed, self.seed = self.seed, (self._seeds.getrandbits(31) if self._seeds else None)
        try:
            exchange = run(manager, seed)
        except KeyboardInterrupt:
            self.write("(reply cancelled: your message is kept; /retry answers it)")
            return None
        self.conversation_id = exchange.conversation_id
        if exchange.cut:
            total = MAX_MESSAGE_CHARS + exchange.cut
            self.write(f"(note: your message has {total:,} characters; the first {MAX_MESSAGE_CHARS:,} are stored)")
        if exchange.window is not None:
            kept, total = exchange.window
            self.write(f"(note: the model reads the first {kept} of this message's {total} tokens; the rest does not reach it)")
        if exchange.reply is None:
            self.write("(pick cancelled: nothing stored; /retry shows new candidates)")
        elif self.on_reply is not None:
            self.on_reply(exchange.reply)
        else:
            self.write(f"bot> {exchange.reply.text}")
        return exchange

    def _choose(self, candidates) -> int | None:
        return pick(candidates, self.prompt_session, self.write) if len(candidates.texts) > 1 else 0

    def _answer_kept(self) -> None:
        """Answer the message kept when Ctrl-C stopped the wait for the model (now ready)."""
        self._waiting = False
        if self.conversation_id is not None and self.manager.unanswered(self.conversation_id) is not None:
            self._exchange(lambda manager, seed: manager.answer(self.conversation_id, None, self.decoding, seed, self._choose))

    def _store_message(self, line: str):
        if self.conversation_id is None:
            self.conversation_id = self.manager.start().id
        return self.manager.add_user_turn(self.conversation_id, line)

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
            conversation_id = _number(argument)
            if conversation_id < 1:
                raise ConfigError("usage: /resume ID (see /sessions)")
            self.manager.resume(conversation_id)
            self.conversation_id = conversation_id
            self._show_resumed()
        elif name == "/history":
            if self.conversation_id is None:
                self.write("no messages yet in this conversation")
            else:
                for text in transcript_lines(self.manager.transcript(self.conversation_id)):
                    self.write(text)
        elif name == "/retry":
            conversation_id = self._current("nothing to retry yet: send a message first")
            exchange = self._exchange(lambda manager, seed: manager.retry(conversation_id, self.decoding, seed, self._choose))
            if exchange is not None and exchange.reply is not None and exchange.replaced is not None:
                self.write(f"(the earlier reply is kept as an alternative: {exchange.replaced.text})")
        elif name == "/edit":
            self._edit(argument)
        elif name == "/branches":
            for text in branch_lines(self.manager.branches(self._current("no branches yet"))):
                self.write(text)
            self.write("(/switch N continues from branch N)")
        elif name == "/switch":
            conversation_id = self._current("no branches yet")
            path = self.manager.switch(conversation_id, _number(argument))
            self._show_resumed(f"switched to branch {argument} ({len(path)} turns); the last ones:")
        elif name == "/title":
            conversation_id = self._current("no conversation yet: send a message first")
            if argument:
                self.manager.rename(conversation_id, argument)
            self.write(f"title: {self.manager.resume(conversation_id).title}")
        elif name == "/settings":
            self.write(f"decoding: {describe(self.decoding)}")
        elif name in SETTINGS:
            self.decoding = changed_setting(self.decoding, name, argument)
            self.write(f"decoding: {describe(self.decoding)}")
            if name == "/temperature" and self.decoding.sampler in ("greedy", "beam"):
                self.write("(the temperature applies when sampling: /sample, /top-k or /top-p)")
        else:
            self.write(f"unknown command {clean_message(name).text}; /help lists the commands")
        return True

    def _current(self, nothing: str) -> int:
        """The current conversation's id; ConfigError(`nothing`) before the first message."""
        if self.conversation_id is None:
            raise ConfigError(nothing)
        return self.conversation_id

    def _edit(self, text: str) -> None:
        """/edit: replace the last user message (asking for the new text, prefilled, when none is given)."""
        conversation_id = self._current("nothing to edit yet: send a message first")
        self._model_ready()
        previous = self.manager.last_user_turn(conversation_id)
        if not text:
            try:
                text = self.prompt_session.prompt("edit> ", default=previous.text)
            except (EOFError, KeyboardInterrupt):
                self.write("(edit cancelled)")
                return
        exchange = self._exchange(
            lambda manager, seed: manager.edit(conversation_id, text, self.decoding, seed, self._choose, turn_id=previous.id)
        )
        if exchange is not None:
            self.write(f"(your earlier message is kept on another branch: {previous.text}; /branches lists them)")

    def _show_resumed(self, heading: str | None = None) -> None:
        turns = self.manager.history(self._current("no conversation yet"))
        self.write(heading or f"resumed conversation {self.conversation_id} ({len(turns)} turns); the last ones:")
        for turn in turns[-RESUME_SHOWN_TURNS:]:
            self.write(f"{'you' if turn.speaker == 'user' else 'bot'}> {turn.text}")
        if turns and turns[-1].speaker == "user":
            self.write("(your last message has no reply yet: /retry answers it)")
