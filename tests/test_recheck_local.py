"""Rechecks on the local stack (docs/incremental.md "Rechecks"): a back-dated change that a
lagging index hid from a stream invocation, in an hour the reconcile no longer reads, is
repaired by the delayed recount the invocation queued, and reported as `DriftRepaired`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.plan import floor_hour
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server.queues import LocalQueues
from metrics_agg.local.server.sqs_mapping import SqsEventSourceMapping
from metrics_agg.local.server.stack import BACKFILL_QUEUE, PROGRESS_QUEUE
from truth_helpers import Stream, assert_matches_truth, iso, recent_now

ACCOUNT = "acct-recheck"
LAG_MS = 1000
DELAY = 4  # seconds: well above the lag, as RecheckDelaySeconds is in a deployment


def _wait(done: Callable[[], bool], timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_local_queue_delays_messages() -> None:
    q = LocalQueues()
    q.create("q")
    q.send("q", "later", delay_seconds=0.3)
    q.send("q", "now")
    assert [m.body for m in q.receive("q", 10)] == ["now"]
    assert q.delayed("q") == 1 and q.attributes("q")["ApproximateNumberOfMessagesDelayed"] == "1"
    time.sleep(0.35)
    assert [m.body for m in q.receive("q", 10)] == ["later"]
    assert q.delayed("q") == 0


def test_botocore_sends_delayed_messages_to_the_local_queue(local_stack: LocalStack) -> None:
    url = local_stack.queue_url(PROGRESS_QUEUE)
    client = QueueClient.for_url(url)
    try:
        client.send(url, ["a", "b"], delay_seconds=2)
        assert client.receive(url) == []
        assert client.attributes(url, ["All"])["ApproximateNumberOfMessagesDelayed"] == "2"
        got = client.receive(url, wait_seconds=5)
        assert {m.body for m in got} <= {"a", "b"} and got
    finally:
        client.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "recheck.sqlite3", mapping=False, index_lag_ms=LAG_MS) as s:
        yield s


def _deliver(stack: LocalStack, stream: Stream) -> None:
    records = stream.take("Item")
    assert records
    out = pipeline.handle_event(
        {"Records": records}, config=stack.config(recheck_delay_seconds=DELAY)
    )
    assert out == {"batchItemFailures": []}


def test_a_delayed_recheck_repairs_what_the_reconcile_cannot(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures: list[emf.InvocationMetrics] = []
    monkeypatch.setattr(emf, "emit", lambda m, **_: figures.append(m))
    stream = Stream(stack)
    now = recent_now()
    when = floor_hour(now) - timedelta(hours=3) + timedelta(minutes=20, seconds=30)
    window = {"start": now - timedelta(hours=4), "end": now + timedelta(hours=1)}
    with LocalClient(stack.endpoint, stack.api_key) as api:
        api.create("Item", accountId=ACCOUNT, createdAt=iso(when))
        _deliver(stack, stream)
        time.sleep(LAG_MS / 1000 + 0.2)
        assert_matches_truth(stack.store, ACCOUNT)
        # Two back-dated records in one minute, each delivered at once in its own batch:
        # the second invocation's read does not show the first record yet.
        for kind in ("prediction", "evaluation"):
            api.create("Item", accountId=ACCOUNT, createdAt=iso(when), createdByType=kind)
            _deliver(stack, stream)
    assert [f.recheck_hours_queued for f in figures] == [1, 1, 1]
    assert stack.queues.delayed(BACKFILL_QUEUE) >= 2  # the last two, sent just now
    bodies = [json.loads(m.body) for m in _peek(stack)]
    assert {json.dumps(b, sort_keys=True) for b in bodies} == {
        json.dumps(
            {
                "recount": {
                    "accountId": ACCOUNT,
                    "model": "Item",
                    "start": iso(floor_hour(when)).replace(".000", ""),
                    "end": iso(floor_hour(when) + timedelta(hours=1)).replace(".000", ""),
                },
                "reason": "recheck",
            },
            sort_keys=True,
        )
    }
    time.sleep(LAG_MS / 1000 + 0.2)
    before = pipeline.verify(config=stack.config(), account_id=ACCOUNT, **window)
    missed = {d.key.composite_key for d in before.mismatches}
    assert any(ck.startswith("items#") and ck.endswith("#1") for ck in missed), missed
    # The scheduled reconcile reads the current and previous hour only: it cannot see them.
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "accountIds": [ACCOUNT]}
    assert pipeline.handle_event(event, config=stack.config())["driftRepaired"] == 0
    still = pipeline.verify(config=stack.config(), account_id=ACCOUNT, **window)
    assert {d.key.composite_key for d in still.mismatches} == missed
    # The queue's mapping runs the rechecks once their delay has passed.
    mapping = SqsEventSourceMapping(
        stack.queues,
        BACKFILL_QUEUE,
        lambda ev: pipeline.handle_event(ev, config=stack.config()),
        max_concurrency=1,
    )
    mapping.start()
    try:
        assert _wait(
            lambda: (
                stack.queues.delayed(BACKFILL_QUEUE) == 0
                and stack.queues.counts(BACKFILL_QUEUE) == (0, 0)
            )
        )
    finally:
        mapping.stop()
    rechecks = [f for f in figures if f.event_kind == "sqs"]
    assert len(rechecks) == 3 and all(f.failed_units == 0 for f in rechecks)
    assert sum(f.drift_repaired for f in rechecks) == len(missed) > 0
    after = pipeline.verify(config=stack.config(), account_id=ACCOUNT, **window)
    assert after.mismatches == ()
    assert_matches_truth(stack.store, ACCOUNT)


def _peek(stack: LocalStack) -> list[Any]:
    """The backfill queue's messages, left in the queue (test-only look inside)."""
    q = stack.queues._queues[BACKFILL_QUEUE]
    return list(q.messages.values())


def test_a_queue_that_refuses_leaves_the_batch_counted_and_says_so(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    figures: list[emf.InvocationMetrics] = []
    monkeypatch.setattr(emf, "emit", lambda m, **_: figures.append(m))
    stream = Stream(local_stack)
    when = floor_hour(recent_now()) - timedelta(hours=5) + timedelta(minutes=7)
    with LocalClient(local_stack.endpoint, local_stack.api_key) as api:
        api.create("Item", accountId=ACCOUNT, createdAt=iso(when))
    config = local_stack.config(recheck_queue_url=local_stack.queue_url("no-such-queue"))
    out = pipeline.handle_event({"Records": stream.take("Item")}, config=config)
    assert out == {"batchItemFailures": []}
    assert_matches_truth(local_stack.store, ACCOUNT)
    (f,) = figures
    assert (f.recheck_hours_queued, f.recheck_hours_not_queued) == (0, 1)
    assert "⚠ recheck not queued: 1 hour(s)" in caplog.text
    assert "QueueError: SQS send_message_batch failed: QueueDoesNotExist" in caplog.text
