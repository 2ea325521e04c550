"""Hours outside the reconcile window are handed over for a delayed direct recount
(docs/incremental.md "Rechecks"): which hours, once per invocation, and what a failure does."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.recheck import RecheckHour, outside_reconcile, recheck_events
from metrics_agg.config import Config
from metrics_agg.errors import ConfigError, TransportError
from metrics_agg.models import BucketKey, BucketValue

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
CONFIG = Config(endpoint="http://fake", unit_parallelism=1)
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Task-abc-NONE/stream/2024-04-30T09:15:02.118"


def h(hour: int) -> datetime:
    return datetime(2024, 5, 1, hour, tzinfo=UTC)


def stream(*rows: tuple[str, str, str]) -> dict[str, Any]:
    """A Task INSERT batch of (id, accountId, updatedAt)."""
    return {
        "Records": [
            {
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": ARN,
                "dynamodb": {
                    "SequenceNumber": str(100 + i),
                    "Keys": {"id": {"S": rid}},
                    "NewImage": {
                        "id": {"S": rid},
                        "accountId": {"S": acct},
                        "updatedAt": {"S": ts},
                        "createdAt": {"S": ts},
                    },
                },
            }
            for i, (rid, acct, ts) in enumerate(rows)
        ]
    }


class Sink:
    """A `RecheckSink` that records each call, or fails it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[RecheckHour]] = []
        self.fail = fail

    def send(self, hours: Sequence[RecheckHour]) -> None:
        self.calls.append(list(hours))
        if self.fail:
            raise TransportError("SQS SendMessageBatch failed: AccessDenied: injected")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    return install(monkeypatch, FakeApi())


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(emf, "emit", lambda m, **_: lines.append(json.loads(emf.render(m))))
    return lines


def run(ev: dict[str, Any], sink: Sink | None, *, now: datetime = NOW) -> dict[str, Any]:
    return pipeline.handle_event(
        ev,
        config=CONFIG,
        client=FakeClient(),  # type: ignore[arg-type]
        now=now,
        recheck=sink,
    )


def add(fake: FakeApi, rows: Sequence[tuple[str, str, str]]) -> None:
    for rid, acct, ts in rows:
        fake.add("Task", id=rid, accountId=acct, updatedAt=ts, createdAt=ts)


def count(fake: FakeApi, ck: str, acct: str = "acct-1") -> int | None:
    sb = fake.bucket(acct, ck)
    return None if sb is None else sb.value.count


ROWS = (
    ("cur", "acct-1", "2024-05-01T12:10:00Z"),  # current hour: the reconcile's
    ("prev", "acct-1", "2024-05-01T11:40:00Z"),  # previous hour: the reconcile's
    ("a", "acct-1", "2024-05-01T09:15:00Z"),
    ("b", "acct-1", "2024-05-01T09:20:00Z"),  # same hour: handed over once
    ("c", "acct-1", "2024-05-01T08:05:00Z"),
    ("d", "acct-2", "2024-05-01T09:00:00Z"),
)
OLD = [
    RecheckHour("Task", "acct-1", h(8)),
    RecheckHour("Task", "acct-1", h(9)),
    RecheckHour("Task", "acct-2", h(9)),
]


def test_outside_reconcile_window() -> None:
    hours = [h(12), h(11), h(10), h(9)]
    assert outside_reconcile(hours, now=NOW) == (h(9), h(10))
    # At 12:55 the next reconcile ticks may already be 13:00's, which no longer read 11:00.
    assert outside_reconcile(hours, now=NOW + timedelta(minutes=25)) == (h(9), h(10), h(11))
    assert outside_reconcile([h(13), h(12)], now=NOW) == ()  # future hours: inside


def test_recheck_events_merge_contiguous_hours_per_pair() -> None:
    hours = [*OLD, RecheckHour("Task", "acct-1", h(10)), RecheckHour("Task", "acct-1", h(9))]
    assert recheck_events(hours) == [
        {
            "recount": {
                "accountId": "acct-1",
                "model": "Task",
                "start": "2024-05-01T08:00:00Z",
                "end": "2024-05-01T11:00:00Z",
            },
            "reason": "recheck",
        },
        {
            "recount": {
                "accountId": "acct-2",
                "model": "Task",
                "start": "2024-05-01T09:00:00Z",
                "end": "2024-05-01T10:00:00Z",
            },
            "reason": "recheck",
        },
    ]


def test_hours_outside_the_window_are_handed_over_once(
    fake: FakeApi, metrics: list[dict[str, Any]]
) -> None:
    add(fake, ROWS)
    sink = Sink()
    assert run(stream(*ROWS), sink) == {"batchItemFailures": []}
    assert sink.calls == [OLD]  # one send, sorted, deduplicated, no 11:00 or 12:00
    (line,) = metrics
    assert line["RecheckHoursQueued"] == 3 and line["RecheckHoursNotQueued"] == 0
    # Every hour here is a first aggregation holding nothing but the batch's records: the
    # shared path's probe sees that and derives them (docs/incremental.md "Which hours fall
    # back"); derived hours are handed over like recounted ones.
    assert line["DerivationFallbacks"] == 0
    more = (("e", "acct-1", "2024-05-01T09:45:00Z"),)
    add(fake, more)
    assert run(stream(*more), sink) == {"batchItemFailures": []}
    assert metrics[1]["DerivationFallbacks"] == 0
    assert sink.calls[1] == [RecheckHour("Task", "acct-1", h(9))]


