"""Count baselines over SentencePiece ids: the Kneser-Ney n-gram and the add-one unigram.

The interpolated Kneser-Ney n-gram is counted and smoothed by `nltk.lm`; the
add-one unigram (`AddOneUnigram`) is the plateau a model that ignores the
previous tokens sits on.

The HRED paper (Serban et al. 2016, table 2) reports a 3-gram Kneser-Ney model
of the replies next to its neural models; this is that baseline, scored under
the same conventions as our decoders so the perplexities are comparable:

* a reply is its piece ids without BOS/EOS; the model predicts every piece and
  then EOS, each conditioned on the previous `order - 1` ids, with the reply
  left-padded by BOS (as the decoder predicts ``pieces + [EOS]`` after a BOS
  input). A reply of k pieces gives k + 1 predicted tokens; BOS is never predicted.
* perplexity is ``exp(total nll / predicted tokens)``, nll in nats.

Counting, the vocabulary and the Kneser-Ney recursion are nltk's
(`NgramCounter`, `Vocabulary`, `InterpolatedLanguageModel` + `KneserNey`).
Two things differ from `nltk.lm.KneserNeyInterpolated`:

1. Speed. nltk's `KneserNey` rescans every higher-order context on each call
   to count continuations (about 5 tokens/s on 2.6 M training tokens). Here the
   same counts, N1+(• ctx w), N1+(• ctx •), N1+(ctx •), are tabled once after
   counting; probabilities equal nltk's own `score` exactly (tests/test_ngram.py).
2. No zero probabilities. nltk's unigram level is the bare continuation
   distribution N1+(• w) / N1+(• •), which is 0 for any id never seen after
   another token. As in Chen & Goodman (1998, sec. 3, "the 0th-order
   distribution is the uniform distribution"), the unigram level is also
   discounted and interpolated with a uniform distribution over the vocabulary:

       p(w) = max(N1+(• w) - D, 0) / N1+(• •) + D * N1+(•) / N1+(• •) / |V|

   Vocabulary (|V|): with ``vocabulary_size`` given, the closed set of ids
   ``0 .. vocabulary_size - 1`` (the neural softmax's support; ids outside it
   raise ValueError). Without it, the ids seen in training (BOS and EOS
   included) plus nltk's ``<UNK>``, to which every unseen id is mapped (one
   open-vocabulary event, so pass ``vocabulary_size`` for numbers that are
   compared with a softmax over all ids).

Sources: Kneser & Ney (1995), "Improved backing-off for M-gram language
modeling"; Chen & Goodman (1998), "An empirical study of smoothing techniques
for language modeling", TR-10-98, interpolated Kneser-Ney; Serban et al. (2016),
"Building end-to-end dialogue systems using generative hierarchical neural
network models".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

from nltk.lm import NgramCounter, Vocabulary
from nltk.lm.models import InterpolatedLanguageModel
from nltk.lm.smoothing import KneserNey

from chatbot.text.tokenizer import BOS_ID, EOS_ID

_BOS, _EOS = str(BOS_ID), str(EOS_ID)


class _TabledKneserNey(KneserNey):
    """nltk's `KneserNey` smoothing with its per-call count scans read from tables.

    Same arithmetic as the parent on the same integers, so scores are identical.
    Call `build_tables` after the counter is filled (and again if it changes).
    """

    def build_tables(self) -> None:
        self._n_plus: dict[tuple[str, ...], int] = {}  # N1+(ctx •): distinct words after ctx
        self._continuations: Counter[tuple[str, ...]] = Counter()  # (*ctx, w) -> N1+(• ctx w)
        self._continuation_totals: Counter[tuple[str, ...]] = Counter()  # ctx -> N1+(• ctx •)
        for n in range(2, self._order + 1):
            for prefix, words in self.counts[n].items():
                lower = prefix[1:]
                seen = [word for word, count in words.items() if count > 0]
                self._n_plus[prefix] = len(seen)
                self._continuation_totals[lower] += len(seen)
                for word in seen:
                    self._continuations[lower + (word,)] += 1

    def _continuation_counts(self, word: str, context: tuple[str, ...] = ()) -> tuple[int, int]:
        return self._continuations[context + (word,)], self._continuation_totals[context]

    def alpha_gamma(self, word: str, context: tuple[str, ...]) -> tuple[float, float]:
        if len(context) + 1 == self._order:
            prefix_counts = self.counts[context]
            word_continuation_count, total_count = prefix_counts[word], prefix_counts.N()
        else:
            word_continuation_count, total_count = self._continuation_counts(word, context)
        alpha = max(word_continuation_count - self.discount, 0.0) / total_count
        gamma = self.discount * self._n_plus[context] / total_count
        return alpha, gamma


class _UniformFloorKneserNey(_TabledKneserNey):
    """`_TabledKneserNey` whose unigram level is interpolated with 1/|V| (Chen & Goodman 1998)."""

    def __init__(self, vocabulary: Vocabulary, counter: NgramCounter, order: int, discount: float, vocabulary_size: int, **kwargs) -> None:
        super().__init__(vocabulary, counter, order, discount, **kwargs)
        self.vocabulary_size = vocabulary_size

    def build_tables(self) -> None:
        super().build_tables()
        total = self._continuation_totals[()]
        word_types = sum(1 for key in self._continuations if len(key) == 1)
        self._unigram_floor = self.discount * word_types / total / self.vocabulary_size

    def unigram_score(self, word: str) -> float:
        word_continuation_count, total_count = self._continuation_counts(word)
        return max(word_continuation_count - self.discount, 0.0) / total_count + self._unigram_floor


class _InterpolatedKneserNey(InterpolatedLanguageModel):
    """nltk's interpolated model around a tabled Kneser-Ney smoothing (`smoothing_cls`)."""

    def __init__(
        self,
        smoothing_cls: type[_TabledKneserNey],
        order: int,
        discount: float,
        vocabulary: Vocabulary,
        counter: NgramCounter,
        **params: object,
    ) -> None:
        super().__init__(
            smoothing_cls, order, vocabulary=vocabulary, counter=counter, params={"order": order, "discount": discount, **params}
        )


