"""From dialogues to padded batches of dialogue windows.

A window is up to `max_turns` consecutive turns of one dialogue. Windows of a
dialogue overlap by one turn, so every turn after a dialogue's first is a
target exactly once, with at least one turn of context before it.

Batches are bucketed by the longest utterance in a window and padded per
batch, which keeps padding (wasted arithmetic) low.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from chatbot.corpus import Dialogue
from chatbot.inference.framing import frame_utterance
from chatbot.text.tokenizer import PAD_ID, Tokenizer


def dialogue_windows(
    dialogues: Sequence[Dialogue], tokenizer: Tokenizer, max_turns: int, max_utterance_length: int
) -> list[list[list[int]]]:
    """Every dialogue cut into windows of framed utterances (stride `max_turns - 1`)."""
    windows = []
    for dialogue in dialogues:
        ids = tokenizer.encode_batch([turn.text for turn in dialogue.turns])
        framed = [frame_utterance(u, max_utterance_length) for u in ids]
        for start in range(0, len(framed) - 1, max_turns - 1):
            window = framed[start : start + max_turns]
            if len(window) >= 2:
                windows.append(window)
    return windows


def target_tokens(window: list[list[int]]) -> int:
    """Number of predicted tokens in a window: every token after BOS of every turn but the first."""
    return sum(len(u) - 1 for u in window[1:])


class TokenWindows:
    """The dialogue windows of one split over the token arrays of one or more corpora.

    The same windows as `dialogue_windows` (stride `max_turns - 1`, framed with
    `frame_utterance`), computed with array arithmetic over `TokenizedCorpus` offsets,
    so a million dialogues cost a few arrays, not a million Python lists.

    Args:
        parts: the corpora of a mixture (one for a single corpus).
        split: ``train``, ``valid`` or ``test``; None: every dialogue.
        weights: per part, how many times an epoch sees its windows (2: twice; 0.5: a
            fresh random half every epoch); None: each window once.

    Attributes (``W`` windows):
        part, first, count: `(W,)` the corpus, first utterance index and number of turns of each window.
        longest: `(W,)` framed length of each window's longest utterance, in tokens.
        targets: `(W,)` predicted tokens per window (`target_tokens`).
    """

    def __init__(self, parts, split: str | None, max_turns: int, max_utterance_length: int, weights: Sequence[float] | None = None):
        self.parts = list(parts)
        self.split = split
        self.max_utterance_length = max_utterance_length
        self.weights = list(weights) if weights is not None else [1.0] * len(self.parts)
        if len(self.weights) != len(self.parts) or any(w < 0 for w in self.weights):
            raise ValueError(f"need one non-negative weight per corpus, got {self.weights} for {len(self.parts)} corpora")
        self.part = self.first = self.count = self.longest = self.targets = np.zeros(0, np.int64)
        columns: dict[str, list[np.ndarray]] = {"part": [], "first": [], "count": [], "longest": [], "targets": []}
        for index, corpus in enumerate(self.parts):
            for name, column in self._windows(corpus, split, max_turns, max_utterance_length).items():
                columns[name].append(column)
            columns["part"].append(np.full(len(columns["first"][-1]), index, np.int32))
        for name, pieces in columns.items():
            if pieces:
                setattr(self, name, np.concatenate(pieces))

    @staticmethod
    def _windows(corpus, split: str | None, max_turns: int, length: int) -> dict[str, np.ndarray]:
        offsets = np.asarray(corpus.dialogues)
        dialogues = np.flatnonzero(corpus.split_mask(split))
        turns = offsets[dialogues + 1] - offsets[dialogues]
        dialogues, turns = dialogues[turns >= 2], turns[turns >= 2]
        per_dialogue = -(-(turns - 1) // (max_turns - 1))  # ceil: starts 0, stride, ... below turns - 1
        owner = np.repeat(dialogues, per_dialogue)
        step = np.arange(len(owner)) - np.repeat(np.cumsum(per_dialogue) - per_dialogue, per_dialogue)
        first = offsets[owner] + step * (max_turns - 1)
        count = np.minimum(max_turns, offsets[owner + 1] - first)
        framed = np.minimum(np.diff(np.asarray(corpus.utterances)) + 2, length)  # (N_utt,) framed lengths
        bounds = np.empty(2 * len(first), np.int64)
        bounds[0::2], bounds[1::2] = first, first + count
        longest = np.maximum.reduceat(np.append(framed, 0), bounds)[0::2] if len(first) else np.zeros(0, np.int64)
        predicted = np.concatenate([[0], np.cumsum(framed - 1)])
        return {"first": first, "count": count, "longest": longest, "targets": predicted[first + count] - predicted[first + 1]}

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, index: int) -> list[list[int]]:
        corpus = self.parts[self.part[index]]
        first = int(self.first[index])
        bounds = corpus.utterances[first : first + int(self.count[index]) + 1]
        return [frame_utterance(corpus.tokens[a:b].tolist(), self.max_utterance_length) for a, b in itertools.pairwise(bounds)]

    @property
    def weighted(self) -> bool:
        return any(w != 1 for w in self.weights)

    @property
    def epoch_size(self) -> int:
        """Windows per epoch under the weights."""
        sizes = np.bincount(self.part, minlength=len(self.parts))
        return sum(math.floor(w) * int(n) + round((w % 1) * int(n)) for w, n in zip(self.weights, sizes, strict=True))

    def epoch_selection(self, rng: np.random.Generator) -> np.ndarray:
        """Window indices of one epoch: each part's windows `floor(weight)` times, plus a random
        `weight % 1` share of them. `(epoch_size,)` int64."""
        chosen = []
        for index, weight in enumerate(self.weights):
            members = np.flatnonzero(self.part == index)
            chosen.extend([members] * math.floor(weight))
            chosen.append(rng.choice(members, round((weight % 1) * len(members)), replace=False))
        return np.concatenate(chosen).astype(np.int64)


class WindowBatches:
    """Bucketed, per-batch padded batches of windows, reshuffled every epoch with a fixed seed.

    Args:
        windows: from `dialogue_windows` (lists), or a `TokenWindows` (token arrays on disk).
        batch_size: windows per batch.
        shuffle: reshuffle batch membership and order every epoch (training).
        seed: makes the order identical on every run.
        bucket_width: windows whose longest utterance falls into the same
            multiple of this many tokens share a bucket.
    """

    def __init__(self, windows, batch_size: int, shuffle: bool = True, seed: int = 0, bucket_width: int = 8):
        if not len(windows):
            raise ValueError("no dialogue windows: the split has no dialogue with two or more turns")
        self.windows = windows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_width = bucket_width
        self._epoch = 0  # the epoch the next `dataset()` pass without `epoch_of` serves (only such a pass advances it)
        if isinstance(windows, TokenWindows):
            longest, self.num_target_tokens = windows.longest, int(windows.targets.sum())
        else:
            longest = np.fromiter((max(len(u) for u in w) for w in windows), np.int64, len(windows))
            self.num_target_tokens = sum(target_tokens(w) for w in windows)
        self.keys = np.ceil(longest / bucket_width).astype(np.int64)
        self.buckets: dict[int, np.ndarray] = {int(key): np.flatnonzero(self.keys == key) for key in np.unique(self.keys)}
        self.weighted = isinstance(windows, TokenWindows) and windows.weighted
        if self.weighted:
            self.num_batches = math.ceil(windows.epoch_size / batch_size)
        else:
            self.num_batches = sum(math.ceil(len(b) / batch_size) for b in self.buckets.values())

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Window indices of every batch of epoch `epoch` (0-based), in training order."""
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[np.ndarray] = []
        if self.weighted:
            # A weighted mixture draws a new selection every epoch; sorted by bucket and cut into
            # equal batches (a batch may straddle two buckets) so every epoch has num_batches.
            selected = self.windows.epoch_selection(rng)
            if self.shuffle:
                rng.shuffle(selected)
            selected = selected[np.argsort(self.keys[selected], kind="stable")]
            batches.extend(selected[i : i + self.batch_size] for i in range(0, len(selected), self.batch_size))
        else:
            for key in sorted(self.buckets):
                members = self.buckets[key].copy()
                if self.shuffle:
                    rng.shuffle(members)
                batches.extend(members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size))
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def batches(self, epoch: int, first: int = 0):
        """The padded batches of epoch `epoch` (0-based), in training order, from its batch `first`
        (0-based; a resumed run skips those it trained before it was cut): a generator of
        `(batch_size, num_turns, utterance_length)` int32 arrays. Reading them changes nothing."""
        for indices in self.epoch_batches(epoch)[first:]:
            yield self.batch(indices)

    def batch(self, indices, shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """The windows `indices`, padded (see `pad`)."""
        return self.pad([self.windows[i] for i in indices], shape)

    def static_batch(self, indices: np.ndarray, num_turns: int) -> np.ndarray:
        """The windows `indices` padded to `(batch_size, num_turns, L)` int32, L = the batch's bucket
        times `bucket_width`: one of a few fixed shapes (JAX compiles a step per shape). Missing
        rows are all padding, which the models count for nothing."""
        length = int(self.keys[indices].max()) * self.bucket_width
        return self.batch(indices, (self.batch_size, num_turns, length))

    def py_dataset(self, num_turns: int, epoch_of=None, first: int = 0):
        """The same batches, in the same order, as a `keras.utils.PyDataset` of `static_batch`es:
        the backend-neutral feed (JAX, or TensorFlow without tf.data). `epoch_of()`: the epoch
        whose order to serve (e.g. `fit`'s, so a resumed run continues the shuffle); None: the
        epochs in turn, from this object's count. `first`: each epoch served starts at its batch
        `first` (0-based), as in `batches` (for a one-epoch `fit` that finishes a cut epoch)."""
        import keras

        batches = self

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.epoch = epoch_of() if epoch_of else batches._epoch
                self.order = batches.epoch_batches(self.epoch)

            def __len__(self):
                return batches.num_batches - first

            def __getitem__(self, index):
                if epoch_of is not None and epoch_of() != self.epoch:
                    self.epoch = epoch_of()
                    self.order = batches.epoch_batches(self.epoch)
                return batches.static_batch(self.order[first + index], num_turns)

            def on_epoch_end(self):
                if epoch_of is None:
                    self.epoch += 1
                    self.order = batches.epoch_batches(self.epoch)

        return Batches()

    @staticmethod
    def pad(windows, shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """`(batch_size, num_turns, utterance_length)` int32, 0 = padding; each dimension the
        windows' own largest unless `shape` sets them all."""
        if shape is None:
            shape = (len(windows), max(len(w) for w in windows), max(len(u) for w in windows for u in w))
        array = np.full(shape, PAD_ID, dtype=np.int32)
        for b, window in enumerate(windows):
            for t, utterance in enumerate(window):
                array[b, t, : len(utterance)] = utterance
        return array

    def dataset(self, epoch_of=None, first: int = 0):
        """A `tf.data.Dataset` of `(batch_size, num_turns, utterance_length)` int32 batches, prefetched.

        `epoch_of()`: the epoch whose order each pass serves (`fit`'s, so that a resumed run
        continues the shuffle where it stopped); None: each pass the next epoch. `first`: each
        pass starts at the epoch's batch `first` (0-based), as in `batches`."""
        import tensorflow as tf  # here, so chat start-up (which frames contexts) does not import it

        def one_pass():
            if epoch_of is not None:
                epoch = epoch_of()
            else:
                epoch, self._epoch = self._epoch, self._epoch + 1
            yield from self.batches(epoch, first)

        spec = tf.TensorSpec(shape=(None, None, None), dtype=tf.int32)
        dataset = tf.data.Dataset.from_generator(one_pass, output_signature=spec)
        return dataset.apply(tf.data.experimental.assert_cardinality(self.num_batches - first)).prefetch(tf.data.AUTOTUNE)

    def padding_share(self, length_groups: int = 1) -> float:
        """Share of the token slots an RNN computes over one epoch that are padding (0-1): the
        epoch the next `dataset()` pass serves, which measuring does not advance.

        Slots are every `(turn, position)` of the padded batches, as the utterance
        encoder sees them; with `length_groups` > 1, the utterances of a batch are
        sorted by length and cut into that many near-equal chunks, each padded only to
        its own longest (an approximation of the models' chunking: the decoder's own
        chunks over the replies are not counted separately).
        """
        slots = real = 0
        for batch in self.batches(self._epoch):
            lengths = np.sort(np.count_nonzero(batch, axis=-1).ravel())  # (B*T,)
            real += int(lengths.sum())
            for chunk in np.array_split(lengths, max(length_groups, 1)):
                slots += len(chunk) * (int(chunk.max(initial=0)) if length_groups > 1 else batch.shape[-1])
        return 1.0 - real / max(slots, 1)


def dialogue_batches(
    dialogues: Sequence[Dialogue],
    tokenizer: Tokenizer,
    *,
    batch_size: int = 32,
    max_turns: int = 8,
    max_utterance_length: int = 48,
    shuffle: bool = True,
    seed: int = 0,
):
    """Batches for `model.fit` (TensorFlow backend): the dialogues cut into windows of up to `max_turns` framed
    utterances, bucketed by length and padded per batch, as `chatbot train` feeds its models (teacher forcing:
    the model's `compute_loss` scores every turn after a window's first).

    Args:
        dialogues: `chatbot.corpus.Dialogue`s, e.g. from `chatbot.corpus.load(spec, split="train")`.
        tokenizer: the model's tokenizer (`chatbot.load().tokenizer`).
        max_turns, max_utterance_length: the model's window (its `ModelConfig` fields of these names).
        shuffle, seed: batch order, fixed by the seed; each pass over the dataset is the next epoch's order (so
            give `fit` `shuffle=False`: a `tf.data.Dataset` is not shuffled by Keras).
    Returns:
        A `tf.data.Dataset` of `(batch_size, num_turns, utterance_length)` int32 batches.
    Raises:
        CorpusError: no dialogue has two turns (nothing to learn from).
    """
    from chatbot.errors import CorpusError

    windows = dialogue_windows(list(dialogues), tokenizer, max_turns, max_utterance_length)
    if not windows:
        raise CorpusError("no dialogue with two or more turns: nothing to train on")
    return WindowBatches(windows, batch_size, shuffle=shuffle, seed=seed).dataset()
