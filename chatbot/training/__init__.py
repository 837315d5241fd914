"""Training: the data pipeline, callbacks and the `train` entry point; `dialogue_batches` feeds a model's `fit`.

`dialogue_batches` is the public way to feed a loaded model's `fit` (see examples/fine_tune.py);
`chatbot.train` runs a whole training as `chatbot train` does.
"""

from chatbot.training.data import dialogue_batches

__all__ = ["dialogue_batches"]
