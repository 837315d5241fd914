"""The conversation API against a real `chatbot serve` (scripted model) with `httpx` and `httpx-sse`: every
REPL feature as a resource, the same results as the REPL on one database, and API keys that scope conversations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from scripted import expected_reply, scripted_checkpoint
from serving import REPO, running

from chatbot.chat.repl import ChatREPL
from chatbot.chat.terminal import LineInput
from chatbot.dialogue.manager import DialogueManager
from chatbot.inference.decoding import DecodingConfig
from chatbot.inference.responder import make_generator
from chatbot.storage import ConversationStore

GREEDY = {"temperature": 0}
KEYS = "alice:alice-secret-key-0001\nbob:bob-secret-key-000002\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return scripted_checkpoint(tmp_path_factory.mktemp("scripted"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conversations")
    (folder / "keys").write_text(KEYS)
    with running(folder, "--api-key-file", str(folder / "keys"), "--busy-wait", "1") as server:
        yield server


def client(server, key: str = "alice-secret-key-0001") -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.mark.slow
def test_every_feature_of_the_repl_as_a_resource(server, checkpoint):
    api = client(server)
    conversation = api.post("/conversations", json={"title": "a test", "system": "be brief"}).json()
    cid = conversation["id"]
    assert conversation["title"] == "a test" and conversation["system_prompt"] == "be brief" and conversation["model"] == "scripted"

    first = api.post(f"/conversations/{cid}/messages", json={"content": "hello", **GREEDY}).json()
    assert first["reply"]["content"] == expected_reply(checkpoint, ["hello"]) and first["message"]["content"] == "hello"
    assert first["reply"]["decoding"]["sampler"] == "greedy" and first["reply"]["seed"] is not None

    retried = api.post(f"/conversations/{cid}/retry", json={"n": 2, "seed": 7}).json()
    assert retried["replaced"]["id"] == first["reply"]["id"] and len(retried["candidates"]) == 2
    picked = api.post(f"/conversations/{cid}/turns/{retried['reply']['id']}/pick", json={"index": 1}).json()
    assert picked["content"] == retried["candidates"][1]["content"] and picked["decoding"]["chosen"] == 1

    edited = api.post(f"/conversations/{cid}/edit", json={"content": "books", **GREEDY}).json()
    assert edited["replaced"]["content"] == "hello" and edited["reply"]["content"] == expected_reply(checkpoint, ["books"])

    branches = api.get(f"/conversations/{cid}/branches").json()["data"]
    assert len(branches) == 4 and [b["active"] for b in branches].count(True) == 1
    path = api.post(f"/conversations/{cid}/branches/1/activate").json()["data"]
    assert [t["content"] for t in path] == ["hello", first["reply"]["content"]]
    turns = api.get(f"/conversations/{cid}/turns").json()["data"]
    assert [t["content"] for t in turns] == ["hello", first["reply"]["content"]] and turns[0]["alternatives"] == 1

    transcript = api.get(f"/conversations/{cid}/transcript").json()
    assert len(transcript["branches"]) == 4 and transcript["conversation"]["id"] == cid

    assert api.post(f"/conversations/{cid}", json={"title": "renamed"}).json()["title"] == "renamed"
    listing = api.get("/conversations", params={"search": "books"}).json()
    assert [c["id"] for c in listing["data"]] == [cid]

    exported = api.get(f"/conversations/{cid}/export", params={"format": "jsonl"})
    record = json.loads(exported.text)
    assert exported.headers["content-disposition"].endswith(f'conversation-{cid}.jsonl"') and record["id"] == f"session-{cid}"
    markdown = api.get(f"/conversations/{cid}/export", params={"format": "markdown"}).text
    assert "**user:** hello" in markdown

    replay = api.post(f"/conversations/{cid}/replay", json={"all_branches": True}).json()
    assert replay["total"] == 4 and replay["identical"] == 4, replay

    deleted = api.delete(f"/conversations/{cid}").json()
    assert deleted["deleted"] and deleted["turns"] == 6  # two messages, four replies (first, retry, pick, edit)
    assert api.get(f"/conversations/{cid}").status_code == 404


def test_a_streamed_message_sends_the_stored_message_then_deltas_then_the_exchange(server, checkpoint):
    api = client(server)
    cid = api.post("/conversations", json={}).json()["id"]
    with connect_sse(api, "POST", f"/conversations/{cid}/messages", json={"content": "stream this", "stream": True, **GREEDY}) as source:
        assert source.response.headers["conversation-id"] == str(cid)
        events = [(event.event, event.data) for event in source.iter_sse()]
    assert events[0][0] == "message" and json.loads(events[0][1])["content"] == "stream this"
    text = "".join(json.loads(data)["content"] for name, data in events if name == "delta")
    assert text == expected_reply(checkpoint, ["stream this"])
    assert events[-1][0] == "done" and json.loads(events[-1][1])["reply"]["content"] == text


def test_keys_scope_conversations_and_a_missing_key_is_401(server):
    alice, bob = client(server), client(server, "bob-secret-key-000002")
    cid = alice.post("/conversations", json={"title": "alice only"}).json()["id"]
    alice.post(f"/conversations/{cid}/messages", json={"content": "a secret"})
    for method, path in (("GET", f"/conversations/{cid}"), ("GET", f"/conversations/{cid}/turns"), ("DELETE", f"/conversations/{cid}")):
        response = bob.request(method, path)
        assert response.status_code == 404 and "secret" not in response.text
    response = bob.post(f"/conversations/{cid}/messages", json={"content": "let me in"})
    assert response.status_code == 404
    assert cid not in [c["id"] for c in bob.get("/conversations").json()["data"]]
    assert cid in [c["id"] for c in alice.get("/conversations").json()["data"]]
    # the Chat Completions surface: bob's identical messages do not continue alice's conversation
    completion = bob.post("/chat/completions", json={"model": "scripted", "messages": [{"role": "user", "content": "a secret"}]}).json()
    assert completion["conversation_id"] != cid
    for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key"}, {"Authorization": "alice-secret-key-0001"}):
        response = httpx.get(f"{server.api}/conversations", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/health").status_code == 200  # no key needed


def test_bad_ids_and_bodies_get_one_error_object(server):
    api = client(server)
    cases = [
        api.get("/conversations/abc"),
        api.get("/conversations/999999"),
        api.post("/conversations/999999/messages", json={"content": "hi"}),
        api.post("/conversations", content=b"{not json", headers={"content-type": "application/json"}),
        api.post("/conversations/1/turns/999999/pick", json={"index": 0}),
        api.get("/conversations", params={"limit": 0}),
    ]
    for response in cases:
        assert response.status_code in (400, 404), response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and "Traceback" not in response.text
    cid = api.post("/conversations", json={}).json()["id"]
    empty = api.post(f"/conversations/{cid}/messages", json={"content": "\x1b[2J\x00"})
    assert empty.status_code == 400 and "empty message" in empty.json()["error"]["message"]
    nothing = api.post(f"/conversations/{cid}/retry", json={})
    assert nothing.status_code == 400 and "nothing to retry" in nothing.json()["error"]["message"]


def test_the_repl_and_the_api_give_the_same_results_on_one_database(server, checkpoint):
    """The same actions on the same conversation, once through the REPL and once through the API, store the same turns."""
    api = client(server)
    store = ConversationStore(server.db)
    manager = DialogueManager(store, checkpoint, generator=make_generator(checkpoint))
    script = ["hello", "do you like music or books?", "/retry", "/edit tell me something about yourself."]
    lines: list[str] = []
    repl = ChatREPL(manager, DecodingConfig(sampler="greedy"), LineInput(_lines(script)), write=lines.append, hint=None)
    repl.run()
    by_repl = [(t.speaker, t.text) for t in manager.history(repl.conversation_id)]

    cid = api.post("/conversations", json={}).json()["id"]
    api.post(f"/conversations/{cid}/messages", json={"content": "hello", **GREEDY})
    api.post(f"/conversations/{cid}/messages", json={"content": "do you like music or books?", **GREEDY})
    api.post(f"/conversations/{cid}/retry", json=GREEDY)
    api.post(f"/conversations/{cid}/edit", json={"content": "tell me something about yourself.", **GREEDY})
    by_api = [("user" if t["role"] == "user" else "bot", t["content"]) for t in api.get(f"/conversations/{cid}/turns").json()["data"]]
    assert by_api == by_repl
    assert len(store.branches(cid)) == len(store.branches(repl.conversation_id)) == 3
    # and the REPL continues a conversation the API made, reading the same context
    lines.clear()
    ChatREPL(
        manager, DecodingConfig(sampler="greedy"), LineInput(_lines(["one more"])), write=lines.append, conversation_id=cid, hint=None
    ).run()
    said = [text for _, text in by_api] + ["one more"]
    assert f"bot> {expected_reply(checkpoint, said)}" in lines
    store.close()


def _lines(texts):
    import io

    return io.BytesIO("".join(f"{t}\n" for t in texts).encode())


def test_a_host_off_loopback_without_keys_is_refused_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "serve", "--model", "scripted", "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CHATBOT_HOME": str(tmp_path), "PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--api-key-file" in lines[0] and "0.0.0.0" in lines[0]


def test_the_openai_client_gets_its_error_classes_for_a_wrong_key_and_a_busy_conversation(server):
    wrong = openai.OpenAI(base_url=server.api, api_key="not-a-key-of-this-server", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        wrong.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["code"] == "invalid_api_key"

    alice = openai.OpenAI(base_url=server.api, api_key="alice-secret-key-0001", max_retries=0)
    conversation = client(server).post("/conversations", json={}).json()["id"]
    store = ConversationStore(server.db)
    with store.tickets.turn(conversation, wait=5):  # another request is answering in this conversation
        with pytest.raises(openai.ConflictError) as busy:
            alice.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}], extra_body={"conversation_id": conversation}
            )
    assert busy.value.body["code"] == "conversation_busy" and int(busy.value.response.headers["retry-after"]) >= 1
    assert store.turns(conversation) == []  # nothing was stored
    retrying = openai.OpenAI(base_url=server.api, api_key="alice-secret-key-0001", max_retries=2)
    answer = retrying.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "hi"}], extra_body={"conversation_id": conversation}
    )
    assert answer.model_extra["conversation_id"] == conversation and len(store.turns(conversation)) == 2
    store.close()


def test_the_chat_completions_stream_on_the_wire(server, checkpoint):
    """The wire format itself, read with httpx-sse: data-only events of chat.completion.chunk objects, then [DONE]."""
    body = {"model": "scripted", "messages": [{"role": "user", "content": "wire format"}], "stream": True, "n": 2}
    with connect_sse(client(server), "POST", "/chat/completions", json=body) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        data = [event.data for event in source.iter_sse()]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"} and len({chunk["id"] for chunk in chunks}) == 1
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts[0] == expected_reply(checkpoint, ["wire format"]) and texts[1] == texts[0]  # the script answers alike
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == ["stop", "stop"]