def _ngrams(tokens: list[str], order: int) -> Iterator[tuple[str, ...]]:
    """Every n-gram, n = 1..order, that ends on a predicted token of a BOS-padded reply."""
    for i in range(order - 1, len(tokens)):
        for n in range(1, order + 1):
            yield tuple(tokens[i - n + 1 : i + 1])


class _ReplyModel:
    """What the count baselines share: perplexity from their `nll`."""

    def nll(self, replies: list[list[int]], ended: Sequence[bool] | None = None) -> tuple[float, int]:
        raise NotImplementedError

    def perplexity(self, replies: list[list[int]]) -> float:
        """``exp(total nll / predicted tokens)`` over `replies`, per predicted token."""
        total, tokens = self.nll(replies)
        if tokens == 0:
            raise ValueError("no replies to score")
        return math.exp(total / tokens)


class KneserNeyBaseline(_ReplyModel):
    """Interpolated Kneser-Ney n-gram LM over token ids (Kneser & Ney 1995; Chen & Goodman 1998), via nltk.lm.

    Args:
        order: n of the n-gram (>= 2); contexts are the previous ``order - 1`` ids.
        discount: absolute discount D in (0, 1], the same at every order (0.75 is
            the usual single value, close to Chen & Goodman's estimate n1 / (n1 + 2 n2)).
        vocabulary_size: if given, the vocabulary is the closed id set
            ``0 .. vocabulary_size - 1``; otherwise training ids plus one ``<UNK>``.
    """

    def __init__(self, order: int = 3, discount: float = 0.75, vocabulary_size: int | None = None) -> None:
        if order < 2:
            raise ValueError(f"order must be at least 2, got {order}")
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        if vocabulary_size is not None and vocabulary_size <= max(BOS_ID, EOS_ID):
            raise ValueError(f"vocabulary_size must exceed the reserved ids, got {vocabulary_size}")
        self.order = order
        self.discount = discount
        self.vocabulary_size = vocabulary_size
        self._model: _InterpolatedKneserNey | None = None

    def _padded(self, reply: Sequence[int], ended: bool = True) -> list[str]:
        return [_BOS] * (self.order - 1) + [str(i) for i in reply] + ([_EOS] if ended else [])

    def fit(self, replies: list[list[int]], ended: Sequence[bool] | None = None) -> KneserNeyBaseline:
        """Count the n-grams of `replies` (piece ids, no BOS/EOS) and table the smoothing. Returns self.

        `ended[i]` False marks a reply cut at a length limit: no EOS follows it (default: all True).
        """
        ended = [True] * len(replies) if ended is None else ended
        padded = [self._padded(reply, end) for reply, end in zip(replies, ended, strict=True)]
        if self.vocabulary_size is None:
            vocabulary = Vocabulary(token for tokens in padded for token in tokens)  # BOS too: it is context
        else:
            vocabulary = Vocabulary(str(i) for i in range(self.vocabulary_size))
        counter = NgramCounter(_ngrams(tokens, self.order) for tokens in padded)
        if not counter.unigrams:
            raise ValueError("cannot fit on no replies")
        model = _InterpolatedKneserNey(
            _UniformFloorKneserNey, self.order, self.discount, vocabulary, counter, vocabulary_size=self.vocabulary_size or len(vocabulary)
        )
        model.estimator.build_tables()
        self._model = model
        return self

    def nll(self, replies: list[list[int]], ended: Sequence[bool] | None = None) -> tuple[float, int]:
        """Total negative log-likelihood in nats, and the number of predicted tokens (pieces + one EOS per reply).

        `ended[i]` False: reply i was cut at a length limit, so no EOS is predicted after it
        (as the neural decoders are trained; default: all True).
        """
        if self._model is None:
            raise RuntimeError("fit the model before scoring")
        model, vocabulary = self._model, self._model.vocab
        ended = [True] * len(replies) if ended is None else ended
        total, tokens = 0.0, 0
        for reply, end in zip(replies, ended, strict=True):
            if self.vocabulary_size is not None:
                for i in reply:
                    if not 0 <= i < self.vocabulary_size:
                        raise ValueError(f"token id {i} is outside the vocabulary 0..{self.vocabulary_size - 1}")
            padded = [token if token in vocabulary else vocabulary.unk_label for token in self._padded(reply, end)]
            for i in range(self.order - 1, len(padded)):
                total -= math.log(model.unmasked_score(padded[i], tuple(padded[i - self.order + 1 : i])))
                tokens += 1
        return total, tokens


