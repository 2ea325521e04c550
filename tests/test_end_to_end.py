"""End to end through the local stack over real HTTP (issue 4, Tests).

Every scenario ends by comparing ALL stored buckets of the account with the truth, which
`truth_helpers` computes from the tables (`Store.all_records`) with `datetime.fromisoformat`
and plain loops: not the package's counter, planner or timestamp parser.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.local.server import LocalClient, LocalStack
from truth_helpers import Stream, assert_matches_truth, bucket_start, iso, recent_now

ACCOUNT = "acct-e2e"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "e2e.sqlite3", mapping=False) as s:
        yield s


@pytest.fixture
def api(stack: LocalStack) -> Iterator[LocalClient]:
    with LocalClient(stack.endpoint, stack.api_key) as client:
        yield client


@pytest.fixture
def now() -> datetime:
    return recent_now()


# --------------------------------------------------------------------------- scenarios


def test_inserts_moves_deletes_late_invalid_and_missing(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    for i, kind in enumerate(["prediction", "prediction", "evaluation", None, "evaluation"]):
        fields = {"accountId": ACCOUNT, "createdAt": iso(now - timedelta(minutes=i))}
        if kind:
            fields["createdByType"] = kind
        api.create("Item", **fields)
    lonely = api.create("Item", accountId=ACCOUNT, createdAt=iso(now - timedelta(minutes=30)))
    moved = api.create(
        "Item",
        accountId=ACCOUNT,
        createdAt=iso(now - timedelta(minutes=7)),
        createdByType="prediction",
    )
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}
    assert_matches_truth(stack.store, ACCOUNT)

    # A modify that moves a record into the previous hour, a delete that empties a
    # bucket, a record three hours late, an invalid and a missing timestamp (both
    # written to the table directly: the API would refuse them).
    api.update("Item", moved["id"], createdAt=iso(now - timedelta(minutes=75)))
    api.delete("Item", lonely["id"])
    api.create(
        "Item",
        accountId=ACCOUNT,
        createdAt=iso(now - timedelta(hours=3, minutes=4)),
        createdByType="evaluation",
    )
    stack.store.create(
        "Item",
        {
            "id": str(uuid.uuid4()),
            "accountId": ACCOUNT,
            "createdAt": "2024-02-30T10:00:00Z",
            "updatedAt": iso(now),
            "createdByType": "prediction",
        },
    )
    stack.store.create(
        "Item", {"id": str(uuid.uuid4()), "accountId": ACCOUNT, "updatedAt": iso(now)}
    )
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}
    stored = assert_matches_truth(stack.store, ACCOUNT)

    emptied = f"items#{bucket_start(now - timedelta(minutes=30), 1)}#1"
    assert stored[emptied]["count"] == 0, "a delete must write the bucket back to zero"
    late = f"evaluationItems#{bucket_start(now - timedelta(hours=3, minutes=4), 60)}#60"
    assert stored[late]["count"] == 1


def test_unknown_tables_and_malformed_records_are_skipped(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    api.create("Task", accountId=ACCOUNT, updatedAt=iso(now))
    api.create("Task", accountId=ACCOUNT, updatedAt=iso(now - timedelta(minutes=3)))
    records = stream.take("Task")
    unknown = json.loads(json.dumps(records[0]))
    unknown["eventSourceARN"] = unknown["eventSourceARN"].replace(
        "table/Task-local-NONE", "table/Taskforce-local-NONE"
    )
    unknown["eventID"] = "unknown-table"
    malformed = {
        "eventID": "broken",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": records[0]["eventSourceARN"],
        "dynamodb": {
            "SequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "NewImage": {"id": {"S": "no-account"}, "updatedAt": {"N": "x"}},
        },
    }
    event = {"Records": [unknown, malformed, *records]}
    response = pipeline.handle_event(event, config=stack.config())
    assert response == {"batchItemFailures": []}
    assert_matches_truth(stack.store, ACCOUNT)
    assert not [m for m in stack.store.all_metrics() if m["accountId"] != ACCOUNT]


def test_every_feedback_scope_with_changed_unchanged_and_invalid(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    answers = [
        ("yes", "no", False),
        ("yes", "yes", False),
        ("no", "no", True),
        ("yes", None, False),
    ]
    scopes = [("sc-1", "s-a"), ("sc-1", "s-b"), ("sc-2", "s-c"), ("sc-2", None)]
    ids = []
    for i, ((initial, final, invalid), (scorecard, score)) in enumerate(
        zip(answers * 3, scopes * 3, strict=True)
    ):
        at = now - timedelta(minutes=i * 4)
        fields: dict[str, Any] = {
            "accountId": ACCOUNT,
            "scorecardId": scorecard,
            "initialAnswerValue": initial,
            "isInvalid": invalid,
            "createdAt": iso(at - timedelta(hours=2)),
            "updatedAt": iso(at),
        }
        if final is not None:
            fields["finalAnswerValue"] = final
        if score is not None:
            fields["scoreId"] = score
        if i % 2:  # edited in the UI: editedAt, not updatedAt, places it
            fields["editedAt"] = iso(at - timedelta(minutes=1))
        ids.append(api.create("FeedbackItem", **fields)["id"])
    stream.deliver()
    assert_matches_truth(stack.store, ACCOUNT)

    # A reviewer flips an answer: it moves to a new minute and from unchanged to changed.
    api.update("FeedbackItem", ids[1], finalAnswerValue="no", editedAt=iso(now))
    api.delete("FeedbackItem", ids[2])
    stream.deliver()
    stored = assert_matches_truth(stack.store, ACCOUNT)
    types = {m["recordType"] for m in stored.values()}
    assert types == {"feedbackItems", "feedbackItemsByScorecard", "feedbackItemsByScore"}


def test_racing_invocations_end_at_the_truth(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    """docs/design.md §4.5: A (older snapshot) deletes, B (newer) inserts in the same bucket and
    sees "unchanged"; A's write arrives last. B must still have written, and A must lose."""
    stream = Stream(stack)
    first = api.create("Item", accountId=ACCOUNT, createdAt=iso(now))
    stream.deliver()
    assert_matches_truth(stack.store, ACCOUNT)

    api.delete("Item", first["id"])
    event_a = {"Records": stream.take("Item")}
    delayed = stack.faults.add(field="updateAggregatedMetrics", action="delay", delay=1.5)
    result: dict[str, Any] = {}
    racer = threading.Thread(
        target=lambda: result.update(a=pipeline.handle_event(event_a, config=stack.config()))
    )
    racer.start()
    deadline = time.monotonic() + 30
    while not delayed.fired:  # A has read and counted; its first write is on hold
        assert time.monotonic() < deadline, "invocation A never wrote"
        time.sleep(0.01)
    api.create("Item", accountId=ACCOUNT, createdAt=iso(now + timedelta(seconds=5)))
    (response_b,) = stream.deliver()
    racer.join(30)
    assert response_b == {"batchItemFailures": []}
    assert result["a"] == {"batchItemFailures": []}
    stored = assert_matches_truth(stack.store, ACCOUNT)
    assert stored[f"items#{bucket_start(now, 1)}#1"]["count"] == 1


