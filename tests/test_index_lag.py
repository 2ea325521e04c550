"""Eventually consistent index reads (docs/design.md §4.8): what they leave, and its repair.

The local server's ``index_lag_ms`` makes index queries show each write's previous version
for that long. Two stream invocations in quick succession into one minute then each see
only their own batch's record: the second writes a count that misses the first's. The
scheduled reconcile, a direct recount once the index caught up, repairs every bucket, and
its ``DriftRepaired`` figure is the number of buckets a verify found wrong before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server._store_tables import INDEXES
from metrics_agg.local.server.store import Store
from truth_helpers import Stream, assert_matches_truth, iso, recent_now

ACCOUNT = "acct-lag"
LAG_MS = 1000


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "lag.sqlite3", mapping=False, index_lag_ms=LAG_MS) as s:
        yield s


def test_index_queries_see_writes_late(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    try:
        store.index_lag = 0.3
        index = INDEXES["listTaskByAccountIdAndUpdatedAt"]
        now = recent_now()
        item = {"id": "t1", "accountId": "a", "updatedAt": iso(now), "createdAt": iso(now)}
        store.create("Task", item)
        assert store.query(index, "a", None)[0] == []  # new: not visible yet
        assert store.get("Task", ["t1"]) is not None  # gets stay consistent
        time.sleep(0.35)
        assert [r["id"] for r in store.query(index, "a", None)[0]] == ["t1"]
        moved = iso(now - timedelta(minutes=3))
        store.update("Task", ["t1"], {"updatedAt": moved})
        (shown,) = store.query(index, "a", None)[0]
        assert shown["updatedAt"] == item["updatedAt"]  # the previous version
        store.delete("Task", ["t1"])
        assert [r["id"] for r in store.query(index, "a", None)[0]] == ["t1"]
        time.sleep(0.35)
        assert store.query(index, "a", None)[0] == []
    finally:
        store.close()


def test_reconcile_repairs_what_lagging_reads_missed(stack: LocalStack) -> None:
    stream = Stream(stack)
    now = recent_now()
    with LocalClient(stack.endpoint, stack.api_key) as api:
        api.create("Item", accountId=ACCOUNT, createdAt=iso(now - timedelta(minutes=3)))
        assert stream.deliver() == [{"batchItemFailures": []}]
        time.sleep(LAG_MS / 1000 + 0.2)  # the index caught up with the first aggregation
        assert_matches_truth(stack.store, ACCOUNT)
        # Two records in one minute, each delivered at once in its own batch.
        for kind in ("prediction", "evaluation"):
            api.create("Item", accountId=ACCOUNT, createdAt=iso(now), createdByType=kind)
            assert stream.deliver() == [{"batchItemFailures": []}]
    time.sleep(LAG_MS / 1000 + 0.2)
    before = pipeline.verify(
        config=stack.config(),
        account_id=ACCOUNT,
        start=now - timedelta(hours=1),
        end=now + timedelta(hours=1),
    )
    missed = {d.key.composite_key for d in before.mismatches}
    # The second invocation's read did not show the first record: its minute and the
    # coarser buckets over it say 1 where the truth is 2.
    assert any(ck.startswith("items#") and ck.endswith("#1") for ck in missed), missed
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "accountIds": [ACCOUNT]}
    out = pipeline.handle_event(event, config=stack.config())
    assert out["status"] == "SUCCESS"
    assert out["driftRepaired"] == len(missed) > 0
    time.sleep(LAG_MS / 1000 + 0.2)
    assert_matches_truth(stack.store, ACCOUNT)
    again = pipeline.handle_event(event, config=stack.config())
    assert again["driftRepaired"] == 0
