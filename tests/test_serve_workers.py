"""Two workers serving a really trained tiny HRED: several client processes on one conversation, kill -9 of a
worker mid-reply, micro-batched replies that replay exactly; and, on the scripted model, a database that
stops taking writes, then SIGTERM (one server for both: the first leaves it serving, the second ends it)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import POSTGRES_SERVER, postgres_database
from serving import running, start_server, stop

from chatbot.cli.parser import main
from chatbot.storage import ConversationStore

pytestmark = pytest.mark.slow  # several server processes with a really trained model


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("workers")
    # A 50 ms window: the requests of one burst reach the inference thread one SQLite write apart (the
    # writers queue), which on a loaded CI machine is more than the default 2 ms.
    args = ("--workers", "2", "--busy-wait", "30", "--max-batch", "4", "--batch-window-ms", "50")
    with running(folder, *args, model=str(tiny_model_dir)) as server:
        yield server


def workers_health(url: str, workers: int = 2) -> dict[int, dict]:
    """/health of every worker (a request reaches one of them at random), by process id."""
    found: dict[int, dict] = {}
    for _ in range(200):
        health = httpx.get(f"{url}/health", timeout=10).json()
        found[health["worker"]] = health
        if len(found) == workers:
            break
    return found


def talk(api: str, conversation: int, name: str, messages: int) -> list[str]:
    """One client process's side of a shared conversation: `messages` messages, each answered before the next."""
    with httpx.Client(base_url=api, timeout=120) as client:
        texts = []
        for index in range(messages):
            text = f"{name} says number {index}"
            response = client.post(f"/conversations/{conversation}/messages", json={"content": text, "seed": index})
            response.raise_for_status()
            texts.append(text)
        return texts


def test_several_client_processes_on_one_conversation_are_answered_in_order(served):
    conversation = httpx.post(f"{served.api}/conversations", json={}).json()["id"]
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        sent = list(pool.map(talk, [served.api] * 4, [conversation] * 4, ["ann", "bob", "cy", "di"], [3] * 4))
    store = ConversationStore(served.db)
    turns = store.turns(conversation)
    assert [t.position for t in turns] == list(range(24))
    assert [t.speaker for t in turns] == ["user", "bot"] * 12  # every reply right after its message: none interleaved
    assert all(bot.parent_id == user.id for user, bot in zip(turns[::2], turns[1::2], strict=True))
    said = [t.text for t in turns[::2]]
    assert sorted(said) == sorted(text for texts in sent for text in texts)  # none lost, none doubled
    for texts in sent:  # each client's messages in its order
        assert [t for t in said if t in texts] == texts
    for bot in turns[1::2]:  # the context of each reply held every exchange before it (its window)
        assert bot.seed is not None and '"context_turns"' in bot.decoding
    store.close()


def test_concurrent_requests_are_micro_batched_and_replay_identically(served, capsys):
    """Sixteen clients at once: the worker decodes them in batches, and `chatbot replay --regenerate` of the
    conversations (each reply made alone; the command run in this process, as tests/test_sessions.py runs it:
    a process of its own would only add TensorFlow's start) gives every reply back token for token."""
    client = openai.OpenAI(base_url=served.api, api_key="unused", max_retries=0)

    def ask(index: int) -> int:
        completion = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"tell me about thing {index}"}], seed=100 + index
        )
        return completion.model_extra["conversation_id"]

    # A batch size compiles in the background when its first batch comes (until then that batch is decoded one
    # by one): bursts of 16, each followed by the compiles it started, until some were decoded together.
    conversations: list[int] = []
    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            conversations += pool.map(ask, range(16))
        batches = {pid: health["batches"] for pid, health in workers_health(served.url).items()}
        if any(int(size) > 1 for counts in batches.values() for size in counts):
            break
        deadline = time.monotonic() + 240
        while any(health["compiling"] for health in workers_health(served.url).values()) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert any(int(size) > 1 for counts in batches.values() for size in counts), batches
    status = main(["replay", "--regenerate", "--db", served.db, *map(str, conversations)])
    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    assert printed.out.count("1 of 1 replies identical") == len(conversations)


