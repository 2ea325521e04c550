"""errorCount (issue 13): error rules evaluated in the counter's pass, on both backends;
end to end through the local stack with upstream's conventions and with overrides.

The end-to-end checks compare with `truth_helpers`, whose error predicates are written
from DESIGN §2 alone (not from `models.ErrorRule`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_counter import require_rust
from metrics_agg import count_records
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


class StrSub(str):
    pass


class IntSub(int):
    pass


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"code": "500"}, True),
        ({"code": "400"}, True),
        ({"code": "0400"}, True),
        ({"code": "399"}, False),
        ({"code": "99999999999999999999999"}, True),  # beyond 64 bits: still >= 400
        ({"code": "5xx"}, False),
        ({"code": " 500"}, False),
        ({"code": "500 "}, False),
        ({"code": "-500"}, False),
        ({"code": "+500"}, False),
        ({"code": "５００"}, False),  # non-ASCII digits
        ({"code": ""}, False),
        ({"code": None}, False),
        ({"code": 500}, True),
        ({"code": 399}, False),
        ({"code": IntSub(404)}, True),
        ({"code": True}, False),
        ({"code": 500.0}, False),
        ({"code": StrSub("503")}, True),
        ({"status": "error"}, True),
        ({"status": "ERROR"}, False),  # exact, case included
        ({"status": StrSub("error")}, True),
        ({"status": "error\udc80"}, False),
        ({"code": "200", "status": "error"}, True),
        ({"code": "200", "status": "synced"}, False),
        ({}, False),
    ],
)
def test_error_rule_semantics(backend: str, fields: dict[str, Any], error: bool) -> None:
    records = [{"updatedAt": "2024-05-01T10:07:00Z", **fields}]
    r = count_records(
        records, W0, W1, fields=("updatedAt",), errors=CODE, sizes=(1, 60), backend=backend
    )  # type: ignore[arg-type]
    assert r.processed == 1
    assert r.error_counts is not None and r.error_counts[60] == [int(error)]
    assert r.error_counts[1][7] == int(error) and sum(r.error_counts[1]) == int(error)


def test_errors_split_by_category_in_the_same_pass(backend: str) -> None:
    records: list[Any] = [
        {"updatedAt": "2024-05-01T10:01:00Z", "type": "prediction", "code": "500"},
        {"updatedAt": "2024-05-01T10:01:30Z", "type": "prediction", "code": "200"},
        {"updatedAt": "2024-05-01T10:02:00Z", "type": "evaluation", "status": "error"},
        {"updatedAt": "2024-05-01T10:20:00Z", "code": "404"},  # no category
        {"updatedAt": "2024-05-01T12:00:00Z", "code": "500"},  # outside: not an error here
        {"updatedAt": "bad", "code": "500"},  # invalid: not counted at all
        {"code": "500"},  # missing
        "not a record",
    ]
    r = count_records(
        records,
        W0,
        W1,
        fields=("updatedAt",),
        category_field="type",
        errors=CODE,
        sizes=(5, 60),
        backend=backend,  # type: ignore[arg-type]
    )
    assert (r.processed, r.invalid, r.missing, r.outside_window) == (4, 2, 1, 1)
    assert r.error_counts is not None
    assert r.error_counts[60] == [3] and r.counts[60] == [4]
    assert r.error_counts[5][:5] == [2, 0, 0, 0, 1]
    assert r.category_error_counts["prediction"][60] == [1]
    assert r.category_error_counts["evaluation"][60] == [1]
    assert r.category_error_counts[None][60] == [1]
    assert set(r.category_error_counts) == set(r.category_counts)


def test_no_rules_means_no_error_counts(backend: str) -> None:
    records = [{"updatedAt": "2024-05-01T10:01:00Z", "code": "500"}]
    r = count_records(records, W0, W1, fields=("updatedAt",), backend=backend)  # type: ignore[arg-type]
    assert r.error_counts is None and r.category_error_counts == {}
    r = count_records(records, W0, W1, fields=("updatedAt",), errors=(), backend=backend)  # type: ignore[arg-type]
    assert r.error_counts is not None and r.error_counts[60] == [0]


def test_a_raising_get_propagates_from_the_rule_lookup(backend: str) -> None:
    class Record:
        def get(self, name: str) -> object:
            if name == "code":
                raise KeyError("boom")
            return "2024-05-01T10:01:00Z"

    with pytest.raises(KeyError):
        count_records([Record()], W0, W1, fields=("updatedAt",), errors=CODE, backend=backend)  # type: ignore[arg-type]


_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["500", "400", "399", "0400", "5xx", " 500", "error", "FAILED", "", "٥٠٠"]),
    st.text(alphabet="0123456789 +-error", max_size=25),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False),
)
_RECORDS = st.lists(
    st.fixed_dictionaries(
        {"updatedAt": st.sampled_from(["2024-05-01T10:03:00Z", "2024-05-01T10:41:59Z", "x"])},
        optional={"code": _VALUES, "status": _VALUES, "type": st.sampled_from(["a", "b", 1])},
    ),
    max_size=40,
)
_RULES = st.lists(
    st.builds(
        ErrorRule,
        st.sampled_from(["code", "status"]),
        st.lists(st.sampled_from(["error", "FAILED", "500", ""]), max_size=2).map(tuple),
        st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_RECORDS, rules=_RULES, category=st.sampled_from([None, "type"]))
def test_both_backends_count_the_same_errors(
    records: list[dict[str, Any]], rules: list[ErrorRule], category: str | None
) -> None:
    require_rust()
    results = [
        count_records(
            records,
            W0,
            W1,
            fields=("updatedAt",),
            category_field=category,
            errors=rules,
            sizes=(1, 15, 60),
            backend=backend,  # type: ignore[arg-type]
        )
        for backend in ("python", "rust")
    ]
    assert results[0] == results[1]
    py = results[0]
    assert py.error_counts is not None
    for size in (1, 15, 60):
        assert sum(py.error_counts[size]) <= py.processed
        assert all(e <= c for e, c in zip(py.error_counts[size], py.counts[size], strict=True))


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
