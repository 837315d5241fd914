"""Framing: how utterances become model inputs, the same for training and for inference.

An utterance is ``[BOS] tokens [EOS]`` (ids from `chatbot.text.tokenizer`), cut to
`max_utterance_length` tokens; a history is a `(1, num_turns, utterance_length)`
int32 array of framed utterances, 0 = padding, as `encode_context` takes it.
Training (`chatbot.training.data`) frames its dialogue windows with
`frame_utterance`; the dialogue manager and `chatbot eval` frame histories
with `context_array`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


def frame_utterance(token_ids: Sequence[int], max_utterance_length: int) -> list[int]:
    """``[BOS] tokens [EOS]`` cut to `max_utterance_length` tokens.

    A cut utterance keeps no EOS, so the model never learns to stop mid-sentence.
    """
    if len(token_ids) + 2 <= max_utterance_length:
        return [BOS_ID, *token_ids, EOS_ID]
    return [BOS_ID, *token_ids[: max_utterance_length - 1]]


def context_array(utterances: Sequence[Sequence[int]], max_utterance_length: int) -> np.ndarray:
    """Framed, padded token ids of a list of utterances.

    Returns:
        `(1, num_turns, utterance_length)` int32, 0 = padding, ready for `encode_context`.
    """
    framed = [frame_utterance(u, max_utterance_length) for u in utterances]
    array = np.full((1, len(framed), max(len(f) for f in framed)), PAD_ID, dtype=np.int32)
    for turn, ids in enumerate(framed):
        array[0, turn, : len(ids)] = ids
    return array