def test_failure_mid_pagination_writes_nothing_for_that_unit(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    for i in range(12):
        api.create("Item", accountId=ACCOUNT, createdAt=iso(now - timedelta(minutes=i)))
    api.create("Task", accountId=ACCOUNT, updatedAt=iso(now))
    items = stream.take("Item")
    tasks = stream.take("Task")
    # Page 2 of the item query fails on every attempt: the Item unit must not be trusted.
    stack.faults.add(field="listItemByAccountIdAndCreatedAt", nth=2, times=None, action="http_500")
    config = stack.config(page_limit=5, read_parallelism=1, max_attempts=2)
    # One event with both tables' records, so the good unit shows the failure stays local.
    response = pipeline.handle_event({"Records": items[5:] + tasks + items[:5]}, config=config)
    lowest = min(int(r["dynamodb"]["SequenceNumber"]) for r in items)
    assert [int(f["itemIdentifier"]) for f in response["batchItemFailures"]] == [lowest]
    written = {m["recordType"] for m in stack.store.all_metrics(ACCOUNT)}
    assert written == {"tasks"}, "the failed unit wrote buckets"

    stack.faults.clear()  # the mapping retries from the reported sequence number
    assert pipeline.handle_event({"Records": items}, config=stack.config()) == {
        "batchItemFailures": []
    }
    assert_matches_truth(stack.store, ACCOUNT)


def test_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path, now: datetime) -> None:
    db = tmp_path / "restart.sqlite3"
    delivered: Counter[int] = Counter()
    current: dict[str, LocalStack] = {}
    ready, gate = threading.Event(), threading.Event()

    def handler(event: dict[str, Any]) -> Mapping[str, Any]:
        ready.wait(10)
        if not gate.is_set() and len(delivered) >= 2:
            gate.wait(30)  # the third batch is in flight when the stack is stopped
        response = pipeline.handle_event(event, config=current["stack"].config())
        if not response["batchItemFailures"]:
            delivered.update(int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"])
        return response

    one = {"Task": (1, 0.05)}  # batch size 1: eight deliveries
    with LocalStack(db, mapping=True, batching=one, handler=handler) as first:
        current["stack"] = first
        ready.set()
        with LocalClient(first.endpoint, first.api_key) as api:
            for i in range(8):
                api.create("Task", accountId=ACCOUNT, updatedAt=iso(now - timedelta(minutes=i)))
        deadline = time.monotonic() + 30
        while len(delivered) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        threading.Timer(0.2, gate.set).start()  # released once stop() has begun
    assert 2 <= len(delivered) < 8, "the stream was not interrupted"
    ready.clear()
    with LocalStack(db, mapping=True, batching=one, handler=handler) as second:
        current["stack"] = second
        ready.set()
        assert second.wait_idle(60)
        store = second.store
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in store.read_stream("Task", 0, 100)]
        assert sorted(delivered) == seqs, "a record was lost"
        assert set(delivered.values()) == {1}, "a record was delivered twice"
        assert_matches_truth(store, ACCOUNT)
