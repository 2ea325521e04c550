"""IAM auth: our SigV4 headers are botocore's own, on a fixed request and a frozen clock."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys

import botocore.auth
import pytest
from botocore.auth import SigV4Auth as BotoSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fakes_graphql import FakeGraphQLServer
from metrics_agg.config import Config
from metrics_agg.errors import ConfigError
from metrics_agg.graphql.auth import SigV4Auth, auth_for
from metrics_agg.graphql.transport import GraphQLClient

ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN=="
URL = "https://abc123.appsync-api.eu-west-2.amazonaws.com/graphql"
BODY = b'{"query":"query Q { q }","variables":{}}'
FROZEN = dt.datetime(2024, 5, 1, 12, 34, 56)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)


def botocore_headers(
    url: str, body: bytes, headers: dict[str, str], creds: Credentials, region: str
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    BotoSigV4(creds, "appsync", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [TOKEN, None], ids=["session-token", "long-term"])
def test_headers_equal_botocore_signer(token: str | None) -> None:
    creds = Credentials(ACCESS, SECRET, token)
    base = {"content-type": "application/json", "accept": "application/json"}
    ours = SigV4Auth("eu-west-2", creds).headers("POST", URL, BODY, base)
    assert ours == botocore_headers(URL, BODY, base, creds, "eu-west-2")
    assert ours["X-Amz-Date"] == "20240501T123456Z"
    assert ours["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS}/20240501/eu-west-2/appsync/aws4_request, "
    )
    assert ours.get("X-Amz-Security-Token") == token


def test_region_from_endpoint_and_default_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    auth = auth_for(Config(endpoint=URL))
    assert isinstance(auth, SigV4Auth) and auth.region == "eu-west-2"
    headers = auth.headers("POST", URL, BODY, {"content-type": "application/json"})
    assert headers["X-Amz-Security-Token"] == TOKEN
    assert headers == botocore_headers(
        URL,
        BODY,
        {"content-type": "application/json"},
        Credentials(ACCESS, SECRET, TOKEN),
        "eu-west-2",
    )
    assert SECRET not in repr(auth) and TOKEN not in repr(auth)


def test_no_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="credentials"):
        auth_for(Config(endpoint=URL))


def test_iam_without_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="region"):
        auth_for(Config(endpoint="http://127.0.0.1:1/graphql"))


def test_signed_request_on_the_wire_verifies(caplog: pytest.LogCaptureFixture) -> None:
    """What the server receives is exactly what was signed (host with port, body)."""
    caplog.set_level(logging.DEBUG)
    creds = Credentials(ACCESS, SECRET, TOKEN)
    with FakeGraphQLServer(lambda p, s: {"data": {"q": 1}}) as server:
        config = Config(endpoint=server.endpoint, region="us-east-1")
        with GraphQLClient(config, auth=SigV4Auth("us-east-1", creds)) as client:
            client.execute("query Q { q }", kind="read")
    seen = server.requests[0]
    auth_header = seen.headers["authorization"]
    signed = auth_header.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" in signed and "x-amz-security-token" in signed
    resigned = botocore_headers(
        f"http://{seen.headers['host']}{seen.path}",
        seen.raw,
        {
            h: seen.headers[h]
            for h in signed
            if h not in ("host", "x-amz-date", "x-amz-security-token")
        },
        creds,
        "us-east-1",
    )
    assert resigned["Authorization"] == auth_header
    for secret in (SECRET, TOKEN, auth_header.split("Signature=")[1]):
        assert secret not in caplog.text


def test_botocore_and_sgqlc_are_not_imported_eagerly() -> None:
    code = (
        "import sys, metrics_agg.graphql.api, metrics_agg.graphql.transport\n"
        "print(sorted(m for m in ('botocore', 'sgqlc') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
