"""The chat page in a real Chromium (Playwright) against a real `chatbot serve` (scripted model) on 127.0.0.1:
chatting, branches, candidates, replay, the list, two tabs, text that stays text, keys, errors, small screens."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import sqlalchemy
from browser import PageWatch, launch
from playwright.sync_api import expect, sync_playwright
from scripted import expected_reply, scripted_checkpoint
from serving import running, stop

from chatbot.storage import ConversationStore

pytestmark = [pytest.mark.slow, pytest.mark.browser]  # a real Chromium against real servers

KEYS = "alice:alice-secret-key-0001\nbob:bob-secret-key-000002\n"
WAIT = 30_000  # ms: the longest a step may take (a busy 2-core machine; a replay may compile a new graph)
expect.set_options(timeout=WAIT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return scripted_checkpoint(tmp_path_factory.mktemp("scripted"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("page"), "--busy-wait", "2") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(WAIT)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.watch = PageWatch(page)
    yield page
    assert page.watch.errors == [], "the page raised JavaScript errors"


def send(page, text: str) -> None:
    """Type `text` and press Enter, then wait until the reply is in and the box takes input again."""
    page.fill("#message", text)
    page.press("#message", "Enter")
    settled(page)


def settled(page) -> None:
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#turns .pending")).to_have_count(0)
    expect(page.locator("#message")).to_be_enabled()


def shown(page) -> list[tuple[str, str]]:
    """The turns on the page: (role, text)."""
    found = []
    for item in page.locator("#turns > li.turn").all():
        role = "user" if "user" in (item.get_attribute("class") or "") else "assistant"
        found.append((role, item.locator(".content").inner_text()))
    return found


def stored(server, conversation_id: int, key: str | None = None) -> list[tuple[str, str]]:
    """The active path as the API stores it: (role, text)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    turns = httpx.get(f"{server.api}/conversations/{conversation_id}/turns", headers=headers, timeout=30).json()["data"]
    return [(turn["role"], turn["content"]) for turn in turns]


def open_id(page) -> int:
    match = re.fullmatch(r"#/c/(\d+)", page.evaluate("location.hash"))
    assert match, f"no conversation in the address: {page.url}"
    return int(match[1])


def test_a_first_chat_enter_sends_shift_enter_breaks_the_line(server, page, checkpoint):
    page.goto(server.url)
    expect(page.locator("#settings-summary")).to_have_text("top-p 0.9, temperature 0.8 · up to 40 tokens · random seed")
    page.click("#message")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#message") == "line one\nline two" and shown(page) == []
    page.click("#settings summary")
    page.select_option("#sampler", "greedy")
    expect(page.locator("#settings-summary")).to_contain_text("greedy · up to 40 tokens")
    page.press("#message", "Enter")
    settled(page)

    conversation = open_id(page)
    assert shown(page) == stored(server, conversation)
    # a message is stored on one line (chatbot.text.messages.clean_message), and answered as stored
    assert shown(page) == [("user", "line one line two"), ("assistant", expected_reply(checkpoint, ["line one line two"]))]
    assert page.input_value("#message") == "" and page.evaluate("document.activeElement.id") == "message"
    entry = page.locator(f'#conversations li[data-id="{conversation}"]')
    expect(entry).to_contain_text("line one")
    expect(entry).to_contain_text("2 turns")
    expect(entry.locator("a")).to_have_attribute("aria-current", "page")


