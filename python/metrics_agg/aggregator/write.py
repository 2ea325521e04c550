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

__all__ = ["MAX_ROUNDS", "diff_buckets", "plan_writes", "write_changes", "write_many"]

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from metrics_agg.aggregator.read import read_stored
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import TransportError, WriteError
from metrics_agg.graphql import api
from metrics_agg.graphql._parallel import run_all
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
    (out,) = _write_jobs(client, [(counts, stored)], config, deadline, isolate=False)
    assert isinstance(out, WriteOutcome)  # without isolate, failures raise
    return out


def write_many(
    client: GraphQLApi,
    jobs: Sequence[tuple[UnitCounts, Mapping[str, StoredBucket]]],
    *,
    config: Config,
    deadline: Deadline | None = None,
) -> list[WriteOutcome | TransportError]:
    """`write_changes` for several units at once (docs/incremental.md "Shared requests"):
    each round sends every unit's pending writes together, ``mutations_per_request`` per
    request. A unit's outcome, or the error that failed it: a failed alias or conflict
    re-read fails only its unit, a failed request the units with a write in it."""
    return _write_jobs(client, jobs, config, deadline, isolate=True)


@dataclass
class _Job:
    counts: UnitCounts
    pending: list[BucketWrite]
    compared: int
    created: int = 0
    updated: int = 0
    superseded: int = 0
    rounds: int = 0
    superseded_keys: set[str] = field(default_factory=set)
    error: TransportError | None = None


def _write_jobs(
    client: GraphQLApi,
    jobs: Sequence[tuple[UnitCounts, Mapping[str, StoredBucket]]],
    config: Config,
    deadline: Deadline | None,
    *,
    isolate: bool,
) -> list[WriteOutcome | TransportError]:
    state = [_Job(c, plan_writes(c, st), len(_targets(c, st))) for c, st in jobs]

    def fail(job: _Job, error: TransportError) -> None:
        if not isolate:
            raise error
        job.error = job.error or error
        job.pending = []

    while live := [j for j in state if j.pending and j.error is None]:
        batch: list[tuple[_Job, BucketWrite]] = []
        for job in live:
            if job.rounds == MAX_ROUNDS:
                fail(
                    job,
                    WriteError(
                        f"{len(job.pending)} bucket write(s) still conflicting after "
                        f"{MAX_ROUNDS} rounds"
                    ),
                )
                continue
            job.rounds += 1
            batch.extend((job, w) for w in job.pending)
            job.pending = []
        if not batch:
            break
        results = api.write_buckets(
            client,
            [w for _, w in batch],
            deadline=deadline,
            per_request=config.mutations_per_request,
            parallelism=config.write_parallelism,
            **({"isolate": True} if isolate else {}),
        )
        recheck: dict[int, list[BucketWrite]] = {}
        for (job, _), res in zip(batch, results, strict=True):
            w = res.write
            if job.error is not None:
                continue
            if res.request_error is not None:
                fail(job, res.request_error)
            elif res.ok:
                if w.create:
                    job.created += 1
                else:
                    job.updated += 1
            elif res.conflict:
                if w.create:  # lost the create race: the key exists now
                    job.pending.append(BucketWrite(w.key, w.value, w.snapshot_time, create=False))
                else:
                    recheck.setdefault(id(job), []).append(w)
            else:
                err = res.error
                fail(
                    job,
                    WriteError(
                        f"write of {w.key.composite_key} failed: "
                        f"{err.error_type if err else 'unknown error'}",
                        errors=(err,) if err else (),
                    ),
                )
        conflicted = [j for j in state if j.error is None and id(j) in recheck]
        if not isolate:
            for job in conflicted:  # one unit: its re-read raises
                _resolve_conflicts(client, job, recheck[id(job)], deadline)
        elif conflicted:  # several units: their re-reads side by side, each failing alone
            run_all(
                [_resolving(client, j, recheck[id(j)], deadline) for j in conflicted],
                config.write_parallelism,
            )
    return [
        j.error
        if j.error is not None
        else WriteOutcome(
            compared=j.compared,
            created=j.created,
            updated=j.updated,
            superseded=j.superseded,
            rounds=j.rounds,
            superseded_keys=frozenset(j.superseded_keys),
        )
        for j in state
    ]


def _resolving(
    client: GraphQLApi, job: _Job, recheck: Sequence[BucketWrite], deadline: Deadline | None
) -> Callable[[threading.Event], None]:
    def run(_stop: threading.Event) -> None:
        try:
            _resolve_conflicts(client, job, recheck, deadline)
        except TransportError as exc:
            job.error = exc
            job.pending = []

    return run


def _resolve_conflicts(
    client: GraphQLApi, job: _Job, recheck: Sequence[BucketWrite], deadline: Deadline | None
) -> None:
    """Re-read the buckets whose update lost its condition and decide each (module doc)."""
    unit = job.counts.unit
    fresh = read_stored(
        client,
        unit,
        deadline=deadline,
        ranges=_ranges_holding(unit.ranges, (w.key for w in recheck)),
        record_types=sorted({w.key.record_type for w in recheck}),
    )
    for w in recheck:
        now_stored = fresh.get(w.key.composite_key)
        if now_stored is None:
            job.pending.append(BucketWrite(w.key, w.value, w.snapshot_time, create=True))
        elif stored_is_newer(now_stored.updated_at, w.snapshot_time):
            job.superseded += 1  # docs/design.md §4.5: a newer snapshot already wrote it
            job.superseded_keys.add(w.key.composite_key)
        else:
            # Older as an instant (another writer's fraction width may sort it
            # after ours): compare-and-swap on the exact stored string.
            job.pending.append(replace(w, expected_updated_at=now_stored.updated_at))
