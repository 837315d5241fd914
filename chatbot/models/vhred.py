"""VHRED: HRED with a latent variable per reply (Serban et al. 2017).

For the reply after turn t, with context state c_t and the utterance
encoder's vector e_{t+1} of the reply itself:

    prior      p(z | c_t)           = N(mu_p, diag var_p),  from a tanh MLP of c_t
    posterior  q(z | c_t, e_{t+1})  = N(mu_q, diag var_q),  from a tanh MLP of [c_t; e_{t+1}]
    z = mu_q + sqrt(var_q) * eps,  eps ~ N(0, I)             (reparameterisation)
    decoder conditioned on [c_t; z]

Training minimises, per target token (Serban et al. 2017, eq. 5-6),

    reconstruction + beta * KL(q || p) + bow_weight * bag-of-words

with beta annealed linearly from 0 to 1 over `kl_anneal_steps` optimizer steps,
decoder word dropout (inputs replaced by the unknown token), and the
bag-of-words loss of Zhao et al. (2017): the reply's tokens predicted, in no
order, from [c_t; z] alone. The reported perplexity is the ELBO bound,
exp((reconstruction + KL) / tokens): an upper bound on the true perplexity.

At inference z is drawn from the prior, so replies to one context vary.
"""

from __future__ import annotations

import keras
from keras import ops

from chatbot.models.base import existing_targets, probe_context, reply_weights
from chatbot.models.hred import HRED, last_turn
from chatbot.text.tokenizer import BOS_ID, PAD_ID, UNK_ID

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a unit is active when Var_x(E_q[z_u]) exceeds this


def gaussian_kl(mean_q, variance_q, mean_p, variance_p):
    """KL(q || p) between diagonal Gaussians, summed over the latent units.

    Args: each `(batch_size, latent_dim)`; variances > 0.
    Returns: `(batch_size,)` KL in nats. Exactly 0 where q equals p.
    """
    terms = ops.log(variance_p) - ops.log(variance_q) + (variance_q + ops.square(mean_q - mean_p)) / variance_p - 1.0
    return 0.5 * ops.sum(terms, axis=-1)


def weighted_variance(values, weights):
    """Variance over rows of `values` `(N, Z)` with row weights `(N,)` (0 drops a row) → `(Z,)`; the population variance."""
    total = ops.maximum(ops.sum(weights), 1.0)
    mean = ops.sum(values * weights[:, None], axis=0) / total
    return ops.sum(ops.square(values - mean) * weights[:, None], axis=0) / total


def kl_weight(step, anneal_steps: int):
    """β of the KL term after `step` optimizer steps: linear from 0 to 1 over `anneal_steps` (1 when 0)."""
    if anneal_steps <= 0:
        return ops.convert_to_tensor(1.0)
    return ops.minimum(ops.cast(step, "float32") / float(anneal_steps), 1.0)


def word_dropout(token_ids, rate: float, seed=None):
    """Replace each decoder input token by UNK with probability `rate` (Bowman et al. 2016).

    BOS and padding are never replaced. `token_ids` `(batch_size, length)` int32 → same shape.
    """
    if rate <= 0:
        return token_ids
    drop = keras.random.uniform(ops.shape(token_ids), seed=seed) < rate
    drop = ops.logical_and(drop, ops.logical_and(ops.not_equal(token_ids, PAD_ID), ops.not_equal(token_ids, BOS_ID)))
    return ops.where(drop, ops.full_like(token_ids, UNK_ID), token_ids)


@keras.saving.register_keras_serializable(package="chatbot")
class GaussianHead(keras.layers.Layer):
    """A small tanh MLP giving a diagonal Gaussian: `(batch_size, input_dim)` → (mean, variance),
    each `(batch_size, latent_dim)`; variance = softplus(·) + 1e-4 keeps it positive."""

    def __init__(self, latent_dim: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.hidden = keras.layers.Dense(hidden_dim, activation="tanh", name="hidden")
        self.mean = keras.layers.Dense(latent_dim, name="mean")
        self.variance = keras.layers.Dense(latent_dim, activation="softplus", name="variance")

    def call(self, inputs):
        hidden = self.hidden(inputs)
        return self.mean(hidden), self.variance(hidden) + 1e-4

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim}