def test_retry_and_edit_make_branches_the_arrows_switch(server, page):
    page.goto(server.url)
    send(page, "tell me a story")
    conversation = open_id(page)
    first_reply = shown(page)[1]
    page.locator("#turns li.assistant").get_by_role("button", name="Another reply in place of this one").click()
    settled(page)
    reply = page.locator("#turns li.assistant").last
    expect(reply.locator(".branches .count")).to_have_text("2 / 2")
    api_turns = httpx.get(f"{server.api}/conversations/{conversation}/turns").json()["data"]
    assert api_turns[1]["alternatives"] == 1

    reply.get_by_role("button", name="Previous alternative").click()
    settled(page)
    expect(page.locator("#turns li.assistant .branches .count")).to_have_text("1 / 2")
    assert shown(page)[1] == first_reply and stored(server, conversation)[1] == first_reply
    page.locator("#turns li.assistant").get_by_role("button", name="Next alternative").click()
    expect(page.locator("#turns li.assistant .branches .count")).to_have_text("2 / 2")

    page.locator("#turns li.user").get_by_role("button", name="Edit this message (a new branch)").click()
    page.fill("#turns li.user textarea", "tell me a joke instead")
    page.press("#turns li.user textarea", "Enter")
    settled(page)
    assert shown(page)[0] == ("user", "tell me a joke instead") and stored(server, conversation)[0] == shown(page)[0]
    mine = page.locator("#turns li.user")
    expect(mine.locator(".branches .count")).to_have_text("2 / 2")
    mine.get_by_role("button", name="Previous alternative").click()
    settled(page)
    expect(page.locator("#turns li.user .branches .count")).to_have_text("1 / 2")
    assert shown(page)[0] == ("user", "tell me a story") and stored(server, conversation)[0] == shown(page)[0]
    expect(page.locator("#turns li.assistant .branches .count")).to_have_text("2 / 2")  # the retried branch kept its place


def test_candidates_pick_details_and_replay(server, page):
    page.goto(server.url)
    page.click("#settings summary")
    page.fill("#n", "3")
    page.fill("#seed", "7")
    page.press("#seed", "Tab")
    expect(page.locator("#settings-summary")).to_contain_text("3 candidates · seed 7")
    send(page, "pick one of three")
    conversation = open_id(page)
    candidates = page.locator("#turns li.assistant .candidates li")
    expect(candidates).to_have_count(3)
    expect(candidates.nth(0).get_by_role("button")).to_have_text("In use")
    candidates.nth(1).get_by_role("button", name="Use this").click()
    settled(page)
    expect(page.locator("#turns li.assistant .candidates li").nth(1).get_by_role("button")).to_have_text("In use")
    reply = httpx.get(f"{server.api}/conversations/{conversation}/turns").json()["data"][-1]
    assert reply["decoding"]["chosen"] == 1 and reply["seed"] == 7

    page.locator("#turns li.assistant").get_by_role("button", name="Details").click()
    details = page.locator("#turns li.assistant dl.details")
    expect(details).to_be_visible()
    expect(details).to_contain_text("seed7")
    expect(details).to_contain_text(f"scripted (id {reply['model_id']})")
    expect(details).to_contain_text("candidate 2 of 3")

    send(page, "and another")
    page.click("#replay")
    expect(page.locator("#status")).to_have_text("Replay: 2 of 2 replies came back identical.")
    expect(page.locator("#turns .replay.identical")).to_have_count(2)

    last = httpx.get(f"{server.api}/conversations/{conversation}/turns").json()["data"][-1]
    engine = sqlalchemy.create_engine(server.db)  # the stored reply altered behind the server's back
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE turns SET text = :text WHERE id = :id"), {"text": "not what was said", "id": last["id"]})
    engine.dispose()
    page.reload()
    expect(page.locator("#turns li.assistant").last.locator(".content")).to_have_text("not what was said")
    page.click("#replay")
    expect(page.locator("#status")).to_have_text("Replay: 1 of 2 replies came back identical.")
    expect(page.locator("#turns li.assistant").last.locator(".replay.changed")).to_have_text(f"✗ changed on replay: “{last['content']}”")


