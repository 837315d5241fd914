"""Reply generation against the model contract `encode_context` / `decode_step`.

The loop is written once (`generate`); a sampler only decides how the next
token is picked from the logits. Sampling runs in NumPy on float64
probabilities with a seeded generator, so a seed reproduces a reply exactly.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from chatbot.errors import ConfigError
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    """How replies are sampled. Stored as JSON with every bot turn.

    The defaults (temperature 0.8, top-p 0.9) trade a little of the model's
    diversity for fewer incoherent tokens: nucleus sampling (Holtzman et al.
    2019) cuts the unreliable tail that makes plain sampling ramble, while
    sampling at all avoids the bland, repeated replies of greedy decoding.
    """

    temperature: float = 0.8  # divides the logits; < 1 sharpens, > 1 flattens
    top_p: float = 0.9  # sample only from the smallest set of tokens holding this much probability
    max_reply_tokens: int = 40  # reply length cap, in tokens

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.max_reply_tokens < 1:
            raise ConfigError(f"max reply tokens must be at least 1, got {self.max_reply_tokens}")

    def to_dict(self) -> dict:
        return {"sampler": "top_p", **dataclasses.asdict(self)}


def top_p_filter(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    """Zero every token outside the nucleus and renormalise (Holtzman et al. 2019, eq. 3).

    Args:
        probabilities: `(vocabulary_size,)` float64, summing to 1.
    Returns:
        `(vocabulary_size,)` float64: the smallest set of most probable tokens whose
        mass reaches `top_p` keeps its probabilities, rescaled to sum to 1.
    """
    order = np.argsort(-probabilities, kind="stable")
    cumulative = np.cumsum(probabilities[order])
    keep = int(np.searchsorted(cumulative, top_p)) + 1  # tokens up to and including the one crossing top_p
    filtered = np.zeros_like(probabilities)
    filtered[order[:keep]] = probabilities[order[:keep]]
    return filtered / filtered.sum()


def sample_token(logits: np.ndarray, config: DecodingConfig, rng: np.random.Generator, allow_end: bool) -> int:
    """Pick the next token id from `(vocabulary_size,)` logits."""
    logits = np.asarray(logits, dtype=np.float64) / config.temperature
    logits[[PAD_ID, BOS_ID, UNK_ID]] = -np.inf  # never emit padding, a second start or an unknown piece
    if not allow_end:
        logits[EOS_ID] = -np.inf
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    probabilities = top_p_filter(probabilities, config.top_p)
    return int(rng.choice(len(probabilities), p=probabilities))


class Generator:
    """Generates replies from one model, with its per-token step compiled as a graph.

    Args:
        model: exposes `encode_context(context_tokens) -> state` and
            `decode_step(token_ids, state) -> (logits, state)`; a model with
            `latent_dim > 0` (VHRED) takes `encode_context(context_tokens, latent_noise)`,
            and the noise is drawn from the reply's seed.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.latent_dim = int(getattr(model, "latent_dim", 0))
        signature = [tf.TensorSpec((None, None, None), tf.int32)]
        if self.latent_dim:
            signature.append(tf.TensorSpec((None, self.latent_dim), tf.float32))
        self._encode = tf.function(model.encode_context, input_signature=signature, reduce_retracing=True)
        self._step = tf.function(model.decode_step, reduce_retracing=True)

    def generate(self, context_tokens: np.ndarray, config: DecodingConfig, seed: int) -> list[int]:
        """Sample one reply.

        Args:
            context_tokens: `(1, num_turns, utterance_length)` int32 framed history, 0 = padding.
            seed: the reply is a pure function of (model, context, config, seed).
        Returns:
            The reply's token ids, without start and end markers.
        """
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        inputs = [tf.constant(context_tokens, tf.int32)]
        if self.latent_dim:  # a latent model's z comes from the prior with seeded noise
            inputs.append(tf.constant(rng.standard_normal((len(context_tokens), self.latent_dim)), tf.float32))
        state = self._encode(*inputs)
        token = tf.constant([BOS_ID], tf.int32)
        reply: list[int] = []
        for _ in range(config.max_reply_tokens):
            logits, state = self._step(token, state)
            next_id = sample_token(logits.numpy()[0], config, rng, allow_end=bool(reply))
            if next_id == EOS_ID:
                break
            reply.append(next_id)
            token = tf.constant([next_id], tf.int32)
        return reply


def describe(config: DecodingConfig | dict, seed: int | None = None) -> str:
    """One line: ``top-p 0.9, temperature 0.8, ≤40 tokens, seed 7``."""
    values = dataclasses.asdict(config) if isinstance(config, DecodingConfig) else config
    text = f"top-p {values.get('top_p')}, temperature {values.get('temperature')}, ≤{values.get('max_reply_tokens')} tokens"
    return text if seed is None else f"{text}, seed {seed}"
