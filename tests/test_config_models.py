"""Configuration from the environment and the data-contract helpers of models.py."""

from datetime import UTC, datetime

import pytest

from metrics_agg.config import Config
from metrics_agg.errors import ConfigError
from metrics_agg.models import SOURCE_MODELS, BucketKey, model_for_table


def test_endpoint_and_key_from_either_variable() -> None:
    c = Config.from_env({"GRAPHQL_ENDPOINT": "https://x/graphql", "GRAPHQL_API_KEY": "k"})
    assert (c.endpoint, c.api_key, c.auth_mode) == ("https://x/graphql", "k", "api_key")
    c = Config.from_env({"PLEXUS_API_URL": "https://p/graphql", "GRAPHQL_ENDPOINT": "https://g"})
    assert c.endpoint == "https://p/graphql"
    assert c.auth_mode == "iam"


def test_missing_endpoint_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="PLEXUS_API_URL"):
        Config.from_env({})


def test_api_key_never_in_repr() -> None:
    c = Config.from_env({"PLEXUS_API_URL": "https://x", "PLEXUS_API_KEY": "da2-secretsecret"})
    assert "da2-secretsecret" not in repr(c)
    assert "da2-secretsecret" not in str(c)


def test_region_from_appsync_host() -> None:
    c = Config(endpoint="https://abc.appsync-api.eu-west-1.amazonaws.com/graphql")
    assert c.signing_region == "eu-west-1"
    with pytest.raises(ConfigError, match="region"):
        _ = Config(endpoint="http://127.0.0.1:8765/graphql").signing_region


CUSTOM_DOMAIN = "https://metrics.example.com/graphql"  # names no region


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"AWS_REGION": "eu-central-1"}, "eu-central-1"),  # Lambda sets it: the fallback
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "eu-central-1", "METRICS_AGG_REGION": "us-east-2"}, "us-east-2"),
    ],
)
def test_signing_region_for_a_custom_domain(env: dict[str, str], region: str) -> None:
    config = Config.from_env({"PLEXUS_API_URL": CUSTOM_DOMAIN, **env})
    assert config.signing_region == region


def test_appsync_host_region_wins_over_the_default_region() -> None:
    url = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
    assert Config.from_env({"PLEXUS_API_URL": url, "AWS_REGION": "us-east-1"}).signing_region == (
        "eu-west-1"
    )


def test_no_region_names_the_variables_that_are_read() -> None:
    with pytest.raises(ConfigError, match="METRICS_AGG_REGION") as info:
        _ = Config.from_env({"PLEXUS_API_URL": CUSTOM_DOMAIN}).signing_region
    assert "AWS_REGION" in str(info.value)


def test_numeric_knobs_are_validated() -> None:
    env = {"PLEXUS_API_URL": "https://x", "METRICS_AGG_MAX_HOURS_BACK": "48"}
    assert Config.from_env(env).max_hours_back == 48
    with pytest.raises(ConfigError, match="METRICS_AGG_MAX_HOURS_BACK"):
        Config.from_env({**env, "METRICS_AGG_MAX_HOURS_BACK": "two days"})


def test_schedule_accounts_counter_and_emf_are_config() -> None:
    base = {"PLEXUS_API_URL": "http://h/graphql"}
    plain = Config.from_env(base)
    assert (plain.account_ids, plain.counter_backend, plain.emf_stdout) == ((), "auto", False)
    env = {
        **base,
        "METRICS_AGG_ACCOUNT_IDS": "a, b,,c ",
        "METRICS_AGG_COUNTER": "Python",
        "METRICS_AGG_EMF": "1",
    }
    config = Config.from_env(env)
    assert config.account_ids == ("a", "b", "c")
    assert config.counter_backend == "python" and config.emf_stdout
    assert Config.from_env({**base, "AWS_LAMBDA_FUNCTION_NAME": "fn"}).emf_stdout
    with pytest.raises(ConfigError, match="METRICS_AGG_COUNTER"):
        Config.from_env({**base, "METRICS_AGG_COUNTER": "fortran"})


@pytest.mark.parametrize(
    ("table", "model"),
    [
        ("Item-abc123-NONE", "Item"),
        ("ScoreResult-abc123-prod", "ScoreResult"),
        ("FeedbackItem-x-y", "FeedbackItem"),
        ("ItemX-abc-NONE", None),  # exact prefix, not a substring match
        ("Items-abc-NONE", None),
        ("AggregatedMetrics-abc-NONE", None),
        ("item-abc-NONE", None),
    ],
)
def test_model_from_table_name_is_exact(table: str, model: str | None) -> None:
    spec = model_for_table(table)
    assert (spec.name if spec else None) == model


def test_thirteen_record_types() -> None:
    types = [t for spec in SOURCE_MODELS.values() for t in spec.record_types]
    assert len(types) == len(set(types)) == 13


def test_composite_keys() -> None:
    start = datetime(2024, 3, 1, 13, 5, tzinfo=UTC)
    assert BucketKey("a", "items", start, 5).composite_key == "items#2024-03-01T13:05:00Z#5"
    assert (
        BucketKey("a", "feedbackItemsByScorecard", start, 60, "sc1").composite_key
        == "feedbackItemsByScorecard#sc1#2024-03-01T13:05:00Z#60"
    )
    assert (
        BucketKey("a", "feedbackItemsByScore", start, 1, "sc1", "s9").composite_key
        == "feedbackItemsByScore#s9#2024-03-01T13:05:00Z#1"
    )
