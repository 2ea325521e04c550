"""The Lambda cold-start helpers: log level, config, the API key from Secrets Manager."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from metrics_agg.aggregator.lambda_support import configure_logging, load_config
from metrics_agg.errors import ConfigError

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:plexus-api-key-AbCdEf"
ENV = {"PLEXUS_API_URL": "https://abc.appsync-api.us-east-1.amazonaws.com/graphql"}


class _FakeSecrets:
    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"SecretString": self.answer}


@pytest.fixture()
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_FakeSecrets]]:
    """Route botocore's secretsmanager client to a fake; the test sets its answer."""
    made: list[_FakeSecrets] = []

    class Session:
        def create_client(self, service: str, region_name: str | None = None) -> _FakeSecrets:
            assert service == "secretsmanager"
            assert region_name == "us-east-1"
            return made[-1]

    monkeypatch.setattr(botocore.session, "get_session", Session)
    yield made


@pytest.fixture()
def metrics_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("metrics_agg")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, logging.INFO), ("debug", logging.DEBUG), ("WARNING", logging.WARNING),
     ("chatty", logging.INFO)],
)  # fmt: skip
def test_log_level_from_env(metrics_logger: logging.Logger, value: str | None, level: int) -> None:
    configure_logging({} if value is None else {"LOG_LEVEL": value})
    assert metrics_logger.level == level


def test_no_key_and_no_secret_means_iam(secrets: list[_FakeSecrets]) -> None:
    config = load_config({**ENV, "PLEXUS_API_KEY_SECRET_ARN": ""})
    assert config.auth_mode == "iam"
    assert secrets == []  # Secrets Manager never asked


def test_a_key_in_the_environment_wins_over_the_secret(secrets: list[_FakeSecrets]) -> None:
    env = {**ENV, "PLEXUS_API_KEY": "da2-direct", "PLEXUS_API_KEY_SECRET_ARN": SECRET_ARN}
    assert load_config(env).api_key == "da2-direct"
    assert secrets == []


@pytest.mark.parametrize("stored", ["da2-fromsecret\n", '{"apiKey": "da2-fromsecret"}'])
def test_key_read_once_from_the_secret(secrets: list[_FakeSecrets], stored: str) -> None:
    secrets.append(_FakeSecrets(stored))
    env = {**ENV, "PLEXUS_API_KEY_SECRET_ARN": SECRET_ARN, "AWS_REGION": "us-east-1"}
    config = load_config(env)
    assert (config.api_key, config.auth_mode) == ("da2-fromsecret", "api_key")
    assert secrets[0].calls == [{"SecretId": SECRET_ARN}]


@pytest.mark.parametrize("stored", ["", "  ", '{"key": "da2-wrongfield"}', "{not json"])
def test_secret_without_a_key_is_a_config_error(secrets: list[_FakeSecrets], stored: str) -> None:
    secrets.append(_FakeSecrets(stored))
    env = {**ENV, "PLEXUS_API_KEY_SECRET_ARN": SECRET_ARN, "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match="holds no API key") as info:
        load_config(env)
    assert "da2-wrongfield" not in str(info.value)


def test_unreadable_secret_is_a_config_error(secrets: list[_FakeSecrets]) -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetSecretValue")
    secrets.append(_FakeSecrets(denied))
    env = {**ENV, "PLEXUS_API_KEY_SECRET_ARN": SECRET_ARN, "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match=r"cannot read the API key secret .*ClientError"):
        load_config(env)
