"""The chat wing: the terminal REPL, its input and views, and the non-interactive chat."""