def test_nothing_to_hand_over_sends_nothing(fake: FakeApi, metrics: list[dict[str, Any]]) -> None:
    rows = ROWS[:2]
    add(fake, rows)
    sink = Sink()
    run(stream(*rows), sink)
    assert sink.calls == []
    assert metrics[0]["RecheckHoursQueued"] == 0 == metrics[0]["RecheckHoursNotQueued"]


def test_a_failed_send_does_not_fail_the_batch(
    fake: FakeApi, metrics: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    add(fake, ROWS)
    sink = Sink(fail=True)
    assert run(stream(*ROWS), sink) == {"batchItemFailures": []}
    assert len(sink.calls) == 1
    assert count(fake, "tasks#2024-05-01T09:00:00Z#60") == 2  # written, and exact
    assert count(fake, "tasks#2024-05-01T09:00:00Z#60", "acct-2") == 1
    assert metrics[0]["RecheckHoursQueued"] == 0 and metrics[0]["RecheckHoursNotQueued"] == 3
    assert "⚠ recheck not queued: 3 hour(s)" in caplog.text
    assert "AccessDenied" in caplog.text
    assert "Task · acct-1 [2024-05-01T08:00:00Z, 2024-05-01T10:00:00Z)" in caplog.text


def test_without_a_queue_the_hours_are_logged_and_counted(
    fake: FakeApi, metrics: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    add(fake, ROWS)
    run(stream(*ROWS), None)
    assert metrics[0]["RecheckHoursNotQueued"] == 3
    (line,) = [r.getMessage() for r in caplog.records if "not rechecked" in r.getMessage()]
    assert line.startswith("⚠ not rechecked: 3 hour(s)")
    assert "METRICS_AGG_RECHECK_QUEUE_URL" in line and "Task · acct-2 [" in line


def test_a_failed_unit_hands_nothing_over(fake: FakeApi, metrics: list[dict[str, Any]]) -> None:
    add(fake, ROWS)
    # acct-1's aliases of the shared read fail: the unit is reported for a retry.
    fake.alias_error_accounts = {"acct-1"}
    sink = Sink()
    out = run(stream(*ROWS), sink)
    assert out["batchItemFailures"] == [{"itemIdentifier": "100"}]
    assert sink.calls == [[RecheckHour("Task", "acct-2", h(9))]]  # the retry hands over acct-1


def test_a_recheck_recount_reports_what_it_corrected_as_drift(
    fake: FakeApi, metrics: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    add(fake, ROWS)
    run(stream(*ROWS), Sink())
    # A record the stream invocation's lagging read missed: the stored hour is one short.
    add(fake, [("late", "acct-1", "2024-05-01T09:15:30Z")])
    (event,) = [e for e in recheck_events(OLD) if e["recount"]["accountId"] == "acct-1"]
    plain = {"recount": event["recount"]}
    out = run(plain, None)  # an ordinary recount corrects, but reports no drift
    assert out["bucketsWritten"] > 0 and out["driftRepaired"] == 0
    fake.put_stored(
        BucketKey("acct-1", "tasks", h(9), 60),
        BucketValue(count=2, complete=True, error_count=0),
        "2024-05-01T12:00:00.000Z",
    )
    out = run(event, None)
    assert out["status"] == "SUCCESS" and out["driftRepaired"] == 1
    assert metrics[-1]["DriftRepaired"] == 1 and metrics[-1]["EventKind"] == "recount"
    assert "⚠ DriftRepaired: 1 bucket(s) corrected" in caplog.text
    assert count(fake, "tasks#2024-05-01T09:00:00Z#60") == 3


def test_config_knobs() -> None:
    env = {"PLEXUS_API_URL": "https://x"}
    cfg = Config.from_env(env)
    assert cfg.recheck_queue_url is None and cfg.recheck_delay_seconds == 120
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/metrics-backfill"
    cfg = Config.from_env(
        {
            **env,
            "METRICS_AGG_RECHECK_QUEUE_URL": url,
            "METRICS_AGG_RECHECK_DELAY_SECONDS": "900",
        }
    )
    assert cfg.recheck_queue_url == url and cfg.recheck_delay_seconds == 900
    for bad in ("901", "-1", "soon"):
        with pytest.raises(ConfigError, match="METRICS_AGG_RECHECK_DELAY_SECONDS"):
            Config.from_env({**env, "METRICS_AGG_RECHECK_DELAY_SECONDS": bad})