class AddOneUnigram(_ReplyModel):
    """Add-one (Laplace) unigram model of reply tokens: the floor every neural model must pass.

    p(w) = (count(w) + 1) / (N + |V|) over the closed vocabulary ``0 .. vocabulary_size - 1``,
    counting every predicted token (pieces and EOS) of the training replies. Same
    conventions and methods as `KneserNeyBaseline`; its perplexity is what a model
    that ignores both the context and the previous tokens can reach.
    """

    def __init__(self, vocabulary_size: int) -> None:
        if vocabulary_size <= max(BOS_ID, EOS_ID):
            raise ValueError(f"vocabulary_size must exceed the reserved ids, got {vocabulary_size}")
        self.vocabulary_size = vocabulary_size
        self._counts: Counter[int] | None = None
        self._total = 0

    @staticmethod
    def _targets(reply: Sequence[int], ended: bool) -> list[int]:
        return list(reply) + ([EOS_ID] if ended else [])

    def fit(self, replies: list[list[int]], ended: Sequence[bool] | None = None) -> AddOneUnigram:
        ended = [True] * len(replies) if ended is None else ended
        self._counts = Counter(t for reply, end in zip(replies, ended, strict=True) for t in self._targets(reply, end))
        self._total = sum(self._counts.values())
        return self

    def nll(self, replies: list[list[int]], ended: Sequence[bool] | None = None) -> tuple[float, int]:
        """Total negative log-likelihood in nats and the number of predicted tokens (as `KneserNeyBaseline.nll`)."""
        if self._counts is None:
            raise RuntimeError("fit the model before scoring")
        ended = [True] * len(replies) if ended is None else ended
        denominator = self._total + self.vocabulary_size
        total, tokens = 0.0, 0
        for reply, end in zip(replies, ended, strict=True):
            for token in self._targets(reply, end):
                total -= math.log((self._counts[token] + 1) / denominator)
                tokens += 1
        return total, tokens
