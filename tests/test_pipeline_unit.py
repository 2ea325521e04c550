"""The orchestrator and the read/merge stage against the in-memory fake api (no server).

Every test runs on both stream paths (`Config.invocation_path`): "shared" (the units of an
invocation share their requests) and "per-unit" (each unit its own). Fault injection
differs where the paths do: the per-unit path fails the n-th call, the shared path one
unit's aliases (a shared call fails every unit in it, which its own test checks).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.plan import plan_units
from metrics_agg.aggregator.read import read_unit
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.models import BucketKey, BucketValue, HourRange, UnitKey, WorkUnit
from metrics_agg.timestamps import format_write_time

EVENTS = Path(__file__).parent / "events"
NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
# Units one after another: the fault-injection tests count calls in key order.
CONFIG = Config(endpoint="http://fake", unit_parallelism=1)
_PATH = {"config": CONFIG}


@pytest.fixture(autouse=True, params=["shared", "per-unit"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """The stream path every `run` of the test takes."""
    _PATH["config"] = replace(CONFIG, invocation_path=request.param)
    yield request.param
    _PATH["config"] = CONFIG


def event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    return install(monkeypatch, FakeApi())


def run(ev: dict[str, Any], config: Config | None = None, **kw: Any) -> dict[str, Any]:
    return pipeline.handle_event(
        ev,
        config=config or _PATH["config"],
        client=FakeClient(),  # type: ignore[arg-type]
        now=kw.pop("now", NOW),
        **kw,
    )


def item(i: str, created: str, kind: str = "prediction", acct: str = "acct-1") -> dict[str, Any]:
    return {
        "id": i,
        "accountId": acct,
        "createdAt": created,
        "updatedAt": created,
        "createdByType": kind,
    }


def count(fake: FakeApi, ck: str, acct: str = "acct-1") -> int | None:
    sb = fake.bucket(acct, ck)
    return None if sb is None else sb.value.count


def test_insert_merges_batch_images_the_index_lags_on(fake: FakeApi) -> None:
    # Only item-1 is visible in the index; the batch's images still count (docs/design.md §4.3).
    fake.add("Item", **item("item-1", "2024-05-01T12:10:05.123Z"))
    fake.add("Item", **item("old", "2024-05-01T11:59:00Z", "evaluation"))
    assert run(event("item_insert")) == {"batchItemFailures": []}
    assert count(fake, "items#2024-05-01T12:00:00Z#60") == 2
    # docs/design.md §4.8: a stream invocation recounts the minutes of its batch; the previous
    # hour (no batch record in it) is the scheduled reconcile's.
    assert count(fake, "items#2024-05-01T11:00:00Z#60") is None
    assert count(fake, "evaluationItems#2024-05-01T12:11:00Z#1") == 1
    assert count(fake, "predictionItems#2024-05-01T12:10:00Z#1") == 1
    assert count(fake, "items#2024-05-01T12:12:00Z#1", "acct-2") == 1
    # zero buckets never stored and not touched are not created
    assert count(fake, "items#2024-05-01T12:20:00Z#1") is None
    run({"source": "aws.events", "detail-type": "Scheduled Event", "accountIds": ["acct-1"]})
    assert count(fake, "items#2024-05-01T11:00:00Z#60") == 1


def test_second_run_writes_only_touched_buckets(fake: FakeApi) -> None:
    fake.add("Item", **item("item-1", "2024-05-01T12:10:05.123Z"))
    fake.add("Item", **item("item-2", "2024-05-01T12:11:00Z", "evaluation"))
    fake.add("Item", **item("item-3", "2024-05-01T12:12:00.5Z", acct="acct-2"))
    run(event("item_insert"))
    fake.writes.clear()
    run(event("item_insert"), now=NOW + timedelta(seconds=1))
    # always-write rule: the buckets of the batch records, nothing else (nothing changed)
    touched = {w.key.composite_key for w in fake.writes}
    assert "items#2024-05-01T12:10:00Z#1" in touched
    assert "items#2024-05-01T12:15:00Z#15" not in touched
    assert all(not w.create for w in fake.writes)


def test_modify_moves_record_and_remove_empties_bucket(fake: FakeApi) -> None:
    fake.add("Item", **item("item-1", "2024-05-01T12:10:05.123Z"))
    fake.add("Item", **item("item-2", "2024-05-01T12:11:00Z", "evaluation"))
    run(event("item_insert"))
    # the index still shows the old version of item-1 and the deleted item-2
    run(event("item_modify"), now=NOW + timedelta(seconds=1))
    assert count(fake, "items#2024-05-01T12:10:00Z#1") == 0
    assert count(fake, "items#2024-05-01T09:59:00Z#1") == 1
    assert count(fake, "items#2024-05-01T09:00:00Z#60") == 1
    run(event("item_remove"), now=NOW + timedelta(seconds=2))
    assert count(fake, "evaluationItems#2024-05-01T12:11:00Z#1") == 0
    assert count(fake, "evaluationItems#2024-05-01T12:00:00Z#60") == 0


def test_index_newer_than_batch_image_wins(fake: FakeApi) -> None:
    newer = item("item-1", "2024-05-01T12:10:05.123Z")
    newer.update(createdAt="2024-05-01T12:40:00Z", updatedAt="2024-05-01T12:41:00Z")
    fake.add("Item", **newer)
    (unit,) = [
        u
        for u in plan_units(parse_batch(event("item_insert")), now=NOW, max_hours_back=168)
        if u.key.account_id == "acct-1"
    ]
    snap = read_unit(FakeClient(), unit, config=CONFIG, clock=lambda: NOW)
    rows = {r["id"]: r for rr in snap.ranges for r in rr.records}
    assert rows["item-1"]["createdAt"] == "2024-05-01T12:40:00Z"
    assert "item-2" in rows and snap.merged_from_batch == 1


def test_feedback_two_queries_count_once(fake: FakeApi) -> None:
    fake.add(
        "FeedbackItem",
        id="fb-9",
        accountId="acct-1",
        scorecardId="sc-1",
        scoreId="s-9",
        editedAt="2024-05-01T12:20:00Z",
        updatedAt="2024-05-01T12:21:00Z",
        createdAt="2024-05-01T10:00:00Z",
        initialAnswerValue="A",
        finalAnswerValue="B",
    )
    fake.add(
        "FeedbackItem",
        id="fb-4",
        accountId="acct-1",
        scorecardId="sc-1",
        scoreId="score-1",
        updatedAt="2024-05-01T12:08:00Z",
        createdAt="2024-05-01T11:00:00Z",
        initialAnswerValue="No",
        finalAnswerValue="No",
    )
    assert run(event("feedback")) == {"batchItemFailures": []}
    assert count(fake, "feedbackItems#2024-05-01T12:00:00Z#60") == 4  # fb-1, fb-2, fb-3, fb-9
    sb = fake.bucket("acct-1", "feedbackItems#2024-05-01T12:00:00Z#60")
    assert sb is not None and sb.value.metadata == {
        "changedCount": 2,
        "unchangedCount": 1,
        "invalidCount": 1,
    }
    assert count(fake, "feedbackItemsByScore#score-1#2024-05-01T12:00:00Z#60") == 1
    assert count(fake, "feedbackItemsByScorecard#sc-2#2024-05-01T12:00:00Z#60") == 1
    # fb-4 was removed: its touched zero buckets are written, not left missing
    assert count(fake, "feedbackItemsByScore#score-1#2024-05-01T12:08:00Z#1") == 0


def test_read_failure_fails_only_that_unit(fake: FakeApi, path: str) -> None:
    if path == "shared":
        fake.alias_error_accounts = {"acct-1"}  # acct-1's aliases of the shared read
    else:
        fake.fail_read_call = 1  # acct-1's read (units run in key order)
    out = run(event("item_insert"))
    assert out == {"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439091"}]}
    assert not any(ck for (acct, ck) in fake.stored if acct == "acct-1")
    assert count(fake, "items#2024-05-01T12:12:00Z#1", "acct-2") == 1


def test_write_failure_reports_sequence(fake: FakeApi, path: str) -> None:
    if path == "shared":
        fake.alias_error = "acct-2"  # acct-2's aliases of the shared writes
    else:
        fake.fail_write_call = 3  # acct-2's 1-minute writes (acct-1: calls 1 and 2)
    out = run(event("item_insert"))
    assert out == {"batchItemFailures": [{"itemIdentifier": "4421584600000000017450439181"}]}


@pytest.mark.parametrize("stage", ["read", "write"])
def test_shared_request_failure_fails_each_unit_in_it(fake: FakeApi, path: str, stage: str) -> None:
    """A shared request that fails as a whole fails every unit with a part in it, each
    reported by its own lowest sequence number; nothing of them is written."""
    if path != "shared":
        pytest.skip("the per-unit path sends no shared request")
    if stage == "read":
        fake.fail_read_call = 1
    else:
        fake.fail_write_call = 1  # the 1-minute writes of both units
    out = run(event("item_insert"))
    assert out == {
        "batchItemFailures": [
            {"itemIdentifier": "4421584500000000017450439091"},
            {"itemIdentifier": "4421584600000000017450439181"},
        ]
    }
    assert not [ck for (_, ck) in fake.stored if ck.endswith("#5") or ck.endswith("#60")]


def test_failed_minute_write_derives_nothing(fake: FakeApi, path: str) -> None:
    """docs/design.md §4.8: a 1-minute write that fails means nothing is derived; unit reported."""
    if path == "shared":
        fake.alias_error = "acct-1"
    else:
        fake.fail_write_call = 1  # acct-1's 1-minute writes
    out = run(event("item_insert"))
    assert out == {"batchItemFailures": [{"itemIdentifier": "4421584500000000017450439091"}]}
    assert not [ck for (acct, ck) in fake.stored if acct == "acct-1"]
    assert count(fake, "items#2024-05-01T12:00:00Z#60", "acct-2") == 1


def test_deadline_leaves_units_unstarted(fake: FakeApi) -> None:
    out = run(event("item_insert"), deadline=Deadline.after(0.5))
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [
        "4421584500000000017450439091",
        "4421584600000000017450439181",
    ]
    assert fake.read_calls == 0


def test_human_log_and_emf(
    fake: FakeApi, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    lines: list[str] = []
    monkeypatch.setattr(emf, "emit", lambda m, **_: lines.append(emf.render(m)))
    fake.add("Item", **item("x", "2024-05-01T12:00:00Z"))
    run(event("item_insert"))
    text = caplog.text
    for needle in (
        "[1/3] Querying",
        "[2/3] Counting",
        "Cross-check: 3 in 1-min buckets vs 3 records ✓",
        "recounted directly: no stored 60-minute row",
        "[3/3] Wrote",
        "✓ SUCCESS",
    ):
        assert needle in text
    (line,) = lines
    doc = json.loads(line)
    assert doc["RecordsCounted"] == 4 and doc["FailedUnits"] == 0
    assert {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "RecordsCounted",
        "BucketsWritten",
        "InvalidTimestamps",
        "DurationMs",
        "FailedUnits",
        "HttpRequests",
        "OffsetTimestampsBeyondMargin",
        "SourceRowsRead",
        "DerivationFallbacks",
        "DriftRepaired",
        "FreshnessSeconds",
        "RecheckHoursQueued",
        "RecheckHoursNotQueued",
        "ActivityRecordsWritten",
        "ActivityRecordsNotWritten",
    }
    # NOW (12:30) minus the batch's oldest ApproximateCreationDateTime (12:10:00).
    assert doc["FreshnessSeconds"] == 1200.0
    # First aggregation of 12:00 for both; acct-2's hour holds nothing but the batch's
    # minute, which the shared path's probe sees, so only acct-1's (record "x") falls back.
    assert doc["DerivationFallbacks"] == (1 if path == "shared" else 2)


def test_freshness_is_the_oldest_record_and_only_for_streams(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(emf, "emit", lambda m, **_: lines.append(json.loads(emf.render(m))))
    ev = event("item_insert")
    ev["Records"][1]["dynamodb"]["ApproximateCreationDateTime"] = 1714565400 - 300
    del ev["Records"][0]["dynamodb"]["ApproximateCreationDateTime"]
    ev["Records"].append({"eventSource": "aws:dynamodb", "dynamodb": {}})  # malformed
    run(ev)
    run(
        {
            "recount": {
                "accountId": "acct-1",
                "model": "Item",
                "start": "2024-05-01T11:00Z",
                "end": "2024-05-01T12:00Z",
            }
        }
    )
    stream, recount = lines
    assert stream["FreshnessSeconds"] == 1500.0
    assert "FreshnessSeconds" not in recount
    assert "FreshnessSeconds" not in {
        m["Name"] for m in recount["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }


def test_hours_beyond_the_limits_are_warned_on_both_paths(
    fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A record 200 h back (past max_hours_back) or 30 h ahead is not recounted; each such
    hour is named in a warning, whichever stream path runs."""
    caplog.set_level(logging.INFO, logger="metrics_agg")
    ev = event("item_insert")
    images = [r["dynamodb"]["NewImage"] for r in ev["Records"]]
    images[0]["createdAt"] = {"S": "2024-04-23T04:40:00Z"}  # NOW - 200 h
    images[2]["createdAt"] = {"S": "2024-05-02T18:40:00Z"}  # NOW + 30 h
    run(ev)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warned if "beyond the recount limits" in w] == [
        "      Item · acct-1: hour 2024-04-23T04:00:00Z is beyond the recount limits: "
        "not recounted",
        "      Item · acct-2: hour 2024-05-02T18:00:00Z is beyond the recount limits: "
        "not recounted",
    ]


