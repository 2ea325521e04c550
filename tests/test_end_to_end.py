"""End to end through the local stack over real HTTP (issue 4, Tests).

Every scenario ends by comparing ALL stored buckets of the account with the truth, which
is computed here from the tables (`Store.all_records`) with `datetime.fromisoformat` and
plain loops: not the package's counter, planner or timestamp parser.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from metrics_agg import pipeline
from metrics_agg.local_server import LocalClient, LocalStack, Store

ACCOUNT = "acct-e2e"
SIZES = (1, 5, 15, 60)
TIMESTAMP = {
    "Item": ("createdAt",),
    "ScoreResult": ("updatedAt",),
    "Task": ("updatedAt",),
    "Evaluation": ("updatedAt",),
    "Procedure": ("updatedAt",),
    "ChatSession": ("updatedAt",),
    "FeedbackItem": ("editedAt", "updatedAt", "createdAt"),
}
BASE_TYPE = {
    "Item": "items",
    "ScoreResult": "scoreResults",
    "Task": "tasks",
    "Evaluation": "evaluations",
    "Procedure": "procedures",
    "ChatSession": "chatSessions",
}
CATEGORY = {
    "Item": ("createdByType", {"prediction": "predictionItems", "evaluation": "evaluationItems"}),
    "ScoreResult": (
        "type",
        {"prediction": "predictionScoreResults", "evaluation": "evaluationScoreResults"},
    ),
}


# --------------------------------------------------------------------------- the truth


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _bucket(dt: datetime, minutes: int) -> str:
    floored = dt.replace(second=0, microsecond=0)
    since_midnight = floored.hour * 60 + floored.minute  # every size divides a day
    start = floored - timedelta(minutes=since_midnight % minutes)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def truth(store: Store, account: str) -> dict[str, tuple[int, dict[str, int] | None]]:
    """compositeKey -> (count, feedback metadata) for every non-empty bucket."""
    counts: Counter[str] = Counter()
    meta: dict[str, Counter[str]] = {}
    for model, fields in TIMESTAMP.items():
        for record in store.all_records(model, account):
            raw = next((record[f] for f in fields if record.get(f) not in (None, "")), None)
            dt = _instant(raw)
            if dt is None:
                continue
            if model == "FeedbackItem":
                a, b = record.get("initialAnswerValue"), record.get("finalAnswerValue")
                if record.get("isInvalid") or a is None or b is None:
                    kind = "invalidCount"
                else:
                    kind = "changedCount" if str(a) != str(b) else "unchangedCount"
                scopes = ["feedbackItems"]
                if record.get("scorecardId"):
                    scopes.append(f"feedbackItemsByScorecard#{record['scorecardId']}")
                    if record.get("scoreId"):
                        scopes.append(f"feedbackItemsByScore#{record['scoreId']}")
                for n in SIZES:
                    for scope in scopes:
                        key = f"{scope}#{_bucket(dt, n)}#{n}"
                        counts[key] += 1
                        meta.setdefault(key, Counter())[kind] += 1
                continue
            types = [BASE_TYPE[model]]
            if model in CATEGORY:
                name, mapping = CATEGORY[model]
                if record.get(name) in mapping:
                    types.append(mapping[record[name]])
            for n in SIZES:
                for t in types:
                    counts[f"{t}#{_bucket(dt, n)}#{n}"] += 1
    names = ("changedCount", "unchangedCount", "invalidCount")
    return {
        k: (v, {n: meta[k][n] for n in names} if k in meta else None) for k, v in counts.items()
    }


def assert_matches_truth(store: Store, account: str = ACCOUNT) -> dict[str, dict[str, Any]]:
    """Every stored bucket equals the truth (absent = 0); every non-empty bucket is stored."""
    want = truth(store, account)
    stored = {m["compositeKey"]: m for m in store.all_metrics(account)}
    problems = []
    for key, item in stored.items():
        count, metadata = want.get(key, (0, None))
        if item["count"] != count:
            problems.append(f"{key}: stored {item['count']}, truth {count}")
        if item["recordType"].startswith("feedbackItems"):
            raw = item.get("metadata")
            have = json.loads(raw) if isinstance(raw, str) else (raw or {})
            names = ("changedCount", "unchangedCount", "invalidCount")
            if any(have.get(n, 0) != (metadata or {}).get(n, 0) for n in names):
                problems.append(f"{key}: metadata {have}, truth {metadata}")
        end, updated = _instant(item["timeRangeEnd"]), _instant(item["updatedAt"])
        assert end is not None and updated is not None
        if item["complete"] != (end <= updated):
            problems.append(f"{key}: complete={item['complete']} but ends {end}, wrote {updated}")
    problems += [f"{k}: truth {c}, not stored" for k, (c, _) in want.items() if k not in stored]
    assert not problems, "\n".join(problems[:30])
    return stored


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "e2e.sqlite3", mapping=False) as s:
        yield s


@pytest.fixture
def api(stack: LocalStack) -> Iterator[LocalClient]:
    with LocalClient(stack.endpoint, stack.api_key) as client:
        yield client


class Stream:
    """Hands the stack's stream records to the handler, one event per table (as the
    mapping does), remembering what was delivered."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.cursor: dict[str, int] = {}

    def take(self, model: str) -> list[dict[str, Any]]:
        table = f"{model}-local-NONE"
        records = self.stack.store.read_stream(table, self.cursor.get(table, 0), 10_000)
        if records:
            self.cursor[table] = int(records[-1]["dynamodb"]["SequenceNumber"])
        return records

    def deliver(self, **kwargs: Any) -> list[dict[str, Any]]:
        responses = []
        for model in TIMESTAMP:
            records = self.take(model)
            if records:
                event = {"Records": records}
                responses.append(pipeline.handle_event(event, config=self.stack.config(), **kwargs))
        return responses


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


