"""HTTP requests per invocation (docs/design.md §7), counted against the local stack.

Steady state (a unit's current and previous hour hold a few hundred records, their buckets
are stored, and a batch touches one minute): at most 5 requests per recordType family
(docs/design.md §4.8): the stored buckets, the touched minute's source records, the aliased
1-minute writes, the derivation read, the aliased coarser writes. A large
window still ends exactly at the truth and is read in parallel sub-ranges, with or
without stored buckets to size it. Counts, not timings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.config import Config
from metrics_agg.graphql.shared_reads import PROBE_ROWS
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack, seed_records
from recording_client import RecordingClient
from truth_helpers import assert_matches_truth

FAMILIES = ("Item", "ScoreResult", "FeedbackItem", "Task")
SOURCE_FIELDS = {"listItemByAccountIdAndCreatedAt"}


class CountingClient(RecordingClient):
    """Reads the source ranges out of the requests sent."""

    def source_ranges(self) -> set[tuple[str, str]]:
        """The sort-key ranges of the source list queries sent (stored-bucket bounds are
        objects, source bounds strings)."""
        out = set()
        for sent in self.requests:
            for name, value in sent.variables.items():
                between = value.get("between") if isinstance(value, dict) else None
                probe = sent.variables.get(f"l{name[1:]}") == PROBE_ROWS  # `shared_reads`
                if name.startswith("k") and between and isinstance(between[0], str) and not probe:
                    out.add((between[0], between[1]))
        return out


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _recount(
    stack: LocalStack,
    model: str,
    account: str,
    start: datetime,
    end: datetime,
    client: GraphQLClient,
    config: Config | None = None,
) -> dict[str, Any]:
    event = {
        "recount": {
            "accountId": account,
            "model": model,
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
    }
    return pipeline.handle_event(event, config=config or stack.config(), client=client)


def _new_record(model: str, account: str, at: datetime) -> dict[str, Any]:
    stamp = _stamp(at)
    record: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "accountId": account,
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    if model == "FeedbackItem":
        record |= {
            "scorecardId": "sc-budget",
            "scoreId": "s-budget",
            "editedAt": stamp,
            "initialAnswerValue": "yes",
            "finalAnswerValue": "no",
        }
    if model == "Item":
        record["createdByType"] = "prediction"
    if model == "ScoreResult":
        record["type"] = "evaluation"
    return record


@pytest.mark.parametrize("path", ["shared", "per-unit"])
@pytest.mark.parametrize("model", FAMILIES)
def test_steady_state_is_five_requests(
    make_local_stack: Callable[..., LocalStack], model: str, path: str
) -> None:
    stack = make_local_stack()
    account = f"budget-{model}"
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    seed_records(
        stack.store,
        model,
        account,
        300,
        hour - timedelta(hours=1),
        max(now - timedelta(seconds=1), hour + timedelta(seconds=1)),
        seed=11,
        stream=False,
    )
    with GraphQLClient(stack.config()) as client:
        out = _recount(
            stack, model, account, hour - timedelta(hours=1), hour + timedelta(hours=1), client
        )
        assert out["status"] == "SUCCESS"
    table = f"{model}-local-NONE"
    after = stack.store.stream_end(table)
    stack.store.create(model, _new_record(model, account, datetime.now(UTC)))
    event = {"Records": stack.store.read_stream(table, after, 10)}
    assert len(event["Records"]) == 1
    stack.faults.reset_counts()
    config = stack.config(invocation_path=path)
    client = CountingClient(config)
    with client:
        assert pipeline.handle_event(event, config=config, client=client) == {
            "batchItemFailures": []
        }
        requests = client.request_count
    # 1 stored-bucket read (all recordTypes of the family), 1 source read of the touched
    # minute (FeedbackItem: both list queries), 1 request of aliased 1-minute writes,
    # 1 derivation read, 1 request of aliased 5/15/60-minute writes. The shared path
    # sends the first two as one.
    sent = [s.variables for s in client.requests]
    assert requests <= (4 if path == "shared" else 5), f"{model}: {requests} requests: {sent}"
    assert stack.faults.requests == requests
    # The source read is the touched minute alone (no sort-key margin, docs/design.md §4.8).
    for lo, hi in client.source_ranges():
        assert len(lo) == len(hi) == 16, (lo, hi)
        minutes = (datetime.fromisoformat(hi + "Z") - datetime.fromisoformat(lo + "Z")).seconds
        assert minutes == 60, (lo, hi)
    assert_matches_truth(stack.store, account)


def _large_window(stack: LocalStack, account: str, size: int) -> tuple[datetime, datetime]:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - timedelta(hours=4), hour - timedelta(hours=3)
    seed_records(stack.store, "Item", account, size, start, end, seed=5, stream=False)
    return start, end


def test_large_window_without_stored_buckets_probes_then_splits(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(latency_ms=5)
    account = "budget-large"
    start, end = _large_window(stack, account, 5000)
    config = stack.config(page_limit=100)
    client = CountingClient(config)
    with client:
        assert _recount(stack, "Item", account, start, end, client, config)["status"] == "SUCCESS"
        ranges = client.source_ranges()
        # One probe over the whole range, then its rest split into parallel sub-ranges.
        assert len(ranges) > 2
        assert client.max_in_flight > 1
        pages = -(-5000 // 100)
        assert client.request_count < pages + 2 * config.read_parallelism + 10
    assert_matches_truth(stack.store, account)


def test_large_window_with_stored_buckets_is_split_up_front(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(latency_ms=5)
    account = "budget-large"
    start, end = _large_window(stack, account, 5000)
    config = stack.config(page_limit=100)
    with GraphQLClient(config) as client:
        assert _recount(stack, "Item", account, start, end, client, config)["status"] == "SUCCESS"
    # Change the window a little, then recount with the stored hourly count to size it.
    rows = stack.store.all_records("Item", account)
    for row in rows[:3]:
        stack.store.delete("Item", (row["id"],))
    for n in range(7):
        stack.store.create(
            "Item", _new_record("Item", account, start + timedelta(minutes=7 * n, seconds=n))
        )
    client = CountingClient(config)
    with client:
        assert _recount(stack, "Item", account, start, end, client, config)["status"] == "SUCCESS"
        ranges = client.source_ranges()
        assert len(ranges) == config.read_parallelism  # sized by the stored count: 50 pages
        assert client.max_in_flight > 1
    assert_matches_truth(stack.store, account)


def test_failed_sub_range_page_writes_nothing(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack()
    account = "budget-fail"
    start, end = _large_window(stack, account, 2000)
    config = stack.config(page_limit=100)
    # A page of a split sub-range (after the probe) fails for good: the whole unit fails.
    stack.faults.add(field="listItemByAccountIdAndCreatedAt", nth=6, action="http_400")
    with GraphQLClient(config) as client:
        out = _recount(stack, "Item", account, start, end, client, config)
    assert out["status"] == "PARTIAL"
    assert stack.store.all_metrics(account) == []


@pytest.mark.parametrize("units", [1, 10, 50])
def test_shared_steady_state_requests_do_not_grow_with_units(
    local_stack: LocalStack, units: int
) -> None:
    """docs/incremental.md "Shared requests": a steady-state batch touching ``units``
    (model, account) pairs sends one shared read, the 1-minute writes, one derivation read
    and the coarser writes: 4 requests whatever ``units`` is, plus one per
    ``mutations_per_request`` writes beyond the first of each write step."""
    stack = local_stack
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    accounts = [f"acct-shared-{i}" for i in range(units)]
    with GraphQLClient(stack.config()) as client:
        for i, account in enumerate(accounts):
            seed_records(
                stack.store,
                "Item",
                account,
                5,
                hour,
                max(now - timedelta(seconds=1), hour + timedelta(seconds=1)),
                seed=i,
                stream=False,
            )
            out = _recount(stack, "Item", account, hour, hour + timedelta(hours=1), client)
            assert out["status"] == "SUCCESS"
    table = "Item-local-NONE"
    after = stack.store.stream_end(table)
    for account in accounts:
        stack.store.create("Item", _new_record("Item", account, datetime.now(UTC)))
    event = {"Records": stack.store.read_stream(table, after, 1000)}
    assert len(event["Records"]) == units
    for per_request, bound in ((25, None), (10_000, 4)):
        config = stack.config(mutations_per_request=per_request, invocation_path="shared")
        client = CountingClient(config)
        with client:
            response = pipeline.handle_event(event, config=config, client=client)
        assert response == {"batchItemFailures": []}
        writes = [s for s in client.requests if s.kind == "write"]
        reads = [s for s in client.requests if s.kind != "write"]
        assert len(reads) == 2, [sorted(s.variables) for s in reads]  # shared + derivation
        # Each write step: its writes in requests of `mutations_per_request`.
        # (aliases padded with `@skip` to a power of two are not executed: `s<alias>` true)
        sizes = [
            sum(1 for k in s.variables if k[0] in "cu" and s.variables.get(f"s{k}") is False)
            for s in writes
        ]
        assert all(n <= per_request for n in sizes)
        assert len(writes) <= 2 + sum(sizes) // per_request
        if bound is not None:
            assert client.request_count <= bound, client.request_count
        # The batch's minute alone is read: no hour fell back.
        for lo, hi in client.source_ranges():
            minutes = (datetime.fromisoformat(hi + "Z") - datetime.fromisoformat(lo + "Z")).seconds
            assert minutes == 60, (lo, hi)
        for account in accounts:
            assert_matches_truth(stack.store, account)