def test_partial_log(fake: FakeApi, caplog: pytest.LogCaptureFixture, path: str) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    if path == "shared":
        fake.alias_error_accounts = {"acct-2"}
    else:
        fake.fail_read_call = 2
    run(event("item_insert"))
    assert "⚠ PARTIAL: 1 of 2 unit(s) failed" in caplog.text


def test_emf_goes_to_stdout_in_lambda() -> None:
    m = emf.InvocationMetrics("stream", 1, 2, 0, 1.5, 0, 3)
    buf = io.StringIO()
    emf.emit(m, stream=buf)
    assert json.loads(buf.getvalue())["BucketsWritten"] == 2
    in_lambda = Config.from_env({"PLEXUS_API_URL": "http://h", "AWS_LAMBDA_FUNCTION_NAME": "f"})
    asked = Config.from_env({"PLEXUS_API_URL": "http://h", "METRICS_AGG_EMF": "1"})
    assert in_lambda.emf_stdout and asked.emf_stdout
    assert not Config.from_env({"PLEXUS_API_URL": "http://h"}).emf_stdout


@pytest.mark.parametrize(
    ("environ", "stack"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "prod-aggregator", "METRICS_AGG_STACK": "prod"}, "prod"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "staging-aggregator"}, "staging-aggregator"),
    ],
)
def test_emf_metrics_carry_the_stack_dimension(environ: dict[str, str], stack: str) -> None:
    """Two stacks in one account (staging, production) must not add up into one metric."""
    buf = io.StringIO()
    config = Config.from_env({"PLEXUS_API_URL": "http://h", **environ})
    metrics = emf.InvocationMetrics("stream", 1, 2, 0, 1.5, 0, 3)
    emf.emit(metrics, to_stdout=config.emf_stdout, stack=config.emf_stack, stream=buf)
    doc = json.loads(buf.getvalue())
    assert doc["Stack"] == stack
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["Stack", "EventKind"], ["Stack"]]
    for dimensions in directive["Dimensions"]:
        assert all(name in doc for name in dimensions)


