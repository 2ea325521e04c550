"""errorCount (issue 13): configuration, end to end through the local stack (upstream's
conventions and overrides), and the incremental path's self-check and derived sizes.
The rules inside the counters: test_error_rules.py.

The end-to-end checks compare with `truth_helpers`, whose error predicates are written
from docs/design.md §2 alone (not from `models.ErrorRule`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.aggregator.derivation import derive_coarse
from metrics_agg.aggregator.invalidation import invalidate
from metrics_agg.config import Config, parse_errors
from metrics_agg.errors import ConfigError
from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.models import (
    SOURCE_MODELS,
    BucketKey,
    BucketValue,
    ErrorRule,
    HourRange,
    StoredBucket,
    UnitKey,
    WorkUnit,
)
from truth_helpers import Stream, assert_matches_truth, bucket_start, iso, recent_now

ACCOUNT = "acct-errors"
W0, W1 = "2024-05-01T10:00Z", "2024-05-01T11:00Z"
CODE = (ErrorRule("code", at_least=400), ErrorRule("status", ("error",)))


# --------------------------------------------------------------------------- configuration


def test_defaults_follow_upstream_conventions() -> None:
    assert SOURCE_MODELS["Task"].errors == (ErrorRule("status", ("FAILED",)),)
    assert SOURCE_MODELS["Evaluation"].errors == (ErrorRule("status", ("FAILED",)),)
    assert SOURCE_MODELS["Procedure"].errors == (ErrorRule("status", ("FAILED", "ERROR")),)
    assert SOURCE_MODELS["ScoreResult"].errors == CODE
    assert all(not SOURCE_MODELS[m].errors for m in ("Item", "ChatSession", "FeedbackItem"))


def test_errors_from_the_environment() -> None:
    env = {
        "PLEXUS_API_URL": "http://127.0.0.1:1/graphql",
        "METRICS_AGG_ERRORS": '{"Task": [{"field": "status", "values": ["FAILED", "CANCELLED"]}],'
        ' "ScoreResult": [{"field": "code", "atLeast": 500}], "Procedure": null}',
    }
    config = Config.from_env(env)
    rules = config.error_rules()
    assert rules["Task"] == (ErrorRule("status", ("FAILED", "CANCELLED")),)
    assert rules["ScoreResult"] == (ErrorRule("code", (), 500),)
    assert rules["Procedure"] == ()
    assert rules["Evaluation"] == SOURCE_MODELS["Evaluation"].errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"Taskk": []}', "unknown model 'Taskk'"),
        ('{"Task": {"field": "status"}}', "list of rules"),
        ('{"Task": [{"field": "owner", "values": ["x"]}]}', "Task rules can test: status"),
        ('{"Task": [{"field": "status"}]}', 'needs "values" or "atLeast"'),
        ('{"Task": [{"field": "status", "values": "FAILED"}]}', "list of strings"),
        ('{"ScoreResult": [{"field": "code", "atLeast": "400"}]}', "whole number"),
        ('{"Task": [{"field": "status", "value": ["FAILED"]}]}', '"field", "values"'),
    ],
)
def test_bad_error_configuration_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="METRICS_AGG_ERRORS") as info:
        parse_errors(text)
    assert message in str(info.value)


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "errors.sqlite3", mapping=False) as s:
        yield s


@pytest.fixture
def api(stack: LocalStack) -> Iterator[LocalClient]:
    with LocalClient(stack.endpoint, stack.api_key) as client:
        yield client


def _deliver(stream: Stream) -> None:
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}


def test_error_counts_end_to_end_with_modify_and_delete(
    stack: LocalStack, api: LocalClient
) -> None:
    now = recent_now()
    stream = Stream(stack)
    at = iso(now)
    for status in ("FAILED", "RUNNING", "COMPLETED", "FAILED", "failed"):
        api.create("Task", accountId=ACCOUNT, updatedAt=at, status=status)
    running = api.create("Task", accountId=ACCOUNT, updatedAt=at, status="RUNNING")
    quiet_at = now - timedelta(minutes=20)
    api.create("Task", accountId=ACCOUNT, updatedAt=iso(quiet_at), status="COMPLETED")
    for status in ("FAILED", "COMPLETED", None):
        fields = {"status": status} if status else {}
        api.create("Evaluation", accountId=ACCOUNT, updatedAt=at, **fields)
    for status in ("FAILED", "ERROR", "COMPLETE", "RUNNING"):
        api.create("Procedure", accountId=ACCOUNT, updatedAt=at, status=status)
    failed_result = None
    for kind, code, status in [
        ("prediction", "500", None),
        ("prediction", "200", None),
        ("evaluation", "404", "synced"),
        ("evaluation", "200", "error"),
        (None, "399", None),
        (None, "5xx", None),
    ]:
        fields: dict[str, Any] = {"code": code}
        if kind:
            fields["type"] = kind
        if status:
            fields["status"] = status
        made = api.create(
            "ScoreResult", accountId=ACCOUNT, updatedAt=iso(now - timedelta(minutes=1)), **fields
        )
        failed_result = failed_result or made
    api.create("ChatSession", accountId=ACCOUNT, updatedAt=at, status="ERROR")
    api.create("Item", accountId=ACCOUNT, createdAt=at)
    _deliver(stream)
    stored = assert_matches_truth(stack.store, ACCOUNT)

    minute = bucket_start(now, 1)
    assert (stored[f"tasks#{minute}#1"]["count"], stored[f"tasks#{minute}#1"]["errorCount"]) == (
        6,
        2,
    )
    assert stored[f"evaluations#{minute}#1"]["errorCount"] == 1
    assert stored[f"procedures#{bucket_start(now, 60)}#60"]["errorCount"] == 2
    before = bucket_start(now - timedelta(minutes=1), 1)
    assert stored[f"scoreResults#{before}#1"]["errorCount"] == 3
    assert stored[f"predictionScoreResults#{before}#1"]["errorCount"] == 1
    assert stored[f"evaluationScoreResults#{before}#1"]["errorCount"] == 2
    # Models without error rules: errorCount left unset, not 0.
    assert "errorCount" not in stored[f"items#{minute}#1"]
    assert "errorCount" not in stored[f"chatSessions#{minute}#1"]
    # A bucket without errors of a model with rules carries errorCount 0.
    quiet = stored[f"tasks#{bucket_start(quiet_at, 1)}#1"]
    assert (quiet["count"], quiet["errorCount"]) == (1, 0)

    # RUNNING -> FAILED in the same minute: the count stays, the error moves in.
    api.update("Task", running["id"], status="FAILED", updatedAt=at)
    _deliver(stream)
    stored = assert_matches_truth(stack.store, ACCOUNT)
    for size in (1, 5, 15, 60):
        bucket = stored[f"tasks#{bucket_start(now, size)}#{size}"]
        quiet_too = bucket_start(quiet_at, size) == bucket_start(now, size)
        assert (bucket["count"], bucket["errorCount"]) == (6 + quiet_too, 3)

    # A failed ScoreResult deleted: its error leaves with it.
    assert failed_result is not None
    api.delete("ScoreResult", failed_result["id"])
    _deliver(stream)
    stored = assert_matches_truth(stack.store, ACCOUNT)
    assert stored[f"scoreResults#{before}#1"]["errorCount"] == 2
    assert stored[f"predictionScoreResults#{before}#1"]["errorCount"] == 0


def test_overridden_rules_end_to_end(stack: LocalStack, api: LocalClient) -> None:
    now = recent_now()
    at = iso(now)
    for status in ("FAILED", "CANCELLED", "CANCELLED", "RUNNING"):
        api.create("Task", accountId=ACCOUNT, updatedAt=at, status=status)
    for status in ("ERROR", "ACTIVE"):
        api.create("ChatSession", accountId=ACCOUNT, updatedAt=at, status=status)
    api.create("ScoreResult", accountId=ACCOUNT, updatedAt=at, code="500")
    finals = [("sc-1", "s-1", "broken"), ("sc-1", "s-1", "yes"), ("sc-1", "s-2", "broken")]
    for scorecard, score, final in finals:
        api.create(
            "FeedbackItem",
            accountId=ACCOUNT,
            editedAt=at,
            updatedAt=at,
            scorecardId=scorecard,
            scoreId=score,
            initialAnswerValue="yes",
            finalAnswerValue=final,
        )
    config = stack.config(
        errors=parse_errors(
            '{"Task": [{"field": "status", "values": ["CANCELLED"]}],'
            ' "ChatSession": [{"field": "status", "values": ["ERROR"]}],'
            ' "ScoreResult": [],'
            ' "FeedbackItem": [{"field": "finalAnswerValue", "values": ["broken"]}]}'
        )
    )
    stream = Stream(stack)
    for model in ("Task", "ChatSession", "ScoreResult", "FeedbackItem"):
        response = pipeline.handle_event({"Records": stream.take(model)}, config=config)
        assert response == {"batchItemFailures": []}
    stored = {m["compositeKey"]: m for m in stack.store.all_metrics(ACCOUNT)}
    for size in (1, 60):
        start = bucket_start(now, size)
        for key in (
            f"tasks#{start}#{size}",
            f"chatSessions#{start}#{size}",
            f"feedbackItems#{start}#{size}",
            f"feedbackItemsByScorecard#sc-1#{start}#{size}",
            f"feedbackItemsByScore#s-1#{start}#{size}",
            f"feedbackItemsByScore#s-2#{start}#{size}",
        ):
            assert key in stored, key
        assert stored[f"tasks#{start}#{size}"]["errorCount"] == 2
        assert stored[f"chatSessions#{start}#{size}"]["errorCount"] == 1
        assert "errorCount" not in stored[f"scoreResults#{start}#{size}"]
        assert stored[f"feedbackItems#{start}#{size}"]["errorCount"] == 2
        assert stored[f"feedbackItemsByScorecard#sc-1#{start}#{size}"]["errorCount"] == 2
        assert stored[f"feedbackItemsByScore#s-1#{start}#{size}"]["errorCount"] == 1
        assert stored[f"feedbackItemsByScore#s-2#{start}#{size}"]["errorCount"] == 1
    # The scheduled cross-check with the same rules agrees with what was written.
    report = pipeline.verify(
        account_id=ACCOUNT,
        models=("Task", "ChatSession", "ScoreResult", "FeedbackItem"),
        start=now.replace(minute=0, second=0, microsecond=0),
        end=now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
        config=config,
    )
    assert report.mismatches == ()


# --------------------------------------------------------------------------- derived sizes

H = datetime(2024, 5, 1, 10, tzinfo=UTC)


def _row(minute: int, size: int, count: int, errors: int | None) -> StoredBucket:
    key = BucketKey("a", "tasks", H + timedelta(minutes=minute), size)
    return StoredBucket(key, BucketValue(count, False, None, errors), "2024-05-01T10:30:00.000000Z")


def _unit(minute: int) -> WorkUnit:
    touched = frozenset({BucketKey("a", "tasks", H + timedelta(minutes=minute), 1)})
    return WorkUnit(UnitKey("Task", "a"), (HourRange(H, H + timedelta(hours=1)),), (), touched)


def _stored(*rows: StoredBucket) -> dict[str, StoredBucket]:
    return {r.key.composite_key: r for r in rows}


def test_the_hour_self_check_covers_error_counts() -> None:
    agreeing = _stored(
        _row(0, 60, 3, 1), _row(0, 15, 3, 1), _row(0, 5, 3, 1), _row(1, 1, 2, 1), _row(2, 1, 1, 0)
    )
    assert invalidate(_unit(1), agreeing, errors=True).derive_hours == (H,)
    # The 60-minute row's errorCount disagrees with its minutes: recount the hour.
    wrong = {**agreeing, **_stored(_row(0, 60, 3, 2))}
    inv = invalidate(_unit(1), wrong, errors=True)
    assert inv.recount_hours == (H,) and "errorCount" in inv.reasons[H]
    # Rows written before the rules (no errorCount): their errors are unknown, recount.
    before = _stored(_row(0, 60, 3, None), _row(0, 15, 3, None), _row(0, 5, 3, None))
    before |= _stored(_row(1, 1, 2, None), _row(2, 1, 1, None))
    assert invalidate(_unit(1), before, errors=True).recount_hours == (H,)
    assert invalidate(_unit(1), before, errors=False).derive_hours == (H,)


def test_derived_buckets_sum_error_counts() -> None:
    rows = _stored(_row(1, 1, 2, 1), _row(2, 1, 1, 0), _row(7, 1, 4, 3))
    always = {BucketKey("a", "tasks", H, 60), BucketKey("a", "tasks", H, 5)}
    desired, _ = derive_coarse(
        _unit(1), rows, hours=[H], always=always, recount_hours=[], read_time=H, errors=True
    )
    assert desired[BucketKey("a", "tasks", H, 60)] == BucketValue(7, False, None, 4)
    assert desired[BucketKey("a", "tasks", H, 5)] == BucketValue(3, False, None, 1)
    plain, _ = derive_coarse(
        _unit(1), rows, hours=[H], always=always, recount_hours=[], read_time=H
    )
    assert plain[BucketKey("a", "tasks", H, 60)].error_count is None
