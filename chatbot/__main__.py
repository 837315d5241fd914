"""`python -m chatbot`: the same as the `chatbot` command."""

from chatbot.cli import main

raise SystemExit(main())
