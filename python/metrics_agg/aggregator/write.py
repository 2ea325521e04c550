"""Desired vs stored -> conditional writes (docs/design.md §4.5).

What is written, per bucket (matched on the composite key):
- stored, and count, complete, metadata or errorCount differ, or the bucket is *touched*
  (it holds an old or new timestamp of a batch record: docs/design.md §4.5's always-write
  rule) -> update;
- stored but absent from the desired set (a feedback scope that became empty) -> its
  zero value, by the same rule;
- not stored: created when its count is non-zero, or when it is touched. A zero bucket
  that was never stored and is not touched is *not* created: readers take a missing
  bucket as 0. Touched zero buckets are created anyway because of the race of §4.5: an
  older snapshot may be creating the same key with the record this batch deleted, and
  only a newer write after it (a create that loses becomes an update) corrects it.

Every write is conditional (the api sets it): an update only lands when the stored
`updatedAt` is not newer than this snapshot's. Conflicts, in bounded rounds:
- create -> ConditionalCheckFailed: the key exists (a racing writer created it): retry
  as an update;
- update -> ConditionalCheckFailed: the stored bucket is re-read; a newer `updatedAt`
  (compared as instants) means a newer snapshot already wrote it (superseded: not a
  failure); a vanished key is created; otherwise the update is retried as a
  compare-and-swap on the stored `updatedAt` string (writers differ in fraction width,
  so the string `le` can fail against an older instant: `graphql.writes.update_condition`).
Any other per-alias error, a `WriteError`, or conflicts left after the last round fail
the unit (the caller reports it and the stream retries it).
"""

from __future__ import annotations

__all__ = ["MAX_ROUNDS", "diff_buckets", "plan_writes", "write_changes"]

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from metrics_agg.aggregator.read import read_stored
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import WriteError
from metrics_agg.graphql import api
from metrics_agg.graphql.api import stored_is_newer  # pure: stays real when tests fake `api`
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import (
    FEEDBACK_RECORD_TYPES,
    BucketDifference,
    BucketKey,
    BucketValue,
    BucketWrite,
    HourRange,
    StoredBucket,
    UnitCounts,
    WriteOutcome,
)

MAX_ROUNDS = 4
_ZERO_METADATA = {"changedCount": 0, "unchangedCount": 0, "invalidCount": 0}


def _zero(key: BucketKey, snapshot_time: datetime, *, errors: bool) -> BucketValue:
    meta = dict(_ZERO_METADATA) if key.record_type in FEEDBACK_RECORD_TYPES else None
    end = key.start + timedelta(minutes=key.minutes)
    return BucketValue(0, end <= snapshot_time, meta, 0 if errors else None)


def _differs(stored: BucketValue, desired: BucketValue) -> tuple[str, ...]:
    fields = []
    if stored.count != desired.count:
        fields.append("count")
    if stored.complete != desired.complete:
        fields.append("complete")
    if dict(stored.metadata or {}) != dict(desired.metadata or {}) or (
        (stored.metadata is None) != (desired.metadata is None)
    ):
        fields.append("metadata")
    # A model without error rules leaves errorCount alone (another writer may own it).
    if desired.error_count is not None and stored.error_count != desired.error_count:
        fields.append("errorCount")
    return tuple(fields)


def _targets(
    counts: UnitCounts, stored: Mapping[str, StoredBucket]
) -> dict[str, tuple[BucketKey, BucketValue]]:
    """Every bucket the unit has an opinion on: desired, stored-but-gone, touched."""
    snapshot_time = counts.snapshot_time
    out = {key.composite_key: (key, value) for key, value in counts.desired.items()}
    for ck, sb in stored.items():
        if ck not in out:
            out[ck] = (sb.key, _zero(sb.key, snapshot_time, errors=counts.errors))
    for key in counts.unit.touched:
        ck = key.composite_key
        if ck not in out:
            out[ck] = (key, _zero(key, snapshot_time, errors=counts.errors))
    return out


