"""chatbot: hierarchical recurrent dialogue models (HRED, VHRED) behind a terminal chat and an HTTP server, every turn stored."""

__version__ = "0.1.0"
