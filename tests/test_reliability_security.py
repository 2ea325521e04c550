"""Security (issue 6): loopback by default, constant-time key check, and no secret in the
pipeline's human log, its EMF line, its response or its errors, with API-key and IAM auth.

(The transport-level checks are in test_transport.py; SigV4 against botocore in
test_sigv4.py.)
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.config import Config
from metrics_agg.local.server import LocalClient, LocalStack
from reliability_harness import Direct
from truth_helpers import Stream, iso, recent_now

API_KEY = "da2-TOPSECRETkey0123456789abcdef"
ACCESS_KEY = "AKIAIOSFODNN7SECRETX"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLESESSIONTOKENsecret0123456789"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "sec.sqlite3", mapping=False, api_key=API_KEY) as s:
        yield s


def test_binds_loopback_by_default(stack: LocalStack) -> None:
    import inspect

    from metrics_agg.local.cli import _server

    assert inspect.signature(LocalStack).parameters["host"].default == "127.0.0.1"
    assert stack._sock is not None and stack._sock.getsockname()[0] == "127.0.0.1"
    assert 'default="127.0.0.1"' in inspect.getsource(_server)


def test_api_key_compared_in_constant_time(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with LocalClient(stack.endpoint, "da2-wrong") as bad:
        status, _ = bad.post("query { __typename }")
    with LocalClient(stack.endpoint, API_KEY) as good:
        ok, _ = good.post("query { __typename }")
    assert (status, ok) == (401, 200)
    assert (b"da2-wrong", API_KEY.encode()) in seen and (API_KEY.encode(),) * 2 in seen


def _event(stack: LocalStack) -> dict[str, Any]:
    direct, now = Direct(stack.store), recent_now()
    for i in range(3):
        direct.create("Item", accountId="acct-sec", createdAt=iso(now - timedelta(minutes=i)))
    return {"Records": Stream(stack).take("Item")}


def _run_failing(
    stack: LocalStack,
    config: Config,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Every output of failing invocations: human log (all loggers, DEBUG), EMF, responses."""
    config = config.with_(emf_stdout=True)  # the EMF line goes to stdout, as in Lambda
    caplog.set_level(logging.DEBUG)
    event = _event(stack)
    outputs = []
    for action in ("http_500", "reset", "malformed_json", "graphql_error", "http_403"):
        stack.faults.clear()
        stack.faults.add(action=action, times=None)
        outputs.append(repr(pipeline.handle_event(event, config=config)))
    stack.faults.clear()
    outputs.append(repr(pipeline.handle_event(event, config=config)))
    captured = capsys.readouterr()
    assert '"FailedUnits":1' in captured.out, "the EMF line was not captured"
    assert "PARTIAL" in caplog.text
    return "\n".join([caplog.text, captured.out, captured.err, *outputs])


def test_api_key_never_in_logs_emf_or_responses(
    stack: LocalStack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _run_failing(stack, stack.config(max_attempts=2), capsys, caplog, monkeypatch)
    assert API_KEY not in text and "x-api-key" not in text.lower()
    # and with a wrong key (401 on every request), the key sent is not echoed either
    wrong = stack.config(max_attempts=2).with_(api_key="da2-WRONGsecret999")
    out = repr(pipeline.handle_event(_event(stack), config=wrong))
    assert "WRONGsecret" not in caplog.text + out + capsys.readouterr().out


def test_aws_credentials_and_signed_headers_never_in_logs_emf_or_responses(
    stack: LocalStack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    # IAM auth (no key): the local server answers 401 to every signed request.
    config = Config(endpoint=stack.endpoint, region="us-east-1", max_attempts=2)
    text = _run_failing(stack, config, capsys, caplog, monkeypatch)
    for secret in (
        ACCESS_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        "Signature=",
        "X-Amz-Security-Token",
        "Credential=",
    ):
        assert secret.lower() not in text.lower(), secret
