"""chatbot: hierarchical recurrent dialogue models (HRED) behind a SQLite-backed terminal REPL."""

__version__ = "0.1.0"