def test_the_list_reload_search_rename_export_delete(server, page, tmp_path):
    page.goto(server.url)
    send(page, "remember the lighthouse")
    conversation = open_id(page)
    before = shown(page)
    page.reload()
    expect(page.locator("#turns li.turn")).to_have_count(2)
    assert shown(page) == before

    page.goto(server.url)  # a new chat; the conversation is in the list
    expect(page.locator("#title")).to_have_text("New chat")
    page.fill("#search", "lighthouse")
    expect(page.locator("#conversations li[data-id]")).to_have_count(1)
    page.click(f'#conversations li[data-id="{conversation}"] a')
    expect(page.locator("#turns li.turn")).to_have_count(2)
    assert shown(page) == before
    page.fill("#search", "no such words anywhere")
    expect(page.locator("#conversations")).to_have_text("Nothing matches.")
    page.fill("#search", "")

    page.click("#rename")
    page.fill("#rename-input", "The lighthouse")
    page.press("#rename-input", "Enter")
    expect(page.locator("#title")).to_have_text("The lighthouse")
    expect(page.locator(f'#conversations li[data-id="{conversation}"]')).to_contain_text("The lighthouse")

    with page.expect_download() as download:
        page.click("#export-jsonl")
    record = json.loads(download.value.path().read_text())
    assert download.value.suggested_filename == f"conversation-{conversation}.jsonl"
    assert record["title"] == "The lighthouse" and "remember the lighthouse" in json.dumps(record)
    with page.expect_download() as download:
        page.click("#export-md")
    assert "remember the lighthouse" in download.value.path().read_text()

    page.click("#delete")
    expect(page.locator("#delete")).to_have_text("Really delete?")
    page.click("#delete")
    expect(page.locator("#title")).to_have_text("New chat")
    expect(page.locator(f'#conversations li[data-id="{conversation}"]')).to_have_count(0)
    assert httpx.get(f"{server.api}/conversations/{conversation}").status_code == 404
    page.goto(f"{server.url}/#/c/{conversation}")
    expect(page.locator("#chat-error")).to_have_text(f"conversation {conversation} is not on this server (deleted, or another key's)")


def test_two_tabs_on_one_conversation_are_answered_in_turn(server, context):
    first, second = context.new_page(), context.new_page()
    first.goto(server.url)
    send(first, "from the first tab")
    conversation = open_id(first)
    second.goto(f"{server.url}/#/c/{conversation}")
    expect(second.locator("#turns li.turn")).to_have_count(2)
    send(second, "from the second tab")
    assert [text for _, text in shown(second)[::2]] == ["from the first tab", "from the second tab"]

    first.fill("#message", "both at once, first")
    second.fill("#message", "both at once, second")
    first.press("#message", "Enter")
    second.press("#message", "Enter")
    settled(first)
    settled(second)
    path = stored(server, conversation)
    assert [role for role, _ in path] == ["user", "assistant"] * 4  # one after the other, never interleaved
    assert {path[4][1], path[6][1]} == {"both at once, first", "both at once, second"}
    first.reload()
    expect(first.locator("#turns li.turn")).to_have_count(8)
    assert shown(first) == path


def test_text_is_shown_as_text_never_run(server, page):
    page.goto(server.url)
    attack = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    send(page, attack)
    assert shown(page)[0] == ("user", attack)
    expect(page.locator("#turns img, #turns script")).to_have_count(0)
    page.click("#rename")
    page.fill("#rename-input", "<b onmouseover=alert(3)>bold</b>")
    page.press("#rename-input", "Enter")
    expect(page.locator("#title")).to_have_text("<b onmouseover=alert(3)>bold</b>")
    expect(page.locator("#title b, #conversations b")).to_have_count(0)
    page.hover("#title")
    page.reload()
    expect(page.locator("#turns li.turn")).to_have_count(2)
    assert page.watch.dialogs == []
    policy = httpx.get(server.url).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_errors_are_one_line_where_they_happen_and_the_message_stays(server, page):
    page.goto(server.url)
    send(page, "first")
    conversation = open_id(page)
    store = ConversationStore(server.db)
    try:
        with store.tickets.turn(conversation, wait=5):  # another client is answering in this conversation
            page.fill("#message", "second")
            page.press("#message", "Enter")
            error = page.locator("#send-error")
            expect(error).to_be_visible(timeout=WAIT)
            expect(error).to_contain_text(f"conversation {conversation} is answering another message")
            settled(page)
            assert page.input_value("#message") == "second" and len(shown(page)) == 2
            assert len(error.inner_text().splitlines()) == 1

        page.press("#message", "Enter")  # sent again once the conversation is free
        settled(page)
        expect(page.locator("#send-error")).to_be_hidden()
        assert page.input_value("#message") == "" and [t for _, t in shown(page)[::2]] == ["first", "second"]

        with store.tickets.turn(conversation, wait=5):  # Stop while the request waits for its turn
            page.fill("#message", "third")
            page.press("#message", "Enter")
            page.click("#stop")
            expect(page.locator("#status")).to_contain_text("Stopped")
            settled(page)
        # what the API does on a disconnect: the message and its reply are stored all the same, and shown
        expect(page.locator("#turns li.turn")).to_have_count(6)
        assert shown(page) == stored(server, conversation) and shown(page)[4] == ("user", "third")
        expect(page.locator("#message")).to_have_value("")
    finally:
        store.close()


