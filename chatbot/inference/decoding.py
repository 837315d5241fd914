"""Decoding settings and their one-line description. No TensorFlow here (the REPL imports it at start-up).

The samplers themselves live in `chatbot.inference.samplers` (in-graph TensorFlow) and
`chatbot.inference.generation` (the model-facing generator, with MMI reranking).
"""

from __future__ import annotations

import argparse
import dataclasses

from chatbot.errors import ConfigError

# Bumped whenever the same settings, seed and model could give different tokens
# (1: the NumPy sampler loop; 2: the in-graph samplers of chatbot.inference.samplers).
# Stored with every bot turn so `chatbot replay --regenerate` can tell why a reply differs.
DECODER_VERSION = 2
# Turns of the history searched for the bot's earlier replies (`no_earlier_reply_ngram`): more than the
# model reads, so a ten-turn chat cannot loop back to a reply that left the model's window.
EARLIER_REPLY_TURNS = 24
# Settings added after replies were stored: what a stored reply made without the key was decoded with.
LEGACY = {"no_earlier_reply_ngram": 0}

# The sampler names, in the order the REPL and `--help` list them.
SAMPLERS = ("greedy", "sample", "top_k", "top_p", "beam")


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    """How replies are picked. Stored as JSON with every bot turn, so a reply can be regenerated.

    The default, top-p 0.9 at temperature 0.8 with 3-gram repetition blocking,
    trades a little diversity for fewer incoherent tokens: nucleus sampling
    (Holtzman et al. 2019) cuts the unreliable tail that makes plain sampling
    ramble, while sampling at all avoids the bland, repeated replies of greedy
    and beam decoding (Li et al. 2016).

    Raises:
        ConfigError: a value out of range (the message names the flag).
    """

    sampler: str = "top_p"  # one of SAMPLERS
    temperature: float = 0.8  # sampling samplers divide the logits by it; < 1 sharpens, > 1 flattens
    top_k: int = 40  # top_k: sample among the k most probable tokens
    top_p: float = 0.9  # top_p: sample from the smallest set of tokens holding this much probability
    num_beams: int = 5  # beam: hypotheses kept per step
    length_penalty: float = 1.0  # alpha of the GNMT length normalisation ((5 + length) / 6) ** alpha (Wu et al. 2016, eq. 14); 0 = none
    min_reply_tokens: int = 1  # the end of reply is blocked before this many tokens
    max_reply_tokens: int = 40  # reply length cap, in tokens
    no_repeat_ngram: int = 3  # block any n-gram of this size from repeating within a reply; 0 = off
    no_context_ngram: int = 0  # block n-grams of this size copied from the context; 0 = off
    no_earlier_reply_ngram: int = 5  # block n-grams of this size said in an earlier bot reply of the context; 0 = off
    allow_unknown: bool = False  # let the model emit the unknown token (suppressed by default)
    num_return_sequences: int = 1  # candidates per reply, best first (beam: at most num_beams)
    mmi_weight: float = 0.0  # lambda of MMI-antiLM reranking (Li et al. 2016, eq. 9); 0 = off
    stop: tuple[str, ...] = ()  # a reply's text ends before the first of these strings (OpenAI's `stop`); applied to the decoded text

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))  # stored as a JSON list
        checks = [
            (self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}"),
            (0 < self.temperature <= 100, f"--temperature must be > 0 and at most 100, got {self.temperature}"),
            (1 <= self.top_k <= 2**31 - 1, f"--top-k must be between 1 and 2^31 - 1, got {self.top_k}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
            (1 <= self.num_beams <= 64, f"--beam must be between 1 and 64 hypotheses, got {self.num_beams}"),
            (self.length_penalty >= 0, f"--length-penalty must be >= 0, got {self.length_penalty}"),
            (1 <= self.max_reply_tokens <= 512, f"--max-reply-tokens must be between 1 and 512, got {self.max_reply_tokens}"),
            (
                1 <= self.min_reply_tokens <= self.max_reply_tokens,
                f"--min-reply-tokens must be between 1 and --max-reply-tokens ({self.max_reply_tokens}), got {self.min_reply_tokens}",
            ),
            (0 <= self.no_repeat_ngram <= 8, f"--no-repeat-ngram must be between 0 (off) and 8, got {self.no_repeat_ngram}"),
            (0 <= self.no_context_ngram <= 8, f"--no-context-ngram must be between 0 (off) and 8, got {self.no_context_ngram}"),
            (
                0 <= self.no_earlier_reply_ngram <= 8,
                f"--no-earlier-reply-ngram must be between 0 (off) and 8, got {self.no_earlier_reply_ngram}",
            ),
            (1 <= self.num_return_sequences <= 64, f"--candidates must be between 1 and 64, got {self.num_return_sequences}"),
            (self.mmi_weight >= 0, f"--mmi-weight must be >= 0, got {self.mmi_weight}"),
            (
                len(self.stop) <= 4 and all(isinstance(s, str) and s for s in self.stop),
                f"stop: up to 4 non-empty strings, got {self.stop!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.sampler == "beam" and self.num_return_sequences > self.num_beams:
            raise ConfigError(f"--candidates ({self.num_return_sequences}) cannot exceed --beam ({self.num_beams})")

    def to_dict(self) -> dict:
        """The JSON stored with a reply (`stop` only when set, so older settings read back unchanged)."""
        values = dataclasses.asdict(self)
        values["stop"] = list(self.stop)
        if not self.stop:
            del values["stop"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> DecodingConfig:
        """Rebuild stored settings; keys this version does not know are ignored, and a setting added later
        takes the value that means what was done before it existed (`LEGACY`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEGACY, **{k: v for k, v in values.items() if k in names}})

    def replace(self, **changes) -> DecodingConfig:
        """A copy with `changes` applied and validated (raises ConfigError)."""
        return dataclasses.replace(self, **changes)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The decoding flags shared by `chatbot chat`, `chatbot eval` and `chatbot replay`."""
    d = DecodingConfig()
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--sampler", choices=SAMPLERS, help=f"how tokens are picked (default {d.sampler}; --greedy, --beam N, --top-k K pick one too)"
    )
    group.add_argument("--greedy", action="store_true", help="the most probable token every time (--sampler greedy)")
    group.add_argument("--beam", type=int, metavar="N", help=f"beam search with N beams (--sampler beam; default N {d.num_beams})")
    group.add_argument("--temperature", type=float, default=d.temperature, help=f"sampling temperature, > 0 (default {d.temperature})")
    group.add_argument("--top-k", type=int, metavar="K", help=f"top-k sampling among the K most probable tokens (default K {d.top_k})")
    group.add_argument("--top-p", type=float, default=d.top_p, metavar="P", help=f"nucleus sampling mass in (0, 1] (default {d.top_p})")
    group.add_argument(
        "--length-penalty",
        type=float,
        default=d.length_penalty,
        help=f"beam: GNMT length normalisation alpha, 0 = none (default {d.length_penalty})",
    )
    group.add_argument(
        "--min-reply-tokens", type=int, default=d.min_reply_tokens, help=f"shortest reply in tokens (default {d.min_reply_tokens})"
    )
    group.add_argument(
        "--max-reply-tokens", type=int, default=d.max_reply_tokens, help=f"longest reply in tokens (default {d.max_reply_tokens})"
    )
    group.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=d.no_repeat_ngram,
        metavar="N",
        help=f"block repeated N-grams within a reply, 0 = off (default {d.no_repeat_ngram})",
    )
    group.add_argument(
        "--no-context-ngram",
        type=int,
        default=d.no_context_ngram,
        metavar="N",
        help="block N-grams copied from the context, 0 = off (default 0)",
    )
    group.add_argument(
        "--no-earlier-reply-ngram",
        type=int,
        default=d.no_earlier_reply_ngram,
        metavar="N",
        help=f"block N-grams the bot said in an earlier reply of the context, so a chat does not loop; 0 = off (default {d.no_earlier_reply_ngram})",
    )
    group.add_argument("--allow-unknown", action="store_true", help="let replies contain the unknown token (suppressed by default)")
    group.add_argument(
        "--candidates",
        type=int,
        default=d.num_return_sequences,
        metavar="N",
        help="candidate replies per turn: chat shows them to pick from, eval scores the best (default 1)",
    )
    group.add_argument(
        "--mmi-weight",
        type=float,
        default=d.mmi_weight,
        metavar="LAMBDA",
        help="rerank candidates by MMI-antiLM (Li et al. 2016) with this weight, e.g. 0.5; 0 = off (default)",
    )
    return group


def decoding_from_args(args: argparse.Namespace) -> DecodingConfig:
    """The DecodingConfig of parsed `add_decoding_arguments` flags. Raises ConfigError for bad values
    or conflicting sampler flags."""
    chosen = [
        name for name, given in (("greedy", args.greedy), ("beam", args.beam is not None), ("top_k", args.top_k is not None)) if given
    ]
    if args.sampler:
        chosen = [args.sampler] + [c for c in chosen if c != args.sampler]
    if len(chosen) > 1:
        raise ConfigError(f"conflicting decoding flags: {' and '.join(chosen)}; pick one sampler")
    d = DecodingConfig()
    return DecodingConfig(
        sampler=chosen[0] if chosen else d.sampler,
        temperature=args.temperature,
        top_k=d.top_k if args.top_k is None else args.top_k,
        top_p=args.top_p,
        num_beams=d.num_beams if args.beam is None else args.beam,
        length_penalty=args.length_penalty,
        min_reply_tokens=args.min_reply_tokens,
        max_reply_tokens=args.max_reply_tokens,
        no_repeat_ngram=args.no_repeat_ngram,
        no_context_ngram=args.no_context_ngram,
        no_earlier_reply_ngram=args.no_earlier_reply_ngram,
        allow_unknown=args.allow_unknown,
        num_return_sequences=args.candidates,
        mmi_weight=args.mmi_weight,
    )


def describe(config: DecodingConfig | dict, seed: int | None = None) -> str:
    """One line: ``top-p 0.9 · temperature 0.8 · ≤40 tokens · no-repeat 3-gram · seed 7``.

    Accepts the stored JSON of any version (older turns stored only temperature, top_p, max_reply_tokens).
    """
    values = config.to_dict() if isinstance(config, DecodingConfig) else dict(config)
    sampler = values.get("sampler", "top_p")
    if sampler == "greedy":
        parts = ["greedy"]
    elif sampler == "beam":
        parts = [f"beam {values.get('num_beams')}", f"length penalty {values.get('length_penalty')}"]
    else:
        head = {"sample": "sampling", "top_k": f"top-k {values.get('top_k')}", "top_p": f"top-p {values.get('top_p')}"}[sampler]
        parts = [head, f"temperature {values.get('temperature')}"]
    tokens = f"≤{values.get('max_reply_tokens')} tokens"
    if values.get("min_reply_tokens", 1) > 1:
        tokens = f"{values['min_reply_tokens']}–{values.get('max_reply_tokens')} tokens"
    parts.append(tokens)
    if values.get("no_repeat_ngram"):
        parts.append(f"no-repeat {values['no_repeat_ngram']}-gram")
    if values.get("no_context_ngram"):
        parts.append(f"no-context {values['no_context_ngram']}-gram")
    if values.get("no_earlier_reply_ngram"):
        parts.append(f"no earlier-reply {values['no_earlier_reply_ngram']}-gram")
    if values.get("allow_unknown"):
        parts.append("unknown token allowed")
    if values.get("num_return_sequences", 1) > 1:
        parts.append(f"{values['num_return_sequences']} candidates")
    if values.get("mmi_weight"):
        parts.append(f"MMI λ {values['mmi_weight']}")
    if values.get("stop"):
        parts.append("stop at " + " or ".join(repr(s) for s in values["stop"]))
    if "chosen" in values:
        parts.append(f"picked {values['chosen'] + 1} of {values.get('num_return_sequences')}")
    if seed is not None:
        parts.append(f"seed {seed}")
    return " · ".join(parts)
