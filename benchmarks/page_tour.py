"""The chat page with a real model, as a person uses it: the README's screenshot and what a browser waits.

Starts `chatbot serve` (the shipped model unless --model DIR) on a free loopback
port with a fresh database, opens the page in headless Chromium (Playwright,
Debian's `chromium`), sends a few messages with a fixed seed, retries the last
reply (so the "‹ 2 / 2 ›" arrows show), opens one reply's details, replays the
conversation, and takes a screenshot. It prints JSON: the machine, the server's
start-up seconds, each message's seconds from Enter until the page took input
again (the reply shown, the turns reloaded), the replies, and the replay's
count of identical replies.

Run:  .venv/bin/python benchmarks/page_tour.py [--screenshot docs/images/chat-page.png] [--output FILE.json]
      [--model DIR | --url http://127.0.0.1:8000, a server already running]
(tests/test_page_model.py runs it with the shipped model and checks what it prints).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run
import httpx
from playwright.sync_api import expect, sync_playwright

REPO = _common.REPO
MESSAGES = ["hi! how are you today?", "what do you do for fun?", "i love hiking. do you like being outside?"]
SEED = 11


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(model: str, folder: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "chatbot", "serve", "--model", model, "--db", f"sqlite:///{folder / 'tour.db'}", "--port", str(port)]
    log = folder / "serve.log"
    started = time.monotonic()
    environment = {**os.environ, "CHATBOT_HOME": str(folder / "home"), "PYTHONPATH": str(REPO)}
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"chatbot serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() - started > 300:
                raise SystemExit(f"chatbot serve was not ready after 300 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url, time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def settled(page) -> None:
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#turns .pending")).to_have_count(0)


def tour(url: str, screenshot: Path | None, chromium: str) -> dict:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1200, "height": 1000}, color_scheme="light")
        context.set_default_timeout(60_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.click("#settings summary")
        page.fill("#seed", str(SEED))
        page.press("#seed", "Tab")
        page.click("#settings summary")  # closed again: the summary line shows the settings
        seconds = []
        for message in MESSAGES:
            page.fill("#message", message)
            began = time.perf_counter()
            page.press("#message", "Enter")
            settled(page)
            seconds.append(round(time.perf_counter() - began, 3))
        page.locator("#turns li.assistant").last.get_by_role("button", name="Another reply in place of this one").click()
        settled(page)
        page.locator("#turns li.assistant").first.get_by_role("button", name="Details").click()
        page.click("#replay")
        expect(page.locator("#status")).to_contain_text("replies came back identical", timeout=120_000)
        turns = [
            {
                "role": "user" if "user" in (item.get_attribute("class") or "") else "assistant",
                "content": item.locator(".content").inner_text(),
            }
            for item in page.locator("#turns > li.turn").all()
        ]
        status = page.locator("#status").inner_text()
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#message").fill("")
            page.mouse.move(0, 0)
            page.screenshot(path=str(screenshot))
        browser.close()
    return {"seconds_to_reply": seconds, "turns": turns, "replay": status, "page_errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "storage" / "models" / "default"), help="a model directory, or 'scripted'")
    parser.add_argument("--url", help="tour a server already running here (e.g. http://127.0.0.1:8000) instead of starting one")
    parser.add_argument("--screenshot", type=Path, help="write the page's screenshot here (PNG)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--chromium", default=os.environ.get("CHATBOT_CHROMIUM") or shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    if args.url:
        result = {"machine": machine, "url": args.url, **tour(args.url.rstrip("/"), args.screenshot, args.chromium)}
    else:
        with tempfile.TemporaryDirectory(prefix="page-tour-") as folder:
            with serving(args.model, Path(folder)) as (url, startup):
                result = {
                    "machine": machine,
                    "model": args.model,
                    "server_ready_seconds": round(startup, 2),
                    **tour(url, args.screenshot, args.chromium),
                }
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    _common.run(main)  # the server (`chatbot serve`, quiet by itself) writes to a log file; Chromium's lines go to Playwright