@pytest.fixture
def now() -> datetime:
    # Mid-minute, in the past, so the records of a test never straddle "now".
    return _minute(datetime.now(UTC)) - timedelta(minutes=2) + timedelta(seconds=30)


# --------------------------------------------------------------------------- scenarios


def test_inserts_moves_deletes_late_invalid_and_missing(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    for i, kind in enumerate(["prediction", "prediction", "evaluation", None, "evaluation"]):
        fields = {"accountId": ACCOUNT, "createdAt": _iso(now - timedelta(minutes=i))}
        if kind:
            fields["createdByType"] = kind
        api.create("Item", **fields)
    lonely = api.create("Item", accountId=ACCOUNT, createdAt=_iso(now - timedelta(minutes=30)))
    moved = api.create(
        "Item",
        accountId=ACCOUNT,
        createdAt=_iso(now - timedelta(minutes=7)),
        createdByType="prediction",
    )
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}
    assert_matches_truth(stack.store)

    # A modify that moves a record into the previous hour, a delete that empties a
    # bucket, a record three hours late, an invalid and a missing timestamp (both
    # written to the table directly: the API would refuse them).
    api.update("Item", moved["id"], createdAt=_iso(now - timedelta(minutes=75)))
    api.delete("Item", lonely["id"])
    api.create(
        "Item",
        accountId=ACCOUNT,
        createdAt=_iso(now - timedelta(hours=3, minutes=4)),
        createdByType="evaluation",
    )
    stack.store.create(
        "Item",
        {
            "id": str(uuid.uuid4()),
            "accountId": ACCOUNT,
            "createdAt": "2024-02-30T10:00:00Z",
            "updatedAt": _iso(now),
            "createdByType": "prediction",
        },
    )
    stack.store.create(
        "Item", {"id": str(uuid.uuid4()), "accountId": ACCOUNT, "updatedAt": _iso(now)}
    )
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}
    stored = assert_matches_truth(stack.store)

    emptied = f"items#{_bucket(now - timedelta(minutes=30), 1)}#1"
    assert stored[emptied]["count"] == 0, "a delete must write the bucket back to zero"
    late = f"evaluationItems#{_bucket(now - timedelta(hours=3, minutes=4), 60)}#60"
    assert stored[late]["count"] == 1


