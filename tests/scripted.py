"""The scripted dialogue model for tests: `chatbot.inference.scripted` (the real inference contract answered from a
fixed table), re-exported under the name the tests import."""

from chatbot.inference.scripted import (
    MARGIN,
    REPLIES,
    TOKENIZER_TEXTS,
    ScriptedModel,
    expected_reply,
    scripted_checkpoint,
    scripted_tokenizer,
)

__all__ = ["MARGIN", "REPLIES", "TOKENIZER_TEXTS", "ScriptedModel", "expected_reply", "scripted_checkpoint", "scripted_tokenizer"]
