"""The cost model (docs/cost.md): the capacity meter, the price arithmetic and the script.

The meter's counts are checked on tiny deterministic workloads whose buckets are known; the
script's quick mode runs end to end. No figure here is timed.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.cost import PRICES, Usage, application_cost, per_million, price
from metrics_agg.local.server import LocalStack, Store
from metrics_agg.local.server.capacity import item_size
from metrics_agg.local.server.queues import LocalQueues, handle_sqs_request
from metrics_agg.local.server.store import ConditionalCheckFailed
from truth_helpers import Stream, iso, recent_now

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import cost_model

METRICS = "AggregatedMetrics-local-NONE"


def _bucket(**extra: Any) -> dict[str, Any]:
    return {
        "accountId": "a",
        "compositeKey": "items#2026-12-06T10:00:00Z#1",
        "recordType": "items",
        "timeRangeStart": "2026-12-06T10:00:00Z",
        "timeRangeEnd": "2026-12-06T10:01:00Z",
        "numberOfMinutes": 1,
        "count": 3,
        "complete": True,
    } | extra


# --------------------------------------------------------------------------- item sizes


def test_item_size_follows_dynamodb_rules() -> None:
    assert item_size({"a": "xyz"}) == 1 + 3
    assert item_size({"n": 123}) == 1 + 3  # 3 digits: (3 + 1) // 2 + 1
    assert item_size({"flag": True, "none": None}) == 4 + 1 + 4 + 1
    assert item_size({"m": {"k": "v"}}) == 1 + 3 + (1 + 1 + 1)
    assert item_size({"é": "é"}) == 2 + 2  # UTF-8 bytes, not characters


# --------------------------------------------------------------------------- the meter


def test_meter_counts_base_and_gsi_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    try:
        meter = store.meter_capacity()
        store.create("AggregatedMetrics", _bucket())
        u = meter.usage()[METRICS]
        # No scorecardId/scoreId: only the two account indexes hold it (the others are sparse).
        assert (u.items_written, u.write_units, u.gsi_writes) == (1, 1, 2)
        assert u.gsi_writes_by_index == {"byAccountRecordType": 1, "byAccountTimeRangeRecord": 1}
        key = ["a", "items#2026-12-06T10:00:00Z#1"]
        store.update("AggregatedMetrics", key, {"count": 4})  # a non-key attribute: 1 per index
        store.update("AggregatedMetrics", key, {"count": 4})  # unchanged: no index write
        store.update("AggregatedMetrics", key, {"scorecardId": "sc", "scoreId": "s"})
        u = meter.usage()[METRICS]
        # 2 + 2 (count) + 0 (unchanged) + 2 (account indexes) + 2 (entering the sparse ones)
        assert (u.items_written, u.gsi_writes) == (4, 8)
        store.delete("AggregatedMetrics", key)  # leaves all four indexes
        with pytest.raises(ConditionalCheckFailed):
            store.delete("AggregatedMetrics", key)
        u = meter.usage()[METRICS]
        assert (u.items_written, u.failed_writes, u.gsi_writes) == (5, 1, 12)
        assert u.write_units == 5 + 1  # every item under 1 KB; a failed check costs one
        assert u.all_write_units == u.write_units + u.gsi_write_units == 6 + 12
    finally:
        store.close()


def test_meter_rounds_a_page_up_once_and_halves_for_eventual_reads(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    try:
        big = "x" * 1500
        for i in range(5):
            store.create("AggregatedMetrics", _bucket(compositeKey=f"k{i}", metadata=big))
        meter = store.meter_capacity()
        from metrics_agg.local.server._store_tables import INDEXES

        items, _ = store.query(INDEXES["AggregatedMetrics"], "a", None, limit=100)
        u = meter.usage()[METRICS]
        size = sum(item_size(i) for i in items)
        assert (u.reads, u.rows_read, u.read_bytes) == (1, 5, size)
        assert 4096 < size < 5 * 4096
        assert u.strong_read_units == math.ceil(size / 4096)  # not 5 (one per item)
        assert u.read_units() == u.strong_read_units / 2
        assert u.read_units(consistent=True) == u.strong_read_units
        assert u.write_units == 0  # metered only from meter_capacity on
    finally:
        store.close()


def test_unmetered_store_counts_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    try:
        store.create("AggregatedMetrics", _bucket())
        assert store.capacity is None
    finally:
        store.close()


def test_pipeline_bucket_writes_and_units_on_a_known_batch(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    """Three prediction Items in one minute of a new hour: 8 buckets (items and
    predictionItems at 1/5/15/60 minutes), each one WRU plus two index writes; a MODIFY
    that changes nothing counted then costs nothing on the shared path."""
    stack = make_local_stack()
    meter = stack.store.meter_capacity()
    now = iso(recent_now())
    for i in range(3):
        item = {"id": f"i{i}", "accountId": "a", "createdAt": now, "updatedAt": now}
        stack.store.create("Item", item | {"createdByType": "prediction"})
    stream = Stream(stack)
    config = stack.config(invocation_path="shared")
    assert pipeline.handle_event({"Records": stream.take("Item")}, config=config) == {
        "batchItemFailures": []
    }
    u = meter.usage()[METRICS]
    assert len(stack.store.all_metrics("a")) == 8
    assert (u.items_written, u.write_units, u.gsi_writes, u.gsi_write_units) == (8, 8, 16, 16)
    assert u.all_write_units == 24
    stack.faults.reset_counts()
    stack.store.update("Item", ["i0"], {"description": "edited", "updatedAt": now})
    assert pipeline.handle_event({"Records": stream.take("Item")}, config=config) == {
        "batchItemFailures": []
    }
    assert meter.usage()[METRICS].items_written == 8
    assert stack.faults.requests == 0


def test_sqs_requests_and_messages_are_counted() -> None:
    queues = LocalQueues()
    queues.create("q")
    base = "http://127.0.0.1:1"
    url = f"{base}/000000000000/q"
    handle_sqs_request(queues, "SendMessage", {"QueueUrl": url, "MessageBody": "a"}, base)
    entries = [{"Id": str(i), "MessageBody": "b"} for i in range(3)]
    handle_sqs_request(queues, "SendMessageBatch", {"QueueUrl": url, "Entries": entries}, base)
    assert queues.requests == {"SendMessage": 1, "SendMessageBatch": 1}
    assert queues.messages_sent == {"q": 4}


# --------------------------------------------------------------------------- prices


def _usage(**overrides: Any) -> Usage:
    base: dict[str, Any] = dict(
        writes=2000,
        invocations=40,
        appsync_operations=3000,
        source_rows_read=0,
        source_read_units=100.0,
        metrics_rows_read=0,
        metrics_read_units=300.0,
        bucket_writes=1000,
        bucket_write_units=1000,
        gsi_writes=2000,
        gsi_write_units=2000,
        lambda_seconds=2.0,
        memory_mb=1024,
        sqs_requests=10,
        fallbacks=6,
        stream_invocations=30,
    )
    return Usage(**(base | overrides))


def test_price_conversion_per_million_writes() -> None:
    figures = per_million(_usage())
    assert figures.appsync_operations == 1_500_000
    assert figures.write_units == 1_500_000  # base 1000 + GSI 2000, over 2000 writes
    assert figures.gb_seconds == pytest.approx(1000.0)  # 2 s at 1 GB over 2000 writes
    assert figures.fallbacks_per_invocation == pytest.approx(0.2)
    bill = price(figures)
    assert bill.appsync == pytest.approx(6.00)
    assert bill.dynamodb_write == pytest.approx(1.5 * 0.625)
    assert bill.dynamodb_read == pytest.approx(0.2 * 0.125)  # (100 + 300) RRU x 500
    assert bill.lambda_requests == pytest.approx(0.02 * 0.20)
    assert bill.lambda_compute == pytest.approx(1000 * 0.0000166667)
    assert bill.sqs == pytest.approx(0.005 * 0.40)
    arm = price(figures, arch="arm64")
    assert arm.lambda_compute == pytest.approx(1000 * 0.0000133334)
    assert bill.total == pytest.approx(6.0 + 0.9375 + 0.025 + 0.004 + 0.0166667 + 0.002, rel=1e-6)
    half_memory = per_million(_usage(memory_mb=512))
    assert half_memory.gb_seconds == pytest.approx(500.0)


def test_price_table_names_region_date_and_sources() -> None:
    assert PRICES.region == "us-east-1"
    assert PRICES.as_of
    named = {name for name, _ in PRICES.sources}
    assert named == {"AppSync", "DynamoDB", "Lambda", "SQS"}
    assert all(url.startswith("https://aws.amazon.com/") for _, url in PRICES.sources)


def test_application_cost_per_million_writes() -> None:
    assert application_cost().total == pytest.approx(4.00 + 0.625)
    assert application_cost(index_writes=2).total == pytest.approx(4.00 + 3 * 0.625)


def test_per_million_refuses_a_run_without_writes() -> None:
    with pytest.raises(ValueError, match="without source writes"):
        per_million(_usage(writes=0))


# --------------------------------------------------------------------------- the script


def test_template_memory_size_is_read() -> None:
    assert 256 <= cost_model.template_memory_mb() <= 10240


def test_quick_mode_runs_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.json"
    level = logging.getLogger("metrics_agg").level
    assert cost_model.main(["--quick", "--seconds", "2", "--json", str(out)]) == 0
    assert logging.getLogger("metrics_agg").level == level  # muted only while it ran
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert [m["path"] for m in row] == ["per-unit", "shared"]
    writes = row[0]["writes"]
    assert writes == row[1]["writes"]  # the same seeded sequence on both paths
    assert sum(writes.values()) == 20  # 10 writes/s for 2 s
    for m in row:
        usage = m["usage"]
        assert m["drained"]
        # The server's count and the invocations' own count of requests agree.
        assert usage["appsync_operations"] == m["invocations_http_requests"] > 0
        assert usage["bucket_writes"] >= m["buckets_written_emf"] > 0
        assert usage["gsi_writes"] >= 2 * m["buckets_written_emf"]
    text = capsys.readouterr().out
    assert "per-unit" in text and "shared" in text and "per million source writes" in text