@keras.saving.register_keras_serializable(package="chatbot")
class VHRED(HRED):
    """Latent variable hierarchical recurrent encoder-decoder.

    Args (beyond HRED's):
        latent_dim: units of z.
        kl_anneal_steps: optimizer steps over which β rises from 0 to 1.
        word_dropout: share of decoder input tokens replaced by UNK while training.
        bow_weight: weight of the bag-of-words loss (0 turns it off).
        seed: seeds the reparameterisation noise and word dropout.
    """

    def __init__(
        self,
        vocabulary_size: int,
        latent_dim: int = 64,
        kl_anneal_steps: int = 2000,
        word_dropout: float = 0.25,
        bow_weight: float = 1.0,
        seed: int = 1234,
        **kwargs,
    ):
        super().__init__(vocabulary_size, **kwargs)
        self.latent_dim = latent_dim
        self.kl_anneal_steps = kl_anneal_steps
        self.word_dropout = word_dropout
        self.bow_weight = bow_weight
        self.seed = seed
        self.prior = GaussianHead(latent_dim, self.context_dim, name="prior")
        self.posterior = GaussianHead(latent_dim, self.context_dim, name="posterior")
        self.bow_projection = keras.layers.Dense(vocabulary_size, name="bow_projection")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")  # nats per target token
        self.kl_tracker = keras.metrics.Mean(name="kl")  # nats per reply
        self.bow_tracker = keras.metrics.Mean(name="bow")  # nats per target token
        self.kl_weight_tracker = keras.metrics.Mean(name="kl_weight")  # β
        self.active_units_tracker = keras.metrics.Mean(name="active_units")  # latent units in use, per batch

    def decoder_inputs(self, inputs, training=False):
        return word_dropout(inputs, self.word_dropout, seed=self.seed_generator) if training else inputs

    def loss_terms(self, tokens, training=False, context_mode="true"):
        context, vectors = self.encode_turns(tokens, training)
        replies, context, target_vectors = existing_targets(context[:, :-1], vectors[:, 1:], replies=tokens[:, 1:])
        weights = reply_weights(replies)  # (N,): 0 for the padding turns kept off TensorFlow
        context = probe_context(
            self.condition(context, training, weights), context_mode
        )  # the reply's own encoding stays (the posterior's input)
        prior_mean, prior_variance = self.prior(context)  # (N, Z) each
        post_mean, post_variance = self.posterior(ops.concatenate([context, target_vectors], axis=-1))
        noise = keras.random.normal(ops.shape(post_mean), dtype=post_mean.dtype, seed=self.seed_generator)
        z = post_mean + ops.sqrt(post_variance) * noise  # (N, Z)
        conditioning = ops.concatenate([context, z], axis=-1)  # (N, C + Z)
        nll, count = self.target_nll(replies, conditioning, training)
        targets = replies[:, 1:]  # (N, L-1)
        # Under mixed precision the heads compute in bfloat16; the KL and the softmax stay float32.
        kl = gaussian_kl(*(ops.cast(t, "float32") for t in (post_mean, post_variance, prior_mean, prior_variance)))  # (N,)
        # Bag of words: every target token scored by one softmax over [c; z].
        bow_log_probs = ops.log_softmax(ops.cast(self.bow_projection(conditioning), "float32"), axis=-1)  # (N, V)
        picked = ops.take_along_axis(bow_log_probs, targets, axis=1)  # (N, L-1)
        bow = -ops.sum(picked * ops.cast(ops.not_equal(targets, PAD_ID), picked.dtype))
        # Active units: variance across replies of the posterior mean, per unit.
        spread = weighted_variance(ops.cast(post_mean, "float32"), weights)  # (Z,)
        return {
            "nll": nll,
            "tokens": count,
            "kl": ops.sum(kl * weights),
            "replies": ops.sum(weights),
            "bow": bow,
            "active_units": ops.sum(ops.cast(spread > ACTIVE_UNIT_THRESHOLD, "float32")),
        }

    def current_kl_weight(self, training: bool):
        if training and self.optimizer is not None:
            return kl_weight(self.training_step(), self.kl_anneal_steps)
        return ops.convert_to_tensor(1.0)

    def objective(self, terms, training):
        beta = self.current_kl_weight(training)
        total = terms["nll"] + beta * terms["kl"] + self.bow_weight * terms["bow"]
        return total / ops.maximum(terms["tokens"], 1.0)

    def bound_nll(self, terms):
        return terms["nll"] + terms["kl"]  # -ELBO: reconstruction + KL (β = 1)

    @property
    def metrics(self):
        return super().metrics + [
            self.reconstruction_tracker,
            self.kl_tracker,
            self.bow_tracker,
            self.kl_weight_tracker,
            self.active_units_tracker,
        ]

    def update_metrics(self, loss, terms, training=False):
        count = ops.maximum(terms["tokens"], 1.0)
        self.reconstruction_tracker.update_state(terms["nll"] / count, sample_weight=terms["tokens"])
        self.kl_tracker.update_state(terms["kl"] / ops.maximum(terms["replies"], 1.0), sample_weight=terms["replies"])
        self.bow_tracker.update_state(terms["bow"] / count, sample_weight=terms["tokens"])
        self.kl_weight_tracker.update_state(self.current_kl_weight(training))
        self.active_units_tracker.update_state(terms["active_units"])
        return super().update_metrics(loss, terms, training)

    # --- inference contract ---------------------------------------------

    def encode_context(self, context_tokens, latent_noise=None):
        """Encode a dialogue history and draw z from the prior.

        Args:
            context_tokens: `(batch_size, num_turns, utterance_length)` int32, 0 = padding.
            latent_noise: `(batch_size, latent_dim)` standard-normal draws; None draws fresh ones.
        Returns:
            state: `(conditioning, *decoder_states)`, conditioning `(batch_size, context_dim + latent_dim)` = [c; z].
        """
        context = self.condition(last_turn(self.encode_turns(context_tokens)[0], context_tokens))  # (B, C)
        mean, variance = self.prior(context)
        if latent_noise is None:
            latent_noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        z = mean + ops.sqrt(variance) * ops.cast(latent_noise, mean.dtype)
        conditioning = ops.concatenate([context, z], axis=-1)
        return (conditioning, *self.decoder.initial_state(conditioning))

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "kl_anneal_steps": self.kl_anneal_steps,
            "word_dropout": self.word_dropout,
            "bow_weight": self.bow_weight,
            "seed": self.seed,
        }