def test_unknown_tables_and_malformed_records_are_skipped(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    api.create("Task", accountId=ACCOUNT, updatedAt=_iso(now))
    api.create("Task", accountId=ACCOUNT, updatedAt=_iso(now - timedelta(minutes=3)))
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
    assert_matches_truth(stack.store)
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
            "createdAt": _iso(at - timedelta(hours=2)),
            "updatedAt": _iso(at),
        }
        if final is not None:
            fields["finalAnswerValue"] = final
        if score is not None:
            fields["scoreId"] = score
        if i % 2:  # edited in the UI: editedAt, not updatedAt, places it
            fields["editedAt"] = _iso(at - timedelta(minutes=1))
        ids.append(api.create("FeedbackItem", **fields)["id"])
    stream.deliver()
    assert_matches_truth(stack.store)

    # A reviewer flips an answer: it moves to a new minute and from unchanged to changed.
    api.update("FeedbackItem", ids[1], finalAnswerValue="no", editedAt=_iso(now))
    api.delete("FeedbackItem", ids[2])
    stream.deliver()
    stored = assert_matches_truth(stack.store)
    types = {m["recordType"] for m in stored.values()}
    assert types == {"feedbackItems", "feedbackItemsByScorecard", "feedbackItemsByScore"}


def test_racing_invocations_end_at_the_truth(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    """DESIGN §4.5: A (older snapshot) deletes, B (newer) inserts in the same bucket and
    sees "unchanged"; A's write arrives last. B must still have written, and A must lose."""
    stream = Stream(stack)
    first = api.create("Item", accountId=ACCOUNT, createdAt=_iso(now))
    stream.deliver()
    assert_matches_truth(stack.store)

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
    api.create("Item", accountId=ACCOUNT, createdAt=_iso(now + timedelta(seconds=5)))
    (response_b,) = stream.deliver()
    racer.join(30)
    assert response_b == {"batchItemFailures": []}
    assert result["a"] == {"batchItemFailures": []}
    stored = assert_matches_truth(stack.store)
    assert stored[f"items#{_bucket(now, 1)}#1"]["count"] == 1


def test_failure_mid_pagination_writes_nothing_for_that_unit(
    stack: LocalStack, api: LocalClient, now: datetime
) -> None:
    stream = Stream(stack)
    for i in range(12):
        api.create("Item", accountId=ACCOUNT, createdAt=_iso(now - timedelta(minutes=i)))
    api.create("Task", accountId=ACCOUNT, updatedAt=_iso(now))
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
    assert_matches_truth(stack.store)


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

    with LocalStack(db, mapping=True, batch_window=0.05, handler=handler) as first:
        current["stack"] = first
        ready.set()
        with LocalClient(first.endpoint, first.api_key) as api:
            for i in range(8):  # Task: batch size 1, so eight deliveries
                api.create("Task", accountId=ACCOUNT, updatedAt=_iso(now - timedelta(minutes=i)))
        deadline = time.monotonic() + 30
        while len(delivered) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        threading.Timer(0.2, gate.set).start()  # released once stop() has begun
    assert 2 <= len(delivered) < 8, "the stream was not interrupted"
    ready.clear()
    with LocalStack(db, mapping=True, batch_window=0.05, handler=handler) as second:
        current["stack"] = second
        ready.set()
        assert second.wait_idle(60)
        store = second.store
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in store.read_stream("Task", 0, 100)]
        assert sorted(delivered) == seqs, "a record was lost"
        assert set(delivered.values()) == {1}, "a record was delivered twice"
        assert_matches_truth(store)
