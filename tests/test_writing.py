"""Diff and conditional writes (docs/design.md §4.5) against the in-memory fake api."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator.write import diff_buckets, plan_writes, write_changes
from metrics_agg.config import Config
from metrics_agg.errors import WriteError
from metrics_agg.models import (
    BucketKey,
    BucketValue,
    HourRange,
    StoredBucket,
    UnitCounts,
    UnitKey,
    WorkUnit,
)
from metrics_agg.timestamps import format_write_time

H12 = datetime(2024, 5, 1, 12, tzinfo=UTC)
SNAP = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
CONFIG = Config(endpoint="http://fake")
UNIT = WorkUnit(UnitKey("Task", "a"), (HourRange(H12, H12 + timedelta(hours=1)),))


def key(minute: int, size: int = 1, rt: str = "tasks", **scope: str) -> BucketKey:
    return BucketKey(
        "a", rt, H12 + timedelta(minutes=minute), size, scope.get("sc"), scope.get("score")
    )


def counts(
    desired: dict[BucketKey, BucketValue], unit: WorkUnit = UNIT, snap: datetime = SNAP
) -> UnitCounts:
    n = sum(v.count for k, v in desired.items() if k.minutes == 1)
    return UnitCounts(unit, snap, desired, n, 0, 0, 0, n)


def stored(
    k: BucketKey, n: int, at: datetime = SNAP - timedelta(hours=1), complete: bool = True
) -> StoredBucket:
    return StoredBucket(k, BucketValue(n, complete), format_write_time(at))


V1, V0 = BucketValue(1, True), BucketValue(0, True)


def test_plan_only_differences_and_no_new_zeros() -> None:
    desired = {key(0): V1, key(1): V0, key(2): V1, key(3): V0}
    have = {
        key(0).composite_key: stored(key(0), 1),  # same: skip
        key(2).composite_key: stored(key(2), 5),  # differs: update
        key(3).composite_key: stored(key(3), 2),  # became empty: update to 0
        key(9).composite_key: stored(key(9), 4),
    }  # stored, absent from desired: 0
    writes = plan_writes(counts(desired), have)
    got = {(w.key.composite_key, w.value.count, w.create) for w in writes}
    assert got == {
        (key(2).composite_key, 1, False),
        (key(3).composite_key, 0, False),
        (key(9).composite_key, 0, False),
    }
    # key(1): zero, never stored, not touched -> no create (missing = 0 for readers)


def test_complete_flip_and_metadata_are_differences() -> None:
    k = key(0, rt="feedbackItems")
    meta = {"changedCount": 1, "unchangedCount": 0, "invalidCount": 0}
    have = {k.composite_key: StoredBucket(k, BucketValue(1, False, meta), "x")}
    assert plan_writes(counts({k: BucketValue(1, True, meta)}), have)
    assert not plan_writes(counts({k: BucketValue(1, False, dict(meta))}), have)
    other = dict(meta, changedCount=0, unchangedCount=1)
    assert plan_writes(counts({k: BucketValue(1, False, other)}), have)


def test_touched_buckets_are_always_written_even_zero_and_new() -> None:
    unit = WorkUnit(UNIT.key, UNIT.ranges, touched=frozenset({key(0), key(5)}))
    have = {key(0).composite_key: stored(key(0), 1)}
    writes = plan_writes(counts({key(0): V1, key(5): V0}, unit), have)
    assert {(w.key.composite_key, w.create) for w in writes} == {
        (key(0).composite_key, False),
        (key(5).composite_key, True),
    }


def test_write_changes_creates_updates_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeApi())
    fake.put_stored(key(2), BucketValue(3, True), format_write_time(SNAP - timedelta(hours=1)))
    out = write_changes(FakeClient(), counts({key(0): V1, key(2): V1}), config=CONFIG)
    assert (out.created, out.updated, out.superseded, out.rounds) == (1, 1, 0, 1)
    assert fake.bucket("a", key(2).composite_key).value.count == 1  # type: ignore[union-attr]
    assert fake.bucket("a", key(2).composite_key).updated_at == format_write_time(SNAP)  # type: ignore[union-attr]


def test_lost_create_race_becomes_update(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeApi())

    def racer(api: FakeApi) -> None:  # an older snapshot creates the key first
        api.put_stored(key(0), BucketValue(7, False), format_write_time(SNAP - timedelta(1)))

    fake.before_write = racer
    out = write_changes(FakeClient(), counts({key(0): V1}), config=CONFIG)
    assert (out.created, out.updated, out.rounds) == (0, 1, 2)
    assert fake.bucket("a", key(0).composite_key).value == V1  # type: ignore[union-attr]


def test_newer_snapshot_supersedes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeApi())
    fake.put_stored(key(0), BucketValue(3, True), format_write_time(SNAP - timedelta(hours=1)))

    def newer(api: FakeApi) -> None:
        api.put_stored(key(0), BucketValue(2, True), format_write_time(SNAP + timedelta(1)))

    fake.before_write = newer
    out = write_changes(FakeClient(), counts({key(0): V1}), config=CONFIG)
    assert (out.updated, out.superseded) == (0, 1)
    assert fake.bucket("a", key(0).composite_key).value.count == 2  # type: ignore[union-attr]


def test_vanished_key_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeApi())
    fake.put_stored(key(0), BucketValue(3, True), format_write_time(SNAP - timedelta(hours=1)))
    fake.before_write = lambda api: api.stored.clear()
    out = write_changes(FakeClient(), counts({key(0): V1}), config=CONFIG)
    assert (out.created, out.updated) == (1, 0)


def test_other_alias_error_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeApi())
    fake.alias_error = key(0).composite_key
    with pytest.raises(WriteError, match="Unauthorized"):
        write_changes(FakeClient(), counts({key(0): V1}), config=CONFIG)


def test_diff_buckets_for_verify() -> None:
    have = {
        key(0).composite_key: stored(key(0), 2, complete=False),
        key(1).composite_key: stored(key(1), 0),
        key(3).composite_key: stored(key(3), 1, complete=False),
    }
    desired = {key(0): V1, key(1): V0, key(2): V1, key(3): V1, key(4): V0}
    diffs = diff_buckets(counts(desired), have)
    assert [
        (d.key.composite_key, d.stored and d.stored.count, d.truth.count, d.reason) for d in diffs
    ] == [
        (key(0).composite_key, 2, 1, "count"),
        (key(2).composite_key, None, 1, "count"),
    ]
    with_complete = diff_buckets(counts(desired), have, check_complete=True)
    assert [d.reason for d in with_complete] == ["count, complete", "count", "complete"]
