"""The terminal chat: a prompt-toolkit loop over a DialogueManager. No SQL here."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatbot.decoding import DecodingConfig, describe
from chatbot.errors import ChatbotError, ConfigError
from chatbot.manager import DialogueManager
from chatbot.transcript import session_lines, transcript_lines

HELP = """commands:
  /help              this list
  /new               start a new conversation (the current one stays saved)
  /sessions          list recent conversations
  /resume ID         continue conversation ID with its history as context
  /history           show this conversation so far
  /temperature T     set the sampling temperature (> 0) for the next replies
  /quit              leave (Ctrl-D works too); Ctrl-C clears the line"""


class ChatREPL:
    """A terminal conversation.

    Args:
        manager: answers and stores turns.
        decoding: initial decoding settings (changed by /temperature).
        prompt_session: a prompt-toolkit PromptSession (tests pass one on pipe input).
        write: prints one line of output.
        conversation_id: resume this conversation; None starts a new one at the first message.
        seed: seed of the first reply; later replies draw fresh seeds (every seed is stored).
    """

    def __init__(
        self,
        manager: DialogueManager,
        decoding: DecodingConfig,
        prompt_session: PromptSession,
        write: Callable[[str], None] = print,
        conversation_id: int | None = None,
        seed: int | None = None,
    ):
        self.manager = manager
        self.decoding = decoding
        self.prompt_session = prompt_session
        self.write = write
        self.conversation_id = conversation_id
        self.seed = seed

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
        if self.conversation_id is None:
            self.conversation_id = self.manager.start().id
        reply = self.manager.reply(self.conversation_id, line, self.decoding, seed=self.seed)
        self.seed = None
        if reply.truncated:
            limit = self.manager.max_utterance_length - 2
            self.write(f"(note: the model reads only the first {limit} tokens of a message; the rest was ignored)")
        self.write(f"bot> {reply.bot_turn.text}")
        return True

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
            for text in session_lines(self.manager.store.list_conversations(10)):
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
                for text in transcript_lines(self.manager.store, self.conversation_id):
                    self.write(text)
        elif name == "/temperature":
            try:
                value = float(argument)
            except ValueError:
                raise ConfigError(f"usage: /temperature T with T > 0, got {argument!r}") from None
            self.decoding = dataclasses.replace(self.decoding, temperature=value)
            self.write(f"decoding: {describe(self.decoding)}")
        else:
            self.write(f"unknown command {name}; /help lists the commands")
        return True

    def _show_resumed(self) -> None:
        turns = self.manager.history(self.conversation_id)
        self.write(f"resumed conversation {self.conversation_id} ({len(turns)} turns); the last ones:")
        for turn in turns[-self.manager.context_turns :]:
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
    """`chatbot chat`: load the model, open the store, run the REPL (tests pass a session on pipe input)."""
    import sys

    from chatbot.checkpoint import find_default_model, load_checkpoint
    from chatbot.paths import default_database_url, storage_dir
    from chatbot.store import ConversationStore

    decoding = DecodingConfig(temperature=args.temperature, top_p=args.top_p, max_reply_tokens=args.max_reply_tokens)
    store = ConversationStore(args.db or default_database_url())
    if args.resume is not None:
        store.get_conversation(args.resume)  # fail before the slow model load
    model_dir = args.model or find_default_model()
    print(f"loading model {model_dir} …", file=sys.stderr, flush=True)
    checkpoint = load_checkpoint(model_dir)
    manager = DialogueManager(store, checkpoint, context_turns=args.context_turns)
    print(
        f"model {checkpoint.path.name} ({checkpoint.model_config.architecture}, {checkpoint.model_id[:8]}); "
        f"decoding: {describe(decoding)}; context: last {manager.context_turns} turns",
        file=sys.stderr,
    )
    session = prompt_session or PromptSession(history=private_history(storage_dir() / "repl_history"))
    return ChatREPL(manager, decoding, session, write=write, conversation_id=args.resume, seed=args.seed).run()
