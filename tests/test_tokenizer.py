"""The SentencePiece tokenizer (`chatbot.text.tokenizer`): reserved ids, unseen characters, vocabulary size."""

import unicodedata

from chatbot.corpus import load_corpus
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer


def _train(spec, size):
    corpus = load_corpus(spec)
    return corpus, Tokenizer.train([t.text for d in corpus.split("train") for t in d.turns], size)


def test_reserved_ids():
    _, tokenizer = _train("chatterbot:english", 500)
    assert [tokenizer.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert all(i > EOS_ID for i in tokenizer.encode("hello there, how are you?"))


def test_japanese_round_trip_and_unseen_characters(tmp_path):
    corpus, tokenizer = _train("chatterbot:japanese", 2000)
    texts = [t.text for d in corpus.split("test") for t in d.turns][:50]
    assert texts
    for text in texts:
        ids = tokenizer.encode(text)
        assert UNK_ID not in ids
        assert tokenizer.decode(ids) == unicodedata.normalize("NFKC", text)  # SentencePiece normalises to NFKC
    # byte fallback: an emoji never seen in training still survives the round trip
    assert tokenizer.decode(tokenizer.encode("こんにちは😀")) == "こんにちは😀"
    # Japanese has no spaces: pieces must be shorter than whole utterances
    assert len(tokenizer.encode(texts[0])) > 1
    tokenizer.save(tmp_path / "tokenizer.model")
    assert Tokenizer.load(tmp_path / "tokenizer.model").encode(texts[0]) == tokenizer.encode(texts[0])


def test_vocabulary_size_is_an_upper_bound():
    _, tokenizer = _train("chatterbot:english", 8000)
    assert 300 < tokenizer.vocabulary_size <= 8000
