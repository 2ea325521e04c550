"""The updatedAt condition holds across writers' fraction widths (issue 12, item 4).

AppSync writes `updatedAt` with 3 fraction digits, the original Lambda with 6 or none, this
system with 6. DynamoDB compares the strings, so `"…:00Z"` sorts after `"…:00.250000Z"`
although it is the older instant: the `le` condition fails against a bucket another writer
last wrote a moment earlier. The write path re-reads, compares instants, and retries as a
compare-and-swap on the exact stored string. Run against the local server, whose
conditions compare strings as DynamoDB does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator.write import write_changes
from metrics_agg.graphql.api import bucket_input, stored_is_newer
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.graphql.writes import update_condition
from metrics_agg.local.server import LocalStack
from metrics_agg.models import (
    BucketKey,
    BucketValue,
    BucketWrite,
    HourRange,
    UnitCounts,
    UnitKey,
    WorkUnit,
    WriteOutcome,
)
from recording_client import RecordingClient, Sent

ACCT = "acct"
H13 = datetime(2024, 5, 1, 13, tzinfo=UTC)
SNAP = datetime(2024, 5, 1, 13, 30, 0, 250400, tzinfo=UTC)  # "…13:30:00.250400Z"
UNIT = WorkUnit(UnitKey("Task", ACCT), (HourRange(H13, H13 + timedelta(hours=1)),))
KEY = BucketKey(ACCT, "tasks", H13 + timedelta(minutes=5), 1)


def _counts(n: int) -> UnitCounts:
    return UnitCounts(UNIT, SNAP, {KEY: BucketValue(n, True)}, n, 0, 0, 0, n)


def _store_as_other_writer(stack: LocalStack, updated_at: str, count: int = 5) -> None:
    """A row last written by another writer, with its own `updatedAt` width."""
    stack.store.create(
        "AggregatedMetrics",
        {
            "accountId": ACCT,
            "compositeKey": KEY.composite_key,
            "recordType": "tasks",
            "timeRangeStart": "2024-05-01T13:05:00Z",
            "timeRangeEnd": "2024-05-01T13:06:00Z",
            "numberOfMinutes": 1,
            "count": count,
            "complete": True,
            "createdAt": "2024-05-01T13:06:00Z",
            "updatedAt": updated_at,
        },
    )


def _stored(stack: LocalStack) -> dict[str, Any]:
    row = stack.store.get("AggregatedMetrics", [ACCT, KEY.composite_key])
    assert row is not None
    return row


class _Recording(RecordingClient):
    """Can run a hook before the next compare-and-swap write goes out."""

    before_cas: Callable[[], None] | None = None

    def writes(self) -> list[Mapping[str, Any]]:
        """Every write's variables, in order."""
        return [s.variables for s in self.requests if s.kind == "write" and s.variables]

    def before_send(self, sent: Sent) -> None:
        cas = sent.kind == "write" and any(
            "eq" in (v.get("updatedAt") or {}) for k, v in sent.variables.items() if k[0] == "w"
        )
        if cas and self.before_cas is not None:
            hook, self.before_cas = self.before_cas, None
            hook()


@pytest.mark.parametrize(
    "other",
    [
        "2024-05-01T13:30:00Z",  # no fraction (the original Lambda): 0.25 s older
        "2024-05-01T13:30:00.250Z",  # AppSync's 3 digits: 0.4 ms older
        "2024-05-01T13:30:00.2504Z",  # the same instant, in 4 digits
    ],
)
def test_false_conflict_becomes_compare_and_swap(local_stack: LocalStack, other: str) -> None:
    assert other > "2024-05-01T13:30:00.250400Z"  # the string `le` alone would fail
    _store_as_other_writer(local_stack, other)
    with _Recording(local_stack.config()) as client:
        out = write_changes(client, _counts(7), config=local_stack.config())
        conditions = [v["w0"] for v in client.writes()]
    assert (out.updated, out.superseded, out.rounds) == (1, 0, 2)
    assert conditions == [
        {"updatedAt": {"le": "2024-05-01T13:30:00.250400Z"}},
        {"updatedAt": {"eq": other}},
    ]
    row = _stored(local_stack)
    assert (row["count"], row["updatedAt"]) == (7, "2024-05-01T13:30:00.250400Z")


