"""SentencePiece subword tokenizer with the reserved ids the models rely on."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from chatbot.errors import CheckpointError, ConfigError

PAD_ID = 0  # padding: masked out of every RNN and every loss
UNK_ID = 1  # unknown piece (rare with byte fallback)
BOS_ID = 2  # start of utterance: the decoder's first input
EOS_ID = 3  # end of utterance: the decoder's last target; generation stops on it

FILENAME = "tokenizer.model"
# Utterances SentencePiece samples to train on: plenty for 8,000 pieces, and it keeps a million-dialogue
# corpus's first training run at 1.6 GB resident (with 2 M it peaked at 4.4 GB; benchmarks/corpus_scale.py).
TRAINING_SENTENCES = 500_000


class Tokenizer:
    """Text ↔ token ids through a SentencePiece model (Kudo & Richardson 2018).

    Ids 0-3 are reserved: padding, unknown, start and end of utterance. Byte
    fallback keeps characters unseen in training (emoji, rare CJK) encodable.
    """

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._processor = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], vocabulary_size: int = 8000) -> Tokenizer:
        """Train on an iterable of utterance texts.

        `vocabulary_size` is an upper bound: a small corpus gets fewer pieces.
        `character_coverage` 0.9995 is SentencePiece's setting for CJK scripts.

        Raises:
            ConfigError: `vocabulary_size` is below what the corpus's characters need.
        """
        buffer = io.BytesIO()
        # SentencePiece turns an exception of the iterator (a malformed corpus record) into a
        # RuntimeError with a native trace; stop the iteration instead and raise it as it was.
        failure: list[Exception] = []

        def guarded() -> Iterator[str]:
            try:
                yield from texts
            except Exception as exc:  # noqa: BLE001 - re-raised below, unchanged
                failure.append(exc)

        try:
            cls._train(guarded(), vocabulary_size, buffer)
        except RuntimeError as exc:
            if failure:
                raise failure[0] from None
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(exc))
            if needed:
                raise ConfigError(
                    f"--vocabulary-size {vocabulary_size} is too small for this corpus: its characters and the 256 "
                    f"byte pieces need at least {int(needed.group(1)) + 4}"
                ) from exc
            raise ConfigError(f"cannot train the tokenizer with --vocabulary-size {vocabulary_size}: {exc}") from exc
        if failure:
            raise failure[0]
        return cls(buffer.getvalue())

    @staticmethod
    def _train(texts: Iterator[str], vocabulary_size: int, buffer: io.BytesIO) -> None:
        spm.SentencePieceTrainer.train(
            sentence_iterator=texts,
            model_writer=buffer,
            vocab_size=vocabulary_size,
            hard_vocab_limit=False,
            model_type="unigram",
            character_coverage=0.9995,
            byte_fallback=True,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=TRAINING_SENTENCES,
            shuffle_input_sentence=True,
            max_sentence_length=8192,
            num_threads=2,
            minloglevel=2,
        )

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Load ``tokenizer.model`` (a SentencePiece protobuf, no code). Raises CheckpointError."""
        try:
            return cls(Path(path).read_bytes())
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read tokenizer: {exc.strerror}") from exc
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: not a SentencePiece model (corrupt?); retrain with `chatbot train`") from exc

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.model_proto)

    @property
    def vocabulary_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of one utterance, without start/end markers."""
        return self._processor.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._processor.encode(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids; reserved ids are dropped."""
        return self._processor.decode([int(i) for i in ids if int(i) > EOS_ID])

    def id_to_piece(self, token_id: int) -> str:
        return self._processor.id_to_piece(int(token_id))
