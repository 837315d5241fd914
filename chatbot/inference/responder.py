"""Responder: a model answering histories (context window, compiled generator, candidate texts). No storage.

What every front end's reply is made by: `DialogueManager` answers stored
conversations through it, `chatbot replay` regenerates stored replies with it,
and `chatbot eval` scores its replies, so the text a chat shows is the text
eval scores and replay compares.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

from chatbot.errors import ConfigError
from chatbot.inference.checkpoint import Checkpoint
from chatbot.inference.decoding import DECODER_VERSION, EARLIER_REPLY_TURNS, DecodingConfig
from chatbot.inference.framing import context_array
from chatbot.text.messages import clean_message
from chatbot.text.normalize import normalize_text


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Candidate replies, best first, with how they were made (enough to regenerate them).

    Attributes:
        texts: the replies as stored and shown (`reply_text` of the decoded tokens).
        found: `generation.Candidate` per text: token ids, log-probability (nats), score, ended, compiled.
        decoding, seed: what made them.
        latency_ms: wall time to generate them all, milliseconds.
        prompt_tokens: tokens of the framed context the model read.
        stopped: per text, whether it was cut at one of `decoding.stop`.
    """

    texts: list[str]
    found: list
    decoding: DecodingConfig
    seed: int
    latency_ms: float
    prompt_tokens: int = 0
    stopped: list[bool] = dataclasses.field(default_factory=list)


class Responder:
    """A model answering histories: checkpoint, context window and compiled generator. No storage.

    Args:
        checkpoint: the model that answers.
        context_turns: turns of a history fed as context (default: the model's window, max_turns - 1).
        generator: a ReplyGenerator (or anything with its `candidates`) already built for this
            checkpoint, e.g. loaded in the background, or the server's batching generator.

    Raises:
        ConfigError: `context_turns` < 1.
    """

    def __init__(self, checkpoint: Checkpoint, context_turns: int | None = None, generator=None):
        self.checkpoint = checkpoint
        self.context_turns = default_context_turns(checkpoint) if context_turns is None else context_turns
        if self.context_turns < 1:
            raise ConfigError(f"--context-turns must be at least 1, got {self.context_turns}")
        self.max_utterance_length = checkpoint.model_config.max_utterance_length
        self.history_turns = max(self.context_turns, EARLIER_REPLY_TURNS)  # turns a reply is given (it reads context_turns)
        self.generator = generator or make_generator(checkpoint, self.context_turns)

    def token_window(self, text: str) -> tuple[int, int]:
        """(tokens of `text` the model reads, tokens of `text`): it reads at most max_utterance_length - 2."""
        total = len(self.checkpoint.tokenizer.encode(text))
        return min(total, self.max_utterance_length - 2), total

    def context_tokens(self, history: list[str]):
        """`(1, num_turns, utterance_length)` int32: the last texts of `history`, framed: the model reads the
        last `context_turns`; the bot's earlier replies are looked for in more (`EARLIER_REPLY_TURNS`)."""
        encoded = self.checkpoint.tokenizer.encode_batch(list(history[-self.history_turns :]))
        return context_array(encoded, self.max_utterance_length)

    def candidates(self, history: list[str], decoding: DecodingConfig, seed: int, eager: bool = False) -> Candidates:
        """`decoding.num_return_sequences` candidate replies to the texts of `history`, best first
        (with `eager`, on the eager path even when the generator is compiled)."""
        started = time.perf_counter()
        context = self.context_tokens(history)
        found = self.generator.candidates(context, decoding, seed, eager=eager)
        cut = [cut_at_stop(reply_text(self.checkpoint.tokenizer, c.token_ids), decoding.stop) for c in found]
        latency_ms = (time.perf_counter() - started) * 1000.0
        texts = [text or "…" for text, _ in cut]
        read = int((context[:, -self.context_turns :] > 0).sum())
        return Candidates(texts, found, decoding, seed, latency_ms, read, [stopped for _, stopped in cut])

    def settings(self, candidates: Candidates, chosen: int = 0) -> dict:
        """What regenerates a stored reply exactly: the decoding settings plus the pick (and, with several
        candidates, their texts, so another can be picked later), context window, decoder version and
        path (compiled or eager)."""
        decoding = candidates.decoding.to_dict()
        if len(candidates.texts) > 1:
            decoding["chosen"] = chosen
            decoding["candidates"] = list(candidates.texts)
        decoding["context_turns"] = self.context_turns
        decoding["decoder_version"] = DECODER_VERSION
        decoding["compiled"] = all(c.compiled for c in candidates.found)
        return decoding


def reply_text(tokenizer, token_ids) -> str:
    """A reply's text as it is stored, shown and sent: the decoded pieces cleaned as a typed message is
    (`clean_message`: escape sequences and control characters removed, whitespace collapsed). SentencePiece's
    byte-fallback pieces can decode to any byte, ESC included, and a reply is printed to terminals and
    matched against the history an HTTP client sends back, which is cleaned the same way."""
    return clean_message(tokenizer.decode(list(token_ids))).text


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first of the stop strings, and whether one was found."""
    ends = [text.find(stop) for stop in stops if stop in text]
    return (normalize_text(text[: min(ends)]), True) if ends else (text, False)


def new_seed() -> int:
    return secrets.randbits(31)


def default_context_turns(checkpoint: Checkpoint) -> int:
    return checkpoint.model_config.max_turns - 1


def make_generator(checkpoint: Checkpoint, context_turns: int | None = None, background_compile: bool = False):
    """A ReplyGenerator sized for this checkpoint's contexts (imports TensorFlow)."""
    from chatbot.inference.generation import ReplyGenerator

    turns = default_context_turns(checkpoint) if context_turns is None else context_turns
    shape = (max(turns, 1), checkpoint.model_config.max_utterance_length)
    return ReplyGenerator(checkpoint.model, shape, background_compile=background_compile)
