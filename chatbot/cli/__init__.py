"""The command layer: the `chatbot` parser, its command handlers, and the native-log silencer.

`main` (the `chatbot` command) and `build_parser` live in `chatbot.cli.parser`; each command's
handler in `chatbot.cli.commands`. Argparse stays here: the wings below take typed arguments.
"""

from chatbot.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