def test_recount_event_and_verify(fake: FakeApi) -> None:
    fake.add("Task", id="t1", accountId="a", updatedAt="2024-05-01T03:07:00Z")
    fake.put_stored(
        BucketKey("a", "tasks", datetime(2024, 5, 1, 4, tzinfo=UTC), 60),
        BucketValue(9, True),
        format_write_time(NOW - timedelta(days=1)),
    )
    report = pipeline.verify(
        config=CONFIG,
        account_id="a",
        models=("Task",),
        start=datetime(2024, 5, 1, 3, tzinfo=UTC),
        end=datetime(2024, 5, 1, 5, tzinfo=UTC),
        client=FakeClient(),
    )  # type: ignore[arg-type]
    assert {(m.key.composite_key, m.truth.count) for m in report.mismatches} == {
        ("tasks#2024-05-01T03:07:00Z#1", 1),
        ("tasks#2024-05-01T03:05:00Z#5", 1),
        ("tasks#2024-05-01T03:00:00Z#15", 1),
        ("tasks#2024-05-01T03:00:00Z#60", 1),
        ("tasks#2024-05-01T04:00:00Z#60", 0),
    }
    assert report.records_counted == 1 and report.buckets_checked == 2 * 77
    assert fake.write_calls == 0
    out = run(
        {
            "recount": {
                "accountId": "a",
                "model": "Task",
                "start": "2024-05-01T03:30:00Z",
                "end": "2024-05-01T04:10:00Z",
            }
        }
    )
    assert out["status"] == "SUCCESS" and out["bucketsWritten"] == 5
    assert count(fake, "tasks#2024-05-01T04:00:00Z#60", "a") == 0
    again = pipeline.verify(
        config=CONFIG,
        account_id="a",
        models=("Task",),
        start=datetime(2024, 5, 1, 3, tzinfo=UTC),
        end=datetime(2024, 5, 1, 5, tzinfo=UTC),
        client=FakeClient(),
    )  # type: ignore[arg-type]
    assert again.mismatches == ()


