"""Training: the data pipeline, callbacks and the `train` entry point."""