def test_a_server_with_keys_asks_once_and_scopes_conversations(tmp_path, browser):
    (tmp_path / "keys").write_text(KEYS)
    with running(tmp_path, "--api-key-file", str(tmp_path / "keys")) as server:
        context = browser.new_context()
        context.set_default_timeout(WAIT)
        page = context.new_page()
        watch = PageWatch(page)
        page.goto(server.url)
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.fill("#key-input", "not-a-key-of-this-server")
        page.press("#key-input", "Enter")
        expect(dialog).to_be_visible()
        expect(page.locator("#key-error")).to_have_text("That key was not accepted: check it and try again.")
        page.fill("#key-input", "alice-secret-key-0001")
        page.press("#key-input", "Enter")
        expect(dialog).to_be_hidden()
        send(page, "only alice may read this")
        conversation = open_id(page)
        assert stored(server, conversation, "alice-secret-key-0001")[0] == ("user", "only alice may read this")
        page.reload()  # the key is kept for the tab: not asked again
        expect(page.locator("#turns li.turn")).to_have_count(2)
        expect(dialog).to_be_hidden()

        other = browser.new_context()
        other.set_default_timeout(WAIT)
        bob = other.new_page()
        bob.goto(f"{server.url}/#/c/{conversation}")
        bob.fill("#key-input", "bob-secret-key-000002")
        bob.press("#key-input", "Enter")
        expect(bob.locator("#chat-error")).to_contain_text(f"conversation {conversation} is not on this server")
        expect(bob.locator("#conversations li[data-id]")).to_have_count(0)
        assert watch.errors == [] and watch.dialogs == []
        other.close()
        context.close()


def test_the_server_stopped_mid_chat_keeps_the_message(tmp_path, page):
    with running(tmp_path) as server:
        page.goto(server.url)
        send(page, "hello while you are up")
        stop(server)
        page.fill("#message", "are you still there?")
        page.press("#message", "Enter")
        error = page.locator("#send-error")
        expect(error).to_have_text(re.compile(r"^cannot reach the server at http://127\.0\.0\.1:\d+: is chatbot serve still running\?"))
        settled(page)
        assert page.input_value("#message") == "are you still there?"
        assert shown(page)[0] == ("user", "hello while you are up") and len(shown(page)) == 2


def test_small_screens_dark_mode_and_the_keyboard_alone(server, browser):
    context = browser.new_context(viewport={"width": 360, "height": 740}, color_scheme="dark")
    context.set_default_timeout(WAIT)
    page = context.new_page()
    watch = PageWatch(page)
    page.goto(server.url)
    expect(page.locator("#sidebar")).to_be_hidden()
    for _ in range(40):  # Tab from the top reaches the message box
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "message":
            break
    assert page.evaluate("document.activeElement.id") == "message"
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Enter")
    settled(page)
    retry = page.locator("#turns li.assistant").get_by_role("button", name="Another reply in place of this one")
    retry.focus()
    page.keyboard.press("Enter")
    settled(page)
    expect(page.locator("#turns li.assistant .branches .count")).to_have_text("2 / 2")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _luminance(background) < 0.2, background
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea, button')]
             .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
             .map((e) => e.outerHTML)"""
    )
    assert unlabelled == []

    page.get_by_role("button", name="☰ Conversations").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#conversations li[data-id]").first).to_be_visible()
    page.screenshot(path=str(server.home / "narrow.png"))
    assert watch.errors == []
    context.close()

    light = browser.new_context(color_scheme="light")
    page = light.new_page()
    page.goto(server.url)
    assert _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8
    light.close()


def _luminance(css: str) -> float:
    red, green, blue = (int(part) for part in re.findall(r"\d+", css)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255
