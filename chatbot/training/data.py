"""From dialogues to padded batches of dialogue windows.

A window is up to `max_turns` consecutive turns of one dialogue. Windows of a
dialogue overlap by one turn, so every turn after a dialogue's first is a
target exactly once, with at least one turn of context before it.

Batches are bucketed by the longest utterance in a window and padded per
batch, which keeps padding (wasted arithmetic) low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from chatbot.corpus import Dialogue
from chatbot.framing import frame_utterance
from chatbot.tokenizer import PAD_ID, Tokenizer


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


class WindowBatches:
    """Bucketed, per-batch padded batches of windows, reshuffled every epoch with a fixed seed.

    Args:
        windows: from `dialogue_windows`.
        batch_size: windows per batch.
        shuffle: reshuffle batch membership and order every epoch (training).
        seed: makes the order identical on every run.
        bucket_width: windows whose longest utterance falls into the same
            multiple of this many tokens share a bucket.
    """

    def __init__(self, windows, batch_size: int, shuffle: bool = True, seed: int = 0, bucket_width: int = 8):
        if not windows:
            raise ValueError("no dialogue windows: the split has no dialogue with two or more turns")
        self.windows = windows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._epoch = 0
        self.buckets: dict[int, list[int]] = {}
        for index, window in enumerate(windows):
            longest = max(len(u) for u in window)
            self.buckets.setdefault(math.ceil(longest / bucket_width), []).append(index)
        self.num_batches = sum(math.ceil(len(b) / batch_size) for b in self.buckets.values())
        self.num_target_tokens = sum(target_tokens(w) for w in windows)

    def _batches(self):
        rng = np.random.default_rng([self.seed, self._epoch])
        self._epoch += 1
        batches: list[np.ndarray] = []
        for key in sorted(self.buckets):
            members = np.array(self.buckets[key])
            if self.shuffle:
                rng.shuffle(members)
            batches.extend(members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size))
        if self.shuffle:
            rng.shuffle(batches)
        for batch in batches:
            yield self.pad([self.windows[i] for i in batch])

    @staticmethod
    def pad(windows) -> np.ndarray:
        """`(batch_size, num_turns, utterance_length)` int32, 0 = padding."""
        num_turns = max(len(w) for w in windows)
        length = max(len(u) for w in windows for u in w)
        array = np.full((len(windows), num_turns, length), PAD_ID, dtype=np.int32)
        for b, window in enumerate(windows):
            for t, utterance in enumerate(window):
                array[b, t, : len(utterance)] = utterance
        return array

    def dataset(self):
        """A `tf.data.Dataset` of `(batch_size, num_turns, utterance_length)` int32 batches, prefetched."""
        import tensorflow as tf  # here, so chat start-up (which frames contexts) does not import it

        spec = tf.TensorSpec(shape=(None, None, None), dtype=tf.int32)
        dataset = tf.data.Dataset.from_generator(self._batches, output_signature=spec)
        return dataset.apply(tf.data.experimental.assert_cardinality(self.num_batches)).prefetch(tf.data.AUTOTUNE)

    def padding_share(self, length_groups: int = 1) -> float:
        """Share of the token slots an RNN computes over one epoch that are padding (0-1).

        Slots are every `(turn, position)` of the padded batches, as the utterance
        encoder sees them; with `length_groups` > 1, the utterances of a batch are
        sorted by length and cut into that many near-equal chunks, each padded only to
        its own longest (an approximation of the models' chunking: the decoder's own
        chunks over the replies are not counted separately).
        """
        slots = real = 0
        for batch in self._batches():
            lengths = np.sort(np.count_nonzero(batch, axis=-1).ravel())  # (B*T,)
            real += int(lengths.sum())
            for chunk in np.array_split(lengths, max(length_groups, 1)):
                slots += len(chunk) * (int(chunk.max(initial=0)) if length_groups > 1 else batch.shape[-1])
        self._epoch -= 1  # measuring must not shift the training order
        return 1.0 - real / max(slots, 1)