def test_recount_dry_run(fake: FakeApi) -> None:
    fake.add("Task", id="t1", accountId="a", updatedAt="2024-05-01T03:07:00Z")
    outcome = pipeline.recount(
        config=CONFIG,
        account_id="a",
        model="Task",
        start=datetime(2024, 5, 1, 3, tzinfo=UTC),
        end=datetime(2024, 5, 1, 4, tzinfo=UTC),
        dry_run=True,
        client=FakeClient(),
    )  # type: ignore[arg-type]
    assert outcome.ok and outcome.buckets_planned == 4 and fake.write_calls == 0


def test_scheduled_with_explicit_accounts_finalizes(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = BucketKey("a", "tasks", datetime(2024, 5, 1, 12, 20, tzinfo=UTC), 5)
    fake.add("Task", id="t1", accountId="a", updatedAt="2024-05-01T12:21:00Z")
    fake.put_stored(key, BucketValue(1, False), format_write_time(NOW - timedelta(minutes=8)))
    tick = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    out = run(
        tick,
        config=Config.from_env(
            {"PLEXUS_API_URL": "http://fake", "METRICS_AGG_ACCOUNT_IDS": " a, "}
        ),
    )
    assert out["status"] == "SUCCESS" and out["units"] == 7
    sb = fake.bucket("a", key.composite_key)
    assert sb is not None and sb.value == BucketValue(1, True, None, 0)  # Task: errorCount


def test_scheduled_discovers_pairs(fake: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import metrics_agg.graphql.discovery as discovery

    seen: dict[str, Any] = {}

    def scopes(client: Any, *, since: datetime, deadline: Any) -> discovery.ActiveScopes:
        seen["since"] = since
        found = {
            ("a", "predictionItems"),
            ("a", "items"),
            ("b", "feedbackItemsByScore"),
            ("c", "somethingElse"),
        }
        return discovery.ActiveScopes(found, accounts=3)

    monkeypatch.setattr(discovery, "list_recent_metric_scopes", scopes)
    out = run({"source": "aws.events", "detail-type": "Scheduled Event"})
    assert seen["since"] == NOW - timedelta(hours=2)
    assert out["units"] == 2 and out["status"] == "SUCCESS"


def test_unknown_event_shape() -> None:
    with pytest.raises(ValueError, match="Scheduled Event"):
        run({"hello": 1})
    with pytest.raises(ValueError, match="'model'"):
        run(
            {
                "recount": {
                    "accountId": "a",
                    "start": "2024-05-01T00:00Z",
                    "end": "2024-05-01T01:00Z",
                }
            }
        )


def test_read_unit_uses_every_range(fake: FakeApi) -> None:
    unit = WorkUnit(
        UnitKey("Task", "a"),
        (
            HourRange(datetime(2024, 5, 1, 1, tzinfo=UTC), datetime(2024, 5, 1, 2, tzinfo=UTC)),
            HourRange(datetime(2024, 5, 1, 5, tzinfo=UTC), datetime(2024, 5, 1, 6, tzinfo=UTC)),
        ),
    )
    fake.add("Task", id="1", accountId="a", updatedAt="2024-05-01T01:59:59.999Z")
    fake.add("Task", id="2", accountId="a", updatedAt="2024-05-01T05:00:00Z")
    fake.add("Task", id="3", accountId="b", updatedAt="2024-05-01T05:00:00Z")
    snap = read_unit(FakeClient(), unit, config=CONFIG, clock=lambda: NOW)
    assert [[r["id"] for r in rr.records] for rr in snap.ranges] == [["1"], ["2"]]
    assert snap.snapshot_time == NOW and fake.read_calls == 2


def test_unit_outcomes_carry_the_same_fields_on_both_paths(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The per-unit log fields (records counted, buckets written, hours, error) are filled
    alike whichever path ran the units."""
    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "log_report", lambda outcomes, *_, **__: seen.extend(outcomes))
    fake.add("Item", **item("x", "2024-05-01T12:00:00Z"))
    run(event("item_insert"))
    by_account = {o.key.account_id: o for o in seen}
    assert set(by_account) == {"acct-1", "acct-2"}
    one, two = by_account["acct-1"], by_account["acct-2"]
    assert (one.records_counted, two.records_counted) == (3, 1)
    assert one.ok and two.ok and one.error is None and two.error is None
    assert one.hours == two.hours == 1
    assert one.buckets_written > 0 and two.buckets_written > 0
    assert one.minutes_recounted >= 1 and two.minutes_recounted >= 1
    fake.alias_error = "acct-2"  # every write of acct-2 fails
    seen.clear()
    run(event("item_insert"))
    failed = {o.key.account_id: o for o in seen if not o.ok}
    assert set(failed) == {"acct-2"}
    assert failed["acct-2"].error and failed["acct-2"].error.startswith("WriteError")
    assert failed["acct-2"].hours == 0 and failed["acct-2"].sequence
