"""Schemathesis against the server's own OpenAPI document (/openapi.json): generated requests to every
route, valid (positive) and invalid (negative), on random ids and on a conversation that exists, must
never get a 5xx, and every response must match the documented status codes, content types and schemas."""

from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from serving import running

pytestmark = pytest.mark.slow  # hundreds of generated requests

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12  # per operation, mode and kind of ids


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    # The fuzz sends one request at a time, so no batch ever forms (tests/serving.py).
    with running(tmp_path_factory.mktemp("schema"), "--busy-wait", "2") as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(served):
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_5xx_and_every_response_as_documented(api_schema, served, mode):
    statuses: collections.Counter = collections.Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # every route is documented

    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        kinds = ({}, {name: existing(served)[name] for name in names}) if names else ({},)  # random ids, then real ones
        for ids in kinds:
            fuzz(operation, operation.as_strategy(generation_mode=mode, path_parameters=ids or None), served.url, statuses, bool(ids))
    reached = {label for (label, status) in statuses if status == 200}
    if mode == schemathesis.GenerationMode.POSITIVE:  # valid requests got past validation into every handler
        assert {"POST /v1/chat/completions", "POST /v1/conversations/{conversation_id}/messages"} <= reached, statuses


def existing(served) -> dict[str, int]:
    """Ids of a new conversation with an exchange of two candidates (the fuzzing may delete it)."""
    conversation = httpx.post(f"{served.api}/conversations", json={"title": "fuzzed"}).json()["id"]
    exchange = httpx.post(f"{served.api}/conversations/{conversation}/messages", json={"content": "hello", "n": 2}).json()
    return {"conversation_id": conversation, "turn_id": exchange["reply"]["id"], "number": 1}


def fuzz(operation, strategy, base_url: str, statuses: collections.Counter, fixed_ids: bool) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def run(data):
        case = data.draw(strategy)
        if operation.label == "POST /v1/chat/completions" and isinstance(case.body, dict) and data.draw(st.booleans()):
            case.body["model"] = "scripted"  # past the model check and the message checks, into the reply path
            case.body["messages"] = [{"role": "user", "content": "hello"}]
            case.body.pop("conversation_id", None)
        response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)
        statuses[(operation.label, response.status_code)] += 1

    try:
        run()
    except Unsatisfiable:  # negative mode with nothing left to make invalid (no inputs, or only the ids given)
        assert (fixed_ids or not operation.path_parameters) and not operation.query and not operation.body, operation.label