def test_newer_instant_in_another_width_supersedes(local_stack: LocalStack) -> None:
    _store_as_other_writer(local_stack, "2024-05-01T13:30:00.251Z")
    with _Recording(local_stack.config()) as client:
        out = write_changes(client, _counts(7), config=local_stack.config())
    assert (out.updated, out.superseded) == (0, 1)
    assert _stored(local_stack)["count"] == 5


def _write_with_one_in_between(
    stack: LocalStack, count: int, updated_at: str
) -> tuple[WriteOutcome, _Recording]:
    """Our write of 7 over a row stored with no fraction (`…:00Z`), while a third writer
    stores (`count`, `updated_at`) after our re-read and before our compare-and-swap."""
    _store_as_other_writer(stack, "2024-05-01T13:30:00Z")

    def other_writes() -> None:
        stack.store.update(
            "AggregatedMetrics",
            [ACCT, KEY.composite_key],
            {"count": count, "updatedAt": updated_at},
        )

    with _Recording(stack.config()) as client:
        client.before_cas = other_writes
        out = write_changes(client, _counts(7), config=stack.config())
    return out, client


def test_compare_and_swap_loses_to_a_write_in_between(local_stack: LocalStack) -> None:
    # Another writer lands a newer snapshot after our re-read, before our CAS: the CAS
    # fails (the string changed), the next round sees the newer instant: superseded.
    out, _ = _write_with_one_in_between(local_stack, 9, "2024-05-01T13:30:01.000Z")
    assert (out.updated, out.superseded, out.rounds) == (0, 1, 2)
    assert _stored(local_stack)["count"] == 9


def test_compare_and_swap_loses_to_an_older_write_in_between_then_retries(
    local_stack: LocalStack,
) -> None:
    # The write in between is older than our snapshot (another width again): our CAS on
    # the string we read fails, and the next round swaps against the new string.
    out, client = _write_with_one_in_between(local_stack, 8, "2024-05-01T13:30:00.1Z")
    last = client.writes()[-1]["w0"]
    assert (out.updated, out.superseded, out.rounds) == (1, 0, 3)
    assert last == {"updatedAt": {"eq": "2024-05-01T13:30:00.1Z"}}
    assert _stored(local_stack)["count"] == 7


@pytest.mark.parametrize(
    ("stored", "newer"),
    [
        ("2024-05-01T13:30:00Z", False),
        ("2024-05-01T13:30:00.250Z", False),
        ("2024-05-01T13:30:00.2504Z", False),  # equal instants: not newer (as `le`)
        ("2024-05-01T13:30:00.250401Z", True),
        ("2024-05-01T13:30:00.3Z", True),
        ("2024-05-01T15:30:00+02:00", False),  # an offset: 13:30:00 UTC
        ("not a timestamp", True),  # unparseable: DynamoDB's string order ("n" > "2")
    ],
)
def test_stored_is_newer_compares_instants(stored: str, newer: bool) -> None:
    assert stored_is_newer(stored, SNAP) is newer


def test_update_condition_is_le_unless_swapping() -> None:
    w = BucketWrite(KEY, BucketValue(1, True), SNAP, create=False)
    assert update_condition(w) == {"updatedAt": {"le": "2024-05-01T13:30:00.250400Z"}}
    cas = BucketWrite(KEY, BucketValue(1, True), SNAP, False, None, "2024-05-01T13:30:00Z")
    assert update_condition(cas) == {"updatedAt": {"eq": "2024-05-01T13:30:00Z"}}


def test_writes_send_no_nulls_for_fields_never_set(local_stack: LocalStack) -> None:
    create = BucketWrite(KEY, BucketValue(3, True), SNAP, create=True)
    update = BucketWrite(KEY, BucketValue(4, True), SNAP, create=False)
    for w in (create, update):
        sent = bucket_input(w)
        assert None not in sent.values()
        never = {"cost", "decisionCount", "externalAiApiCount", "cachedAiApiCount", "errorCount"}
        assert not never & sent.keys() and not {"metadata", "scorecardId", "scoreId"} & sent.keys()
    with GraphQLClient(local_stack.config()) as client:
        write_changes(client, _counts(3), config=local_stack.config())
    # The stored row has no attribute for what was never set (no NULL attributes).
    assert set(_stored(local_stack)) == {
        "accountId",
        "compositeKey",
        "recordType",
        "timeRangeStart",
        "timeRangeEnd",
        "numberOfMinutes",
        "count",
        "complete",
        "createdAt",
        "updatedAt",
    }
