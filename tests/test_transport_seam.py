"""GraphQLClient over a MockTransport: retries, error mapping and the one retry policy,
without sockets (issue 11, item 4)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from metrics_agg.config import Config
from metrics_agg.errors import ReadError, WriteError
from metrics_agg.graphql.http import (
    ConnectionFailed,
    HttpRequest,
    HttpResponse,
    MockTransport,
    Urllib3Transport,
)
from metrics_agg.graphql.retry import RetryPolicy
from metrics_agg.graphql.transport import GraphQLClient

CONFIG = Config(endpoint="https://api.example.test/graphql", api_key="da2-key", max_attempts=4)
DOC = "query Probe { probe }"
OK = HttpResponse(200, json.dumps({"data": {"probe": "fine"}}).encode())


def client(transport: MockTransport, sleeps: list[float], **knobs: object) -> GraphQLClient:
    return GraphQLClient(
        CONFIG.with_(**knobs), transport=transport, sleep=sleeps.append, jitter=lambda: 0.5
    )


def scripted(*replies: HttpResponse | ConnectionFailed) -> MockTransport:
    queue = list(replies)

    def handler(request: HttpRequest) -> HttpResponse:
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, ConnectionFailed):
            raise reply
        return reply

    return MockTransport(handler)


def test_transient_failures_are_retried_with_the_policys_pauses() -> None:
    transport = scripted(HttpResponse(503), ConnectionFailed("connection error (reset)"), OK)
    sleeps: list[float] = []
    with client(transport, sleeps) as c:
        assert c.execute(DOC, kind="read").data == {"probe": "fine"}
        assert c.request_count == 3
    policy = RetryPolicy.from_config(CONFIG)
    assert sleeps == [policy.delay(1, 0.5), policy.delay(2, 0.5)] == [0.05, 0.1]
    sent = transport.requests[0]
    assert sent.url == CONFIG.endpoint and sent.headers["x-api-key"] == "da2-key"
    assert json.loads(sent.body) == {"query": DOC, "variables": {}}


def test_exhausted_retries_map_to_the_kinds_error() -> None:
    sleeps: list[float] = []
    down = scripted(ConnectionFailed("connection error (NewConnectionError)"))
    with client(down, sleeps) as c, pytest.raises(ReadError) as info:
        c.execute(DOC, kind="read")
    assert info.value.attempts == 4 and info.value.status is None
    assert "connection error" in str(info.value) and len(down.requests) == 4
    busy = scripted(HttpResponse(503, b'{"errors": [{"errorType": "Busy", "message": "x"}]}'))
    with client(busy, sleeps) as c, pytest.raises(WriteError) as winfo:
        c.execute("mutation M { m }", kind="write")
    assert winfo.value.status == 503 and winfo.value.error_types == ("Busy",)


def test_permanent_failures_are_not_retried() -> None:
    sleeps: list[float] = []
    bad_url = scripted(ConnectionFailed("invalid endpoint URL", retryable=False))
    with client(bad_url, sleeps) as c, pytest.raises(ReadError, match="not retryable"):
        c.execute(DOC, kind="read")
    rejected = scripted(
        HttpResponse(401, b'{"errors": [{"errorType": "UnauthorizedException", "message": "no"}]}')
    )
    with client(rejected, sleeps) as c, pytest.raises(ReadError) as info:
        c.execute(DOC, kind="read")
    assert info.value.status == 401 and len(rejected.requests) == 1
    assert sleeps == [] and "da2-key" not in str(info.value)


def test_retry_after_is_a_floor_and_the_cap_a_ceiling() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.1, backoff_cap=1.0)
    assert policy.delay(1, 0.5) == 0.05
    assert policy.delay(10, 0.999) <= 1.0
    assert policy.delay(1, 0.5, retry_after=2.0) == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    throttled = scripted(HttpResponse(429, headers={"retry-after": "0.7"}), OK)
    sleeps: list[float] = []
    with client(throttled, sleeps) as c:
        c.execute(DOC, kind="read")
    assert sleeps == [0.7]


def test_the_writers_own_rounds_use_the_same_policy() -> None:
    sleeps: list[float] = []
    with client(scripted(OK), sleeps, max_attempts=3) as c:
        assert c.retry == RetryPolicy(max_attempts=3)
        assert c.pause_before_retry(1) and c.pause_before_retry(2)
        assert not c.pause_before_retry(3)  # attempts used up: no pause, no retry
    assert sleeps == [c.retry.delay(1, 0.5), c.retry.delay(2, 0.5)]


def test_the_real_transport_reports_an_invalid_url_as_permanent() -> None:
    transport = Urllib3Transport(pool_size=1)
    with pytest.raises(ConnectionFailed) as info:
        transport.send(HttpRequest("http://", b"{}", {}, 1.0))
    assert not info.value.retryable and "invalid endpoint URL" in info.value.reason
    transport.close()