def test_kill_9_of_a_worker_mid_reply_leaves_no_half_exchange_and_the_conversation_goes_on(served):
    """The worker is killed after the message was committed and while the reply is generated (eagerly: a
    setting not compiled yet, 400 tokens): the message stays, unanswered; the client's retry, on the other
    or the restarted worker, answers it without storing it twice."""
    client = openai.OpenAI(base_url=served.api, api_key="unused", max_retries=0, timeout=120)
    opening = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], seed=1)
    conversation = opening.model_extra["conversation_id"]
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": opening.choices[0].message.content}]
    messages = [*history, {"role": "user", "content": "please talk for a long time"}]
    slow = {"model": "tiny", "messages": messages, "temperature": 1.7, "top_p": 0.97, "max_tokens": 400, "seed": 5}
    store = ConversationStore(served.db)
    failed: list[BaseException] = []

    def send():
        try:
            client.chat.completions.create(**slow)
        except openai.APIConnectionError as exc:
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    holder = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        holders = store.tickets.holders(conversation)
        turns = store.turns(conversation)
        if holders and turns[-1].text == "please talk for a long time":
            holder = int(holders[0].split(":")[1])
            break
        time.sleep(0.005)
    assert holder in served.worker_pids(), (holder, served.worker_pids())
    os.kill(holder, signal.SIGKILL)
    sender.join(60)
    assert failed, "the request on the killed worker should have lost its connection"
    turns = store.turns(conversation)
    assert [t.speaker for t in turns] == ["user", "bot", "user"]  # the message, committed; no half reply

    retried = openai.OpenAI(base_url=served.api, api_key="unused", max_retries=5, timeout=120)  # 409 while the dead ticket lives
    answer = retried.chat.completions.create(**{**slow, "temperature": 0, "max_tokens": 20}, extra_headers={"x-stainless-retry-count": "1"})
    assert answer.model_extra["conversation_id"] == conversation
    turns = store.turns(conversation)
    assert [t.speaker for t in turns] == ["user", "bot", "user", "bot"] and turns[-1].text == answer.choices[0].message.content
    assert len(store.tree(conversation)) == 4  # the message was answered, not stored again
    assert len(served.worker_pids()) == 2  # uvicorn restarted the killed worker
    store.close()


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory):
    """A single-worker server of the scripted model, its database in a folder of its own, shared by the two tests
    below: the database test leaves it serving, the SIGTERM test ends it. A call after it ended (the tests run in
    another order, or on another pytest-xdist worker) starts a new one."""
    servers = []

    def server():
        if not servers or servers[-1].process.poll() is not None:
            folder = tmp_path_factory.mktemp("scripted-server")
            (folder / "data").mkdir()
            servers.append(start_server(folder, db=f"sqlite:///{folder / 'data' / 'chat.db'}"))
        return servers[-1]

    yield server
    for started in servers:
        stop(started)


def test_a_database_that_goes_away_is_503_with_one_line_and_nothing_half_written(scripted_server, tmp_path):
    server = scripted_server()
    db = server.db
    folder = Path(db.removeprefix("sqlite:///")).parent
    conversation = httpx.post(f"{server.api}/conversations", json={}).json()["id"]
    httpx.post(f"{server.api}/conversations/{conversation}/messages", json={"content": "before"}).raise_for_status()
    moved = tmp_path / "moved"
    folder.rename(moved)  # the disk was unmounted, the folder moved: the open database is gone
    try:
        response = httpx.post(f"{server.api}/conversations/{conversation}/messages", json={"content": "after"}, timeout=60)
        assert response.status_code == 503 and response.headers["retry-after"], response.text
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable" and "\n" not in error["message"] and str(folder) not in error["message"]
    finally:
        moved.rename(folder)
    after = httpx.post(f"{server.api}/conversations/{conversation}/messages", json={"content": "back again"}, timeout=60)
    assert after.status_code == 200, after.text
    store = ConversationStore(db)
    assert [t.text for t in store.turns(conversation)][::2] == ["before", "back again"]  # nothing of "after" was written
    store.close()


def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_0(scripted_server):
    server = scripted_server()
    try:
        store = ConversationStore(server.db)
        conversation = store.create_conversation().id
        results: list[httpx.Response] = []
        with store.tickets.turn(conversation, wait=5):  # another process answers in this conversation: the request waits
            sender = threading.Thread(
                target=lambda: results.append(
                    httpx.post(f"{server.api}/conversations/{conversation}/messages", json={"content": "hi"}, timeout=60)
                )
            )
            sender.start()
            deadline = time.monotonic() + 30
            while len(store.tickets.holders(conversation)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"{server.url}/health", timeout=5)  # no new connections
        sender.join(60)
        assert results and results[0].status_code == 200, results
        assert server.process.wait(60) == 0
        assert [t.speaker for t in store.turns(conversation)] == ["user", "bot"]
        store.close()
    finally:
        stop(server)


@pytest.mark.postgres
def test_two_workers_on_postgresql_answer_clients_of_one_conversation_in_order(tmp_path):
    """The same as on SQLite, with the scripted model, on a fresh PostgreSQL database (skipped without
    $CHATBOT_TEST_POSTGRES): the tickets and row locks order the exchanges across the two processes."""
    server_url = os.environ.get(POSTGRES_SERVER)
    if not server_url:
        pytest.skip(f"PostgreSQL variant: set {POSTGRES_SERVER} (bin/postgres-test starts a throwaway server)")
    args = ("--workers", "2", "--busy-wait", "30")
    with postgres_database(server_url) as db, running(tmp_path, *args, db=db) as served:
        conversation = httpx.post(f"{served.api}/conversations", json={}).json()["id"]
        with concurrent.futures.ProcessPoolExecutor(3) as pool:
            sent = list(pool.map(talk, [served.api] * 3, [conversation] * 3, ["ann", "bob", "cy"], [3] * 3))
        store = ConversationStore(db)
        turns = store.turns(conversation)
        assert [t.speaker for t in turns] == ["user", "bot"] * 9 and [t.position for t in turns] == list(range(18))
        assert sorted(t.text for t in turns[::2]) == sorted(text for texts in sent for text in texts)
        store.close()
