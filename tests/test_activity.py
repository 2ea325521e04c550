"""Units record their (model, account, hour); the 5-minute reconcile reads those pairs.

Against the local stack, whose server answers DynamoDB's protocol for the activity table
(`local.server.dynamodb`), so the aggregator's botocore client runs as in Lambda. What must
not be lost: a pair whose record failed to write (its unit is reported failed, and the
retry records it), a pair whose reconcile failed (still recorded next pass), and pairs
that reach the aggregator through a recount event (the on-failure replay) or the backfill
queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.activity import (
    Activity,
    ActivityLog,
    DynamoActivityTable,
    reconcile_hours,
    unit_activity,
)
from metrics_agg.aggregator.plan import plan_recount
from metrics_agg.errors import ActivityError
from metrics_agg.local.server import LocalStack
from metrics_agg.local.server.dynamodb import PAGE_ITEMS
from metrics_agg.models import SOURCE_MODELS, UnitKey
from metrics_agg.timestamps import format_bucket_time
from truth_helpers import assert_matches_truth

SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
WRITES = "dynamodb.BatchWriteItem"
QUERIES = "dynamodb.Query"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _write(stack: LocalStack, model: str, account: str, at: datetime) -> dict[str, Any]:
    """One record of ``model`` written at ``at``; its stream batch, not delivered."""
    table = f"{model}-local-NONE"
    after = stack.store.stream_end(table)
    stamp = _stamp(at)
    record = {"id": str(uuid.uuid4()), "accountId": account, "createdAt": stamp}
    record["updatedAt"] = stamp
    if model == "FeedbackItem":
        record |= {"scorecardId": "sc", "scoreId": "s", "editedAt": stamp}
    stack.store.create(model, record)
    return {"Records": stack.store.read_stream(table, after, 10)}


def _recorded(stack: LocalStack) -> set[tuple[str, str]]:
    return set(stack.store.activity_pairs())


def _hour(at: datetime) -> str:
    return format_bucket_time(at.replace(minute=0, second=0, microsecond=0))


def _now() -> datetime:
    # Early in a slot and an hour, so a test's few seconds never cross either.
    now = datetime.now(UTC)
    return now.replace(minute=(now.minute // 5) * 5 + 1, second=0, microsecond=0)


def test_stream_units_record_their_pairs(local_stack: LocalStack) -> None:
    now = _now()
    event = _write(local_stack, "Task", "acct-1", now - timedelta(minutes=1))
    out = pipeline.handle_event(event, config=local_stack.config(), now=now)
    assert out == {"batchItemFailures": []}
    assert (_hour(now), "Task#acct-1") in _recorded(local_stack)
    assert {p for _, p in _recorded(local_stack)} == {"Task#acct-1"}
    assert local_stack.activity_faults.field_requests[WRITES] == 1


def test_a_busy_pair_is_written_once_per_slot(local_stack: LocalStack) -> None:
    now = _now()
    config = local_stack.config()
    for n in range(4):  # four batches of the same pair within one 5-minute slot
        event = _write(local_stack, "Item", "busy", now - timedelta(seconds=30 + n))
        assert pipeline.handle_event(event, config=config, now=now) == {"batchItemFailures": []}
    assert local_stack.activity_faults.field_requests[WRITES] == 1
    later = now + timedelta(minutes=5)  # the next slot: written again, once
    for n in range(2):
        event = _write(local_stack, "Item", "busy", later - timedelta(seconds=10 + n))
        pipeline.handle_event(event, config=config, now=later)
    assert local_stack.activity_faults.field_requests[WRITES] == 2
    assert {p for _, p in _recorded(local_stack)} == {"Item#busy"}


class _Store:
    """An ActivityStore that keeps what it was given and can refuse."""

    def __init__(self) -> None:
        self.puts: list[tuple[list[Activity], int]] = []
        self.fail = False
        self.request_count = 0

    def put(self, records: Sequence[Activity], *, slot: int) -> None:
        self.request_count += 1
        if self.fail:
            raise ActivityError("refused")
        self.puts.append((list(records), slot))

    def pairs(self, hour: datetime) -> set[UnitKey]:
        self.request_count += 1
        return {UnitKey(r.model, r.account_id) for rs, _ in self.puts for r in rs if r.hour == hour}


def test_the_slot_memory_forgets_a_failed_write() -> None:
    store = _Store()
    log = ActivityLog(store)
    now = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)
    rec = Activity("Task", "a", datetime(2024, 5, 1, 12, tzinfo=UTC))
    store.fail = True
    with pytest.raises(ActivityError):
        log.record([rec], now)
    store.fail = False
    assert log.record([rec], now + timedelta(minutes=1)) == 1  # not remembered as written
    assert log.record([rec, rec], now + timedelta(minutes=2)) == 0  # same slot: skipped
    assert log.record([rec], now + timedelta(minutes=5)) == 1  # next slot
    assert [slot for _, slot in store.puts] == [
        int(now.timestamp()) // 300,
        int(now.timestamp()) // 300 + 1,
    ]


def test_unit_activity_keeps_the_hours_the_reconcile_reads() -> None:
    now = datetime(2024, 5, 1, 12, 40, tzinfo=UTC)
    week = plan_recount("Item", "a", now - timedelta(days=7), now)
    got = unit_activity([week, week], now)
    assert {r.hour for r in got} == set(reconcile_hours(now))
    assert {(r.model, r.account_id) for r in got} == {("Item", "a")}
    old = plan_recount("Item", "a", now - timedelta(days=2), now - timedelta(days=1))
    assert unit_activity([old], now) == set()


def test_a_failed_activity_write_fails_the_unit_and_the_retry_records_it(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = _now()
    config = local_stack.config()
    event = _write(local_stack, "Task", "acct-1", now - timedelta(minutes=1))
    sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]
    local_stack.activity_faults.add(WRITES, action="http_400")
    lines: list[str] = []

    def capture(metrics: emf.InvocationMetrics, **kwargs: Any) -> None:
        lines.append(emf.render(metrics))

    monkeypatch.setattr(emf, "emit", capture)
    out = pipeline.handle_event(event, config=config, now=now)
    # The unit's buckets were written, but its pair is not recorded: the unit is reported,
    # so the stream retries the batch from its record.
    assert out == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    assert _recorded(local_stack) == set()
    assert json.loads(lines[-1])["ActivityRecordsNotWritten"] == 2  # two hours of one pair
    assert json.loads(lines[-1])["FailedUnits"] == 1
    # The retry (same batch) records it, and the next scheduled pass reconciles it.
    assert pipeline.handle_event(event, config=config, now=now) == {"batchItemFailures": []}
    assert (_hour(now), "Task#acct-1") in _recorded(local_stack)
    out = pipeline.handle_event(SCHEDULED, config=config, now=now)
    assert (out["status"], out["units"]) == ("SUCCESS", 1)
    assert_matches_truth(local_stack.store, "acct-1")


def test_an_activity_table_that_stays_down_fails_the_unit_after_retries(
    local_stack: LocalStack,
) -> None:
    now = _now()
    event = _write(local_stack, "Item", "acct-1", now - timedelta(minutes=1))
    local_stack.activity_faults.add(WRITES, action="http_500", times=None)
    out = pipeline.handle_event(event, config=local_stack.config(), now=now)
    assert len(out["batchItemFailures"]) == 1
    assert local_stack.activity_faults.field_requests[WRITES] == 3  # botocore's attempts


def test_a_failed_reconcile_leaves_the_pair_recorded(local_stack: LocalStack) -> None:
    now = _now()
    config = local_stack.config()
    event = _write(local_stack, "Task", "acct-1", now - timedelta(minutes=1))
    assert pipeline.handle_event(event, config=config, now=now) == {"batchItemFailures": []}
    before = _recorded(local_stack)
    local_stack.faults.add(
        field=SOURCE_MODELS["Task"].list_queries[0], action="http_400", times=None
    )
    out = pipeline.handle_event(SCHEDULED, config=config, now=now)
    assert out["status"] == "PARTIAL" and out["failedUnits"] == ["Task/acct-1"]
    assert _recorded(local_stack) == before  # nothing deleted: the next pass reads it again
    local_stack.faults.clear()
    out = pipeline.handle_event(SCHEDULED, config=config, now=now + timedelta(minutes=5))
    assert (out["status"], out["units"], out["failedUnits"]) == ("SUCCESS", 1, [])


def test_a_replayed_recount_is_recorded(local_stack: LocalStack) -> None:
    """The on-failure replay (docs/operations.md) is a recount event: its pairs are
    recorded too, for the hours the reconcile reads; an old window records nothing."""
    now = _now()
    config = local_stack.config()
    old = {
        "recount": {
            "accountId": "acct-9",
            "model": "Item",
            "start": format_bucket_time(now - timedelta(days=2)),
            "end": format_bucket_time(now - timedelta(days=1)),
        }
    }
    assert pipeline.handle_event(old, config=config, now=now)["status"] == "SUCCESS"
    assert _recorded(local_stack) == set()
    assert local_stack.activity_faults.field_requests[WRITES] == 0
    recent = {
        "recount": {
            "accountId": "acct-9",
            "model": "Item",
            "start": format_bucket_time(now - timedelta(hours=3)),
            "end": format_bucket_time(reconcile_hours(now)[1] + timedelta(hours=1)),
        }
    }
    assert pipeline.handle_event(recent, config=config, now=now)["status"] == "SUCCESS"
    assert _recorded(local_stack) == {(_hour(h), "Item#acct-9") for h in reconcile_hours(now)}


def _queue_event(body: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "r",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:metrics-agg-backfill",
            }
        ]
    }


def test_backfill_units_are_recorded_and_a_failed_record_fails_the_message(
    local_stack: LocalStack,
) -> None:
    now = _now()
    config = local_stack.config()
    unit = {
        "recount": {
            "accountId": "acct-5",
            "model": "Task",
            "start": format_bucket_time(now - timedelta(hours=1, minutes=now.minute)),
            "end": format_bucket_time(now + timedelta(hours=1)),
        }
    }
    local_stack.activity_faults.add(WRITES, action="http_400")
    out = pipeline.handle_event(_queue_event(unit, "m-7"), config=config, now=now)
    assert out == {"batchItemFailures": [{"itemIdentifier": "m-7"}]}
    assert _recorded(local_stack) == set()
    out = pipeline.handle_event(_queue_event(unit, "m-7"), config=config, now=now)
    assert out == {"batchItemFailures": []}
    assert {p for _, p in _recorded(local_stack)} == {"Task#acct-5"}


def test_the_scheduled_pass_reconciles_the_recorded_pairs_only(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = _now()
    config = local_stack.config(account_ids=("configured",))
    for model, account in (("Task", "a"), ("Item", "a"), ("Evaluation", "b")):
        event = _write(local_stack, model, account, now - timedelta(minutes=2))
        assert pipeline.handle_event(event, config=config, now=now) == {"batchItemFailures": []}
    # Written but never delivered to the stream path: not recorded, so not reconciled (the
    # sweep's job); and a pair recorded for an hour the pass no longer reads.
    _write(local_stack, "Procedure", "c", now - timedelta(minutes=3))
    table = DynamoActivityTable(
        config.activity_table or "", region=None, endpoint=config.activity_endpoint
    )
    table.put([Activity("Item", "old", reconcile_hours(now)[0] - timedelta(hours=1))], slot=0)
    local_stack.activity_faults.reset_counts()
    seen: list[list[str]] = []
    real = pipeline._run_units

    def spy(client: Any, units: Any, **kwargs: Any) -> Any:
        seen.append([f"{u.key.model}/{u.key.account_id}" for u in units])
        return real(client, units, **kwargs)

    monkeypatch.setattr(pipeline, "_run_units", spy)
    out = pipeline.handle_event(SCHEDULED, config=config, now=now)
    configured = {f"{m}/configured" for m in SOURCE_MODELS}
    assert set(seen[0]) == {"Task/a", "Item/a", "Evaluation/b"} | configured
    assert out["status"] == "SUCCESS" and out["units"] == 3 + len(SOURCE_MODELS)
    assert local_stack.activity_faults.field_requests == {QUERIES: 2}
    for account in ("a", "b"):
        assert_matches_truth(local_stack.store, account)


def test_an_unreadable_activity_table_fails_the_scheduled_pass(local_stack: LocalStack) -> None:
    local_stack.activity_faults.add(QUERIES, action="http_400")
    out = pipeline.handle_event(SCHEDULED, config=local_stack.config(), now=_now())
    assert out["status"] == "PARTIAL" and out["failedUnits"] == ["*/*"]


def test_the_local_table_pages_a_busy_hour(local_stack: LocalStack) -> None:
    config = local_stack.config()
    table = DynamoActivityTable(
        config.activity_table or "", region=None, endpoint=config.activity_endpoint
    )
    hour = reconcile_hours(datetime.now(UTC))[1]  # not expired: a put purges expired items
    records = [Activity("Item", f"acct-{n:04d}", hour) for n in range(PAGE_ITEMS * 2 + 7)]
    table.put(records, slot=1)
    table.put(records[:30], slot=2)  # a put replaces: still one item per pair
    assert table.pairs(hour) == {UnitKey("Item", f"acct-{n:04d}") for n in range(len(records))}
    assert table.pairs(hour + timedelta(hours=1)) == set()
    assert local_stack.activity_faults.field_requests[QUERIES] == 3 + 1
    assert local_stack.activity_faults.field_requests[WRITES] == -(-len(records) // 25) + 2
    other = DynamoActivityTable("no-such-table", region=None, endpoint=config.activity_endpoint)
    with pytest.raises(ActivityError, match="ResourceNotFoundException"):
        other.pairs(hour)
