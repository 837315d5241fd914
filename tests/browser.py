"""Debian's Chromium driven by Playwright for the chat page's tests: found, launched once per worker, never downloaded.

`CHATBOT_CHROMIUM` names the browser (default: `chromium` on the PATH, as
`apt-get install chromium` puts it). Without one the page tests are skipped,
unless `CHATBOT_REQUIRE_BROWSER=1` (set by `.ci/run`), when they fail.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_path() -> str | None:
    named = os.environ.get("CHATBOT_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    path = chromium_path()
    if path is None:
        message = "the page tests need Chromium: apt-get install chromium (or set CHATBOT_CHROMIUM=/path/to/chrome)"
        if os.environ.get("CHATBOT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    return playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])


class PageWatch:
    """What a page did that a test must see: JavaScript errors and dialogs (alert, confirm, prompt)."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()
