"""The OpenAI-compatible surface against a real `chatbot serve` (scripted model) with the official `openai`
client, sync and async, streamed and not, and its error classes; every completion stored."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from scripted import expected_reply, scripted_checkpoint
from serving import running

from chatbot.storage import ConversationStore


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("openai")) as server:
        yield server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return scripted_checkpoint(tmp_path_factory.mktemp("scripted"))


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client, server):
    assert [m.id for m in client.models.list().data] == ["scripted"]
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "chatbot"
    assert httpx.get(f"{server.url}/docs").status_code == 404  # no page that the CSP would leave blank


def test_a_completion_is_answered_and_stored_and_the_next_request_continues_it(client, server, checkpoint):
    first = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hello there"}], seed=3)
    reply = first.choices[0].message.content
    assert reply == expected_reply(checkpoint, ["hello there"]) and first.choices[0].finish_reason == "stop"
    assert first.object == "chat.completion" and first.id.startswith("chatcmpl-") and first.system_fingerprint
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens > 0
    conversation = first.model_extra["conversation_id"]
    history = [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "tell me more"},
    ]
    second = client.chat.completions.create(model="scripted", messages=history, seed=4)
    assert second.model_extra["conversation_id"] == conversation  # continued, not a new conversation
    store = ConversationStore(server.db)
    turns = [(t.speaker, t.text) for t in store.turns(conversation)]
    store.close()
    said = ["hello there", reply, "tell me more"]
    assert turns == list(zip(["user", "bot", "user", "bot"], [*said, expected_reply(checkpoint, said)], strict=True))


def test_a_different_last_message_after_a_stored_prefix_is_a_branch(client, server):
    opening = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "one two three"}])
    reply = opening.choices[0].message.content
    prefix = [{"role": "user", "content": "one two three"}, {"role": "assistant", "content": reply}]
    for text in ("first question", "second question"):
        answer = client.chat.completions.create(model="scripted", messages=[*prefix, {"role": "user", "content": text}])
        assert answer.model_extra["conversation_id"] == opening.model_extra["conversation_id"]
    store = ConversationStore(server.db)
    conversation = opening.model_extra["conversation_id"]
    assert [t.text for t in store.turns(conversation)][:3] == ["one two three", reply, "second question"]
    assert len(store.branches(conversation)) == 2  # the first question stays, on its own branch
    store.close()


def test_the_same_seed_gives_the_same_reply_and_n_gives_candidates(client):
    messages = [{"role": "user", "content": "do you like music or books?"}]
    replies = [client.chat.completions.create(model="scripted", messages=messages, seed=11, n=3) for _ in range(2)]
    assert [len(r.choices) for r in replies] == [3, 3]
    assert [c.message.content for c in replies[0].choices] == [c.message.content for c in replies[1].choices]
    assert replies[0].system_fingerprint == replies[1].system_fingerprint
    assert replies[0].model_extra["seed"] == 11


def test_streaming_sends_deltas_then_usage_then_done(client, checkpoint):
    stream = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "streamed hello"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply(checkpoint, ["streamed hello"])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_the_async_client_streamed_and_not(server, checkpoint):
    async def talk():
        client = openai.AsyncOpenAI(base_url=server.api, api_key="unused", max_retries=0)
        plain, streamed = await asyncio.gather(
            client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "async one"}]),
            client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "async two"}], stream=True),
        )
        text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
        await client.close()
        return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(talk())
    assert (plain, streamed) == (expected_reply(checkpoint, ["async one"]), expected_reply(checkpoint, ["async two"]))


@pytest.mark.slow
def test_max_tokens_cuts_with_finish_reason_length_and_stop_cuts_the_text(client):
    cut = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hello"}], max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
    full = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}])
    word = full.choices[0].message.content.split()[2]
    stopped = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], stop=[word])
    assert stopped.choices[0].message.content == " ".join(full.choices[0].message.content.split()[:2])
    assert stopped.choices[0].finish_reason == "stop"


@pytest.mark.slow
def test_a_system_message_is_stored_but_does_not_condition_the_reply(client, server, checkpoint):
    answer = client.chat.completions.create(
        model="scripted", messages=[{"role": "system", "content": "you are a pirate"}, {"role": "user", "content": "ahoy"}]
    )
    assert answer.choices[0].message.content == expected_reply(checkpoint, ["ahoy"])
    store = ConversationStore(server.db)
    assert store.get_conversation(answer.model_extra["conversation_id"]).system_prompt == "you are a pirate"
    store.close()


def test_control_characters_are_cleaned_and_said(client, server):
    answer = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "red \x1b[31malert\x07 now"}])
    assert any("removed" in note for note in answer.model_extra["notes"])
    store = ConversationStore(server.db)
    assert store.turns(answer.model_extra["conversation_id"])[0].text == "red alert now"
    store.close()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"n": 99}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100000}, "max_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "\x1b[31m\x00"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"seed": 2**40}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(client, changes, field):
    request = {"model": "scripted", "messages": [{"role": "user", "content": "hello"}], **changes}
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(**request)
    body = error.value.body
    assert error.value.status_code == 400 and body["type"] == "invalid_request_error" and body["message"]
    assert field in (body.get("param") or "") + body["message"]
    assert "Traceback" not in body["message"]


def test_unknown_model_and_conversation_are_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["code"] == "model_not_found" and error.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], extra_body={"conversation_id": 999_999}
        )


def test_a_body_over_the_limit_is_413(client):
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "x" * 1_100_000}])
    assert error.value.status_code == 413 and error.value.body["code"] == "request_too_large"


def test_malformed_json_and_wrong_types_are_400_without_a_trace(server):
    for body, expected in ((b'{"model": "scripted", "messages": [', "not valid JSON"), (b'{"model": 5, "messages": "hi"}', "")):
        response = httpx.post(f"{server.api}/chat/completions", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert expected in error["message"] and error["type"] == "invalid_request_error" and "Traceback" not in response.text


def test_an_idempotency_key_returns_the_first_result_instead_of_storing_twice(client, server):
    messages = [{"role": "user", "content": "idempotent hello"}]
    headers = {"Idempotency-Key": "request-1"}
    first = client.chat.completions.create(model="scripted", messages=messages, extra_headers=headers)
    again = client.chat.completions.with_raw_response.create(model="scripted", messages=messages, extra_headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.parse().id == first.id
    store = ConversationStore(server.db)
    assert len(store.turns(first.model_extra["conversation_id"])) == 2
    store.close()
    with pytest.raises(openai.BadRequestError, match="different request"):
        client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "other"}], extra_headers=headers)
    # a key per request (good practice): resending an answered history with a new key is a new request, a regenerate
    history = [*messages, {"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "more"}]
    second = client.chat.completions.create(model="scripted", messages=history, extra_headers={"Idempotency-Key": "request-2"})
    regenerated = client.chat.completions.create(model="scripted", messages=history, extra_headers={"Idempotency-Key": "request-3"})
    assert regenerated.id != second.id and regenerated.model_extra["conversation_id"] == second.model_extra["conversation_id"]


def test_a_retry_of_the_openai_client_gets_the_stored_reply_back(client, server):
    """Without a key, a request the client marks as its retry (x-stainless-retry-count) of messages already
    answered gets that answer; a plain resend (a regenerate button) gets a fresh alternative."""
    messages = [{"role": "user", "content": "was my request lost?"}]
    first = client.chat.completions.create(model="scripted", messages=messages, seed=1)
    retried = client.chat.completions.create(model="scripted", messages=messages, extra_headers={"x-stainless-retry-count": "1"})
    assert retried.id == first.id and retried.choices[0].message.content == first.choices[0].message.content
    history = [*messages, {"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "and now?"}]
    second = client.chat.completions.create(model="scripted", messages=history, seed=2)
    again = client.chat.completions.create(model="scripted", messages=history, extra_headers={"x-stainless-retry-count": "2"})
    resent = client.chat.completions.create(model="scripted", messages=history, seed=3)
    assert again.id == second.id and resent.id != second.id
    conversation = first.model_extra["conversation_id"]
    assert {second.model_extra["conversation_id"], again.model_extra["conversation_id"], resent.model_extra["conversation_id"]} == {
        conversation
    }
    store = ConversationStore(server.db)
    assert len(store.turns(conversation)) == 4 and len(store.tree(conversation)) == 5  # the resend: an alternative reply
    store.close()


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_leaves_the_reply_stored_whole(server, checkpoint):
    body = {"model": "scripted", "messages": [{"role": "user", "content": "i will hang up"}], "stream": True}
    with httpx.stream("POST", f"{server.api}/chat/completions", json=body, timeout=30) as response:
        conversation = int(response.headers["conversation-id"])
        next(response.iter_lines())  # the first event, then the connection is dropped
    store = ConversationStore(server.db)
    deadline = time.monotonic() + 30
    while len(store.turns(conversation)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.text for t in store.turns(conversation)] == ["i will hang up", expected_reply(checkpoint, ["i will hang up"])]
    store.close()
    assert httpx.get(f"{server.url}/health").status_code == 200  # the worker moved on