def plan_writes(counts: UnitCounts, stored: Mapping[str, StoredBucket]) -> list[BucketWrite]:
    """The writes that bring the stored buckets to the desired values (pure)."""
    touched = {key.composite_key for key in counts.unit.touched}
    writes: list[BucketWrite] = []
    for ck, (key, value) in sorted(_targets(counts, stored).items()):
        sb = stored.get(ck)
        if sb is None:
            if value.count or ck in touched:
                writes.append(BucketWrite(key, value, counts.snapshot_time, create=True))
        elif ck in touched or _differs(sb.value, value):
            writes.append(BucketWrite(key, value, counts.snapshot_time, create=False))
    return writes


def diff_buckets(
    counts: UnitCounts, stored: Mapping[str, StoredBucket], *, check_complete: bool = False
) -> list[BucketDifference]:
    """Stored buckets that disagree with the count (missing stored = 0), for `verify`."""
    diffs: list[BucketDifference] = []
    for ck, (key, value) in sorted(_targets(counts, stored).items()):
        sb = stored.get(ck)
        if sb is None:
            if value.count:
                fields: tuple[str, ...] = ("count",)
                if value.metadata is not None:
                    fields += ("metadata",)
                diffs.append(BucketDifference(key, None, value, fields))
            continue
        fields = tuple(f for f in _differs(sb.value, value) if check_complete or f != "complete")
        if fields:
            diffs.append(BucketDifference(key, sb.value, value, fields))
    return diffs


def _ranges_holding(ranges: Sequence[HourRange], keys: Iterable[BucketKey]) -> list[HourRange]:
    starts = [k.start for k in keys]
    return [r for r in ranges if any(r.start <= s < r.end for s in starts)]


def write_changes(
    client: GraphQLApi,
    counts: UnitCounts,
    *,
    config: Config,
    deadline: Deadline | None = None,
    stored: Mapping[str, StoredBucket] | None = None,
) -> WriteOutcome:
    """Read the stored buckets (unless given), write the differences, resolve conflicts.

    Raises:
        ReadError: reading the stored buckets failed.
        WriteError: a request failed, an alias failed for another reason than a
            conditional check, or conflicts remained after `MAX_ROUNDS` rounds.
    """
    if stored is None:
        stored = read_stored(client, counts.unit, deadline=deadline)
    pending = plan_writes(counts, stored)
    compared = len(_targets(counts, stored))
    created = updated = superseded = rounds = 0
    superseded_keys: set[str] = set()
    while pending:
        if rounds == MAX_ROUNDS:
            raise WriteError(
                f"{len(pending)} bucket write(s) still conflicting after {MAX_ROUNDS} rounds"
            )
        rounds += 1
        results = api.write_buckets(
            client,
            pending,
            deadline=deadline,
            per_request=config.mutations_per_request,
            parallelism=config.write_parallelism,
        )
        retry: list[BucketWrite] = []
        recheck: list[BucketWrite] = []
        for res in results:
            w = res.write
            if res.ok:
                if w.create:
                    created += 1
                else:
                    updated += 1
            elif res.conflict:
                if w.create:  # lost the create race: the key exists now
                    retry.append(BucketWrite(w.key, w.value, w.snapshot_time, create=False))
                else:
                    recheck.append(w)
            else:
                err = res.error
                raise WriteError(
                    f"write of {w.key.composite_key} failed: "
                    f"{err.error_type if err else 'unknown error'}",
                    errors=(err,) if err else (),
                )
        if recheck:
            fresh = read_stored(
                client,
                counts.unit,
                deadline=deadline,
                ranges=_ranges_holding(counts.unit.ranges, (w.key for w in recheck)),
                record_types=sorted({w.key.record_type for w in recheck}),
            )
            for w in recheck:
                now_stored = fresh.get(w.key.composite_key)
                if now_stored is None:
                    retry.append(BucketWrite(w.key, w.value, w.snapshot_time, create=True))
                elif stored_is_newer(now_stored.updated_at, w.snapshot_time):
                    superseded += 1  # docs/design.md §4.5: a newer snapshot already wrote it
                    superseded_keys.add(w.key.composite_key)
                else:
                    # Older as an instant (another writer's fraction width may sort it
                    # after ours): compare-and-swap on the exact stored string.
                    retry.append(replace(w, expected_updated_at=now_stored.updated_at))
        pending = retry
    return WriteOutcome(
        compared=compared,
        created=created,
        updated=updated,
        superseded=superseded,
        rounds=rounds,
        superseded_keys=frozenset(superseded_keys),
    )
