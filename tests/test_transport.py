"""GraphQLClient against an in-process fake endpoint: auth header, retries, error mapping."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Literal

import pytest

from fakes_graphql import FakeGraphQLServer, Reply
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import DeadlineExceeded, ReadError, TransportError, WriteError
from metrics_agg.graphql.transport import GraphQLClient, is_throttling_error_type

API_KEY = "da2-SECRETKEYabcdef0123456789"
DOC = "query Probe($x: String) { probe(x: $x) }"
OK = {"data": {"probe": "fine"}}


@pytest.fixture
def server() -> Iterator[FakeGraphQLServer]:
    with FakeGraphQLServer(lambda payload, seen: OK) as srv:
        yield srv


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    server: FakeGraphQLServer, sleeps: Sleeps | None = None, **knobs: object
) -> GraphQLClient:
    config = Config(
        endpoint=server.endpoint, api_key=API_KEY, max_attempts=4, request_timeout=2.0
    ).with_(**knobs)
    return GraphQLClient(
        config, sleep=sleeps if sleeps is not None else Sleeps(), jitter=lambda: 0.5
    )


def test_sends_api_key_and_json_and_decodes(server: FakeGraphQLServer) -> None:
    with make_client(server) as client:
        resp = client.execute(DOC, {"x": "1"}, kind="read")
        assert resp.data == {"probe": "fine"} and resp.errors == ()
        client.execute(DOC, kind="read")
        assert client.request_count == 2
    seen = server.requests[0]
    assert seen.headers["x-api-key"] == API_KEY
    assert seen.headers["content-type"] == "application/json"
    assert seen.payload == {"query": DOC, "variables": {"x": "1"}}
    assert seen.path == "/graphql"


@pytest.mark.parametrize(
    "fault",
    [
        Reply(503, {"message": "unavailable"}),
        Reply(500, b"<html>oops</html>"),
        Reply(429, {"errors": [{"errorType": "TooManyRequestsException", "message": "slow"}]}),
        Reply(
            200,
            {
                "data": None,
                "errors": [{"errorType": "ThrottlingException", "message": "Rate exceeded"}],
            },
        ),
        Reply(
            200,
            {
                "data": {"probe": None},
                "errors": [
                    {"errorType": "DynamoDB:ProvisionedThroughputExceededException", "message": "x"}
                ],
            },
        ),
        Reply(
            200,
            {"data": None, "errors": [{"errorType": "LimitExceededException", "message": "limit"}]},
        ),
        Reply(200, b'{"data": {"probe": '),
        Reply(200, b"[1, 2]"),
        Reply(action="reset"),
    ],
    ids=[
        "503",
        "500-html",
        "429",
        "throttling",
        "dynamo-throughput",
        "limit-exceeded",
        "truncated-json",
        "not-an-object",
        "reset",
    ],
)
def test_transient_faults_are_retried(server: FakeGraphQLServer, fault: Reply) -> None:
    server.script = [fault, fault]
    sleeps = Sleeps()
    with make_client(server, sleeps) as client:
        assert client.execute(DOC, kind="read").data == {"probe": "fine"}
        assert client.request_count == 3
    # Full jitter: uniform(0, base * 2**(n-1)); jitter pinned at 0.5 here.
    assert sleeps == pytest.approx([0.05, 0.1])


def test_throughput_error_type_is_throttling() -> None:
    assert is_throttling_error_type("DynamoDB:ProvisionedThroughputExceededException")
    assert is_throttling_error_type("RequestLimitExceeded")
    assert is_throttling_error_type("ThrottlingException")
    assert is_throttling_error_type("DynamoDB:ThrottlingException")
    assert is_throttling_error_type("TooManyRequestsException")
    assert is_throttling_error_type("LimitExceededException")
    assert not is_throttling_error_type("DynamoDB:ConditionalCheckFailedException")
    assert not is_throttling_error_type(None)


def test_retry_after_is_honoured(server: FakeGraphQLServer) -> None:
    server.script = [Reply(429, {}, headers={"Retry-After": "1.5"})]
    sleeps = Sleeps()
    with make_client(server, sleeps) as client:
        client.execute(DOC, kind="read")
    assert sleeps == [1.5]


def test_retry_after_beyond_deadline_raises_without_sleeping(server: FakeGraphQLServer) -> None:
    server.script = [Reply(429, {}, headers={"Retry-After": "30"})]
    sleeps = Sleeps()
    with make_client(server, sleeps) as client, pytest.raises(DeadlineExceeded) as info:
        client.execute(DOC, kind="read", deadline=Deadline.after(5))
    assert sleeps == []
    assert info.value.status == 429 and info.value.attempts == 1
    assert isinstance(info.value, TransportError)


def test_expired_deadline_sends_nothing(server: FakeGraphQLServer) -> None:
    with make_client(server) as client, pytest.raises(DeadlineExceeded):
        client.execute(DOC, kind="write", deadline=Deadline.after(0))
    assert client.request_count == 0


def test_exhausted_retries_map_to_read_error(server: FakeGraphQLServer) -> None:
    server.script = [Reply(502, {})] * 4
    with make_client(server) as client, pytest.raises(ReadError) as info:
        client.execute(DOC, kind="read")
    err = info.value
    assert err.status == 502 and err.attempts == 4 and client.request_count == 4
    assert err.__cause__ is not None
    assert "502" in str(err) and "Probe" in str(err)


def test_exhausted_retries_on_write_map_to_write_error(server: FakeGraphQLServer) -> None:
    server.script = [Reply(action="reset")] * 2
    with make_client(server, max_attempts=2) as client, pytest.raises(WriteError) as info:
        client.execute("mutation M { m }", kind="write")
    assert info.value.status is None and info.value.attempts == 2
    assert info.value.__cause__ is not None


def test_timeout_is_a_retryable_connection_error(server: FakeGraphQLServer) -> None:
    server.script = [Reply(action="hang", hang_seconds=3)] * 2
    with (
        make_client(server, max_attempts=2, request_timeout=0.2) as client,
        pytest.raises(ReadError) as info,
    ):
        client.execute(DOC, kind="read")
    assert "connection error" in str(info.value) and info.value.attempts == 2


def test_unauthorized_is_not_retried(server: FakeGraphQLServer) -> None:
    denied = {
        "errorType": "UnauthorizedException",
        "message": "You are not authorized to make this call.",
    }
    server.script = [Reply(401, {"errors": [denied]})]
    with make_client(server) as client, pytest.raises(ReadError) as info:
        client.execute(DOC, kind="read")
    assert client.request_count == 1
    assert info.value.status == 401
    assert info.value.error_types == ("UnauthorizedException",)


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("API key has expired.", "the AppSync API key has expired"),
        # What AppSync usually answers to an expired or deleted key: nothing more specific.
        ("You are not authorized to make this call.", "the AppSync API key was rejected"),
    ],
)
@pytest.mark.parametrize("kind", ["read", "write"])
def test_rejected_api_key_is_reported_as_such(
    server: FakeGraphQLServer, message: str, verdict: str, kind: Literal["read", "write"]
) -> None:
    server.script = [
        Reply(401, {"errors": [{"errorType": "UnauthorizedException", "message": message}]})
    ]
    with make_client(server) as client, pytest.raises(TransportError) as info:
        client.execute(DOC, kind=kind)
    assert isinstance(info.value, ReadError if kind == "read" else WriteError)
    assert client.request_count == 1  # not retried: a key does not come back by itself
    text = str(info.value)
    assert verdict in text and "UnauthorizedException" in text and "docs/deployment.md" in text
    assert API_KEY not in text


def test_iam_401_is_not_called_an_api_key_problem(server: FakeGraphQLServer) -> None:
    class Signed:
        def headers(
            self, method: str, url: str, body: bytes, headers: Mapping[str, str]
        ) -> dict[str, str]:
            return {**headers, "authorization": "AWS4-HMAC-SHA256 test"}

    denied = {"errorType": "UnauthorizedException", "message": "not authorized"}
    server.script = [Reply(401, {"errors": [denied]})]
    config = Config(endpoint=server.endpoint, max_attempts=2)
    with GraphQLClient(config, auth=Signed()) as client, pytest.raises(ReadError) as info:
        client.execute(DOC, kind="read")
    assert "API key" not in str(info.value) and "HTTP 401" in str(info.value)


def test_graphql_error_on_read_keeps_type_and_path(server: FakeGraphQLServer) -> None:
    server.script = [
        Reply(
            200,
            {
                "data": {"probe": None},
                "errors": [
                    {
                        "errorType": "DynamoDB:DynamoDbException",
                        "message": "boom",
                        "path": ["probe", 0],
                    }
                ],
            },
        )
    ]
    with make_client(server) as client, pytest.raises(ReadError) as info:
        client.execute(DOC, kind="read")
    (err,) = info.value.errors
    assert (err.message, err.error_type, err.path) == (
        "boom",
        "DynamoDB:DynamoDbException",
        ("probe", 0),
    )
    assert client.request_count == 1


def test_write_returns_alias_errors(server: FakeGraphQLServer) -> None:
    body = {
        "data": {"a0": {"id": 1}, "a1": None},
        "errors": [
            {
                "errorType": "DynamoDB:ConditionalCheckFailedException",
                "message": "cond",
                "path": ["a1"],
                "data": None,
            }
        ],
    }
    server.script = [Reply(200, body)]
    with make_client(server) as client:
        resp = client.execute("mutation M { a0: m a1: m }", kind="write")
    assert resp.data == {"a0": {"id": 1}, "a1": None}
    assert resp.errors[0].is_conditional_check_failed and resp.errors[0].path == ("a1",)


def test_write_rejected_as_a_whole_raises(server: FakeGraphQLServer) -> None:
    server.script = [
        Reply(400, {"errors": [{"errorType": "ValidationError", "message": "bad"}]}),
        Reply(200, {"data": None, "errors": [{"message": "Validation error"}]}),
    ]
    with make_client(server) as client:
        with pytest.raises(WriteError) as info:
            client.execute("mutation M { m }", kind="write")
        assert info.value.status == 400 and info.value.error_types == ("ValidationError",)
        with pytest.raises(WriteError):
            client.execute("mutation M { m }", kind="write")
        assert client.request_count == 2


def test_no_secret_in_logs_or_exceptions(
    server: FakeGraphQLServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script = [
        Reply(500, {"message": "x"}),
        Reply(action="reset"),
        Reply(429, {}),
        Reply(401, {"errors": [{"errorType": "UnauthorizedException", "message": "no"}]}),
        *[Reply(503, {})] * 4,
    ]
    failures: list[BaseException] = []
    with make_client(server, max_attempts=4) as client:
        for kind in ("read", "write"):
            try:
                client.execute(DOC, {"x": "y"}, kind=kind)  # type: ignore[arg-type]
            except TransportError as exc:
                failures.append(exc)
        assert API_KEY not in repr(client) and API_KEY not in repr(client.config)
    assert len(failures) == 2 and caplog.records
    texts = [caplog.text] + [
        part
        for exc in failures
        for part in (
            str(exc),
            repr(exc),
            str(exc.__cause__),
            repr(exc.__cause__),
            *(repr(e) for e in exc.errors),
        )  # type: ignore[attr-defined]
    ]
    for text in texts:
        assert API_KEY not in text
        assert "x-api-key" not in text.lower()
