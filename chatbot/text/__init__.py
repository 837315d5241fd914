"""Text shared by every wing: the SentencePiece tokenizer, normalisation, message cleaning."""
