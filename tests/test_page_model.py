"""The chat page with the shipped model in a real Chromium: `benchmarks/page_tour.py` (which takes the README's
screenshot) chats, retries and replays over a real socket, and every reply comes back identical on replay."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from browser import chromium_path
from serving import REPO

pytestmark = [pytest.mark.slow, pytest.mark.browser]  # the shipped model's server and a real Chromium

SHIPPED = REPO / "storage" / "models" / "default"


@pytest.mark.skipif(not (SHIPPED / "model.keras").exists(), reason="the shipped model is not in this checkout")
def test_the_shipped_model_chats_retries_and_replays_in_the_page(tmp_path):
    if chromium_path() is None:
        if os.environ.get("CHATBOT_REQUIRE_BROWSER") == "1":
            pytest.fail("the page tests need Chromium: apt-get install chromium")
        pytest.skip("the page tests need Chromium: apt-get install chromium")
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "page_tour.py"), "--screenshot", str(shot), "--chromium", chromium_path()],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "CHATBOT_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tour = json.loads(result.stdout)
    assert tour["page_errors"] == []
    roles = [turn["role"] for turn in tour["turns"]]
    assert roles == ["user", "assistant"] * 3
    replies = [turn["content"] for turn in tour["turns"] if turn["role"] == "assistant"]
    assert all(len(reply.split()) >= 2 for reply in replies), replies  # the model says something, not a bare token
    assert len(set(replies)) == 3, replies  # and not the same line three times
    assert tour["replay"] == "Replay: 3 of 3 replies came back identical."
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1200, 1000)
