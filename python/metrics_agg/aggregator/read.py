"""`WorkUnit` -> stored buckets and `Snapshot`: the unit's reads (docs/design.md §4.3).

`read_stored` reads the stored buckets first (their hourly counts size the source reads);
`read_unit` reads the unit's records and merges the batch's images.

One `list_source_reads` call for every (hour range, list query) of the unit; FeedbackItem
has two list queries (editedAt and updatedAt) whose results are merged by id. Window membership is
decided by the parsed instant, by the counter (`outside_window`), never by strings.

Merging by id, across queries and ranges:
- the same id returned twice: the newer version wins (effective timestamp, then
  updatedAt), and it is placed in the range holding its effective timestamp, so one
  record is counted at most once per unit;
- the batch's own images (docs/design.md §4.3, GSIs are eventually consistent): the last change
  of an id in sequence order decides; INSERT/MODIFY put the new image in, REMOVE takes the
  id out, except when the index already shows a version with a newer `updatedAt` than
  that image (the batch is older than what the index shows, keep the newer).

The rows read are also scanned for timestamps whose zone offset exceeds
`Config.zone_margin_minutes` (`zones`): they go into `Snapshot.offsets`.

Any `ReadError`/`DeadlineExceeded` propagates: the unit fails as a whole (docs/design.md §4.6).
"""

from __future__ import annotations

__all__ = ["merge_snapshot", "read_stored", "read_unit"]

import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from metrics_agg.aggregator.plan import floor_hour
from metrics_agg.aggregator.zones import scan_offsets
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.graphql import api
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import (
    SOURCE_MODELS,
    BucketKey,
    HourRange,
    ModelSpec,
    RangeRecords,
    Snapshot,
    SourceRead,
    StoredBucket,
    WorkUnit,
)
from metrics_agg.timestamps import parse_instant_or_none, utc_now

_Record = Mapping[str, Any]


def read_stored(
    client: GraphQLApi,
    unit: WorkUnit,
    *,
    deadline: Deadline | None = None,
    ranges: Sequence[HourRange] | None = None,
    record_types: Sequence[str] | None = None,
) -> dict[str, StoredBucket]:
    """Stored buckets of the unit's recordTypes over its ranges, by composite key.

    One call for all recordTypes and ranges (a steady-state unit: one HTTP request).

    Raises:
        ReadError: the stored buckets could not be read.
    """
    types = list(record_types or SOURCE_MODELS[unit.key.model].record_types)
    windows = [(r.start, r.end) for r in (ranges or unit.ranges)]
    stored: dict[str, StoredBucket] = {}
    for sb in api.list_stored_buckets_over(
        client, unit.key.account_id, types, windows, deadline=deadline
    ):
        if sb.key.account_id == unit.key.account_id:
            stored[sb.key.composite_key] = sb
    return stored


def _effective(rec: _Record, spec: ModelSpec) -> datetime | None:
    """The placing instant: first present, non-empty timestamp field (docs/design.md §2, §3)."""
    for name in spec.timestamp_fields:
        raw = rec.get(name)
        if raw is None or raw == "":
            continue
        return parse_instant_or_none(raw)
    return None


def _version(rec: _Record, spec: ModelSpec) -> tuple[datetime | None, datetime | None]:
    return _effective(rec, spec), parse_instant_or_none(rec.get("updatedAt"))


def _newer(a: _Record, b: _Record, spec: ModelSpec) -> bool:
    """True when ``b`` is a strictly newer version than ``a`` (unparsable sorts oldest)."""
    va, vb = _version(a, spec), _version(b, spec)
    for x, y in zip(va, vb, strict=True):
        if x == y:
            continue
        if y is None:
            return False
        return x is None or y > x
    return False


def _range_of(when: datetime | None, ranges: tuple[HourRange, ...]) -> int | None:
    if when is None:
        return None
    for i, r in enumerate(ranges):
        if r.start <= when < r.end:
            return i
    return None


def _hour_counts(
    unit: WorkUnit, r: HourRange, stored: Mapping[str, StoredBucket]
) -> tuple[int | None, ...]:
    """What each hour of ``r`` held at the last write (None: unknown): its stored 60-minute
    base bucket, or for a span shorter than its hours (docs/design.md §4.8, minute reads) the sum
    of the stored 1-minute base buckets of the span's minutes in that hour."""
    spec = SOURCE_MODELS[unit.key.model]
    account = unit.key.account_id
    out: list[int | None] = []
    first = floor_hour(r.start)
    hour = first
    while hour < r.end:
        whole = BucketKey(account, spec.record_type, hour, 60)
        sb = stored.get(whole.composite_key)
        lo, hi = max(hour, r.start), min(hour + _HOUR, r.end)
        if sb is None or (lo == hour and hi == hour + _HOUR):
            out.append(sb.value.count if sb is not None else None)
        else:
            total = 0
            minute = lo
            while minute < hi:
                one = stored.get(BucketKey(account, spec.record_type, minute, 1).composite_key)
                total += one.value.count if one is not None else 0
                minute += _MINUTE
            out.append(total)
        hour += _HOUR
    return tuple(out)


_HOUR = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)


def _fetch(
    client: GraphQLApi,
    unit: WorkUnit,
    ranges: tuple[HourRange, ...],
    config: Config,
    deadline: Deadline,
    stored: Mapping[str, StoredBucket],
    key_margin: int | None,
) -> list[tuple[int, list[dict[str, Any]]]]:
    spec = SOURCE_MODELS[unit.key.model]
    tasks = [(ri, qi) for ri in range(len(ranges)) for qi in range(len(spec.list_queries))]
    reads = [
        SourceRead(qi, ranges[ri].start, ranges[ri].end, _hour_counts(unit, ranges[ri], stored))
        for ri, qi in tasks
    ]
    # One call for every (range, query): small reads share one request, big ones are
    # split into parallel sub-ranges sized by the stored hourly counts (docs/design.md §7).
    results = api.list_source_reads(
        client,
        spec,
        unit.key.account_id,
        reads,
        deadline=deadline,
        parallelism=config.read_parallelism,
        page_limit=config.page_limit,
        zone_margin_minutes=config.zone_margin_minutes,
        sort_key_margin_minutes=key_margin,
    )
    return [(ri, records) for (ri, _), records in zip(tasks, results, strict=True)]


def read_unit(
    client: GraphQLApi,
    unit: WorkUnit,
    *,
    config: Config,
    deadline: Deadline | None = None,
    clock: Callable[[], datetime] = utc_now,
    stored: Mapping[str, StoredBucket] | None = None,
    spans: tuple[HourRange, ...] | None = None,
    sort_key_margin_minutes: int | None = None,
) -> Snapshot:
    """Read every range of ``unit`` and merge the batch's images into one snapshot.

    ``stored`` (the unit's stored buckets, by composite key) only sizes the reads: the
    60-minute base buckets say how many records each hour held at the last write.
    ``spans`` (sorted, disjoint, minute-aligned) replaces ``unit.ranges`` as what is read
    (docs/design.md §4.8), with ``sort_key_margin_minutes`` passed to `api.list_source_reads`.

    Raises:
        ReadError: a list query failed after its retries (nothing of the unit is trusted).
        DeadlineExceeded: the deadline left no time for a read.
    """
    ranges = unit.ranges if spans is None else spans
    # Taken before the first request: every write of this snapshot is conditional on it.
    snapshot_time = clock()
    fetched = _fetch(
        client, unit, ranges, config, deadline or Deadline(), stored or {}, sort_key_margin_minutes
    )
    return merge_snapshot(unit, ranges, fetched, snapshot_time, config)


def merge_snapshot(
    unit: WorkUnit,
    ranges: tuple[HourRange, ...],
    fetched: Sequence[tuple[int, list[dict[str, Any]]]],
    snapshot_time: datetime,
    config: Config,
) -> Snapshot:
    """The rows read for ``ranges`` (``(range index, rows)`` per read) merged by id with
    the batch's images (module doc); shared by `read_unit` and the shared path."""
    spec = SOURCE_MODELS[unit.key.model]
    # docs/design.md §4.3: rows whose timestamp's zone offset exceeds the read margin are evidence
    # that a recount can miss records (`zones`); the pipeline reports them.
    offsets = scan_offsets(
        spec.name,
        itertools.chain.from_iterable(r for _, r in fetched),
        spec.timestamp_fields,
        config.zone_margin_minutes,
    )
    by_id: dict[str, tuple[int, _Record]] = {}
    anonymous: list[tuple[int, _Record]] = []
    records_read = 0
    reassign = len(spec.list_queries) > 1
    for ri, records in fetched:
        records_read += len(records)
        for rec in records:
            rid = rec.get("id")
            if not isinstance(rid, str):
                anonymous.append((ri, rec))  # cannot be merged; still counted once
                continue
            seen = by_id.get(rid)
            if seen is None:
                by_id[rid] = (ri, rec)
                continue
            if seen[0] == ri and seen[1] == rec:
                continue  # both FeedbackItem queries returned the same version
            chosen = rec if _newer(seen[1], rec, spec) else seen[1]
            target = _range_of(_effective(chosen, spec), ranges)
            by_id[rid] = (seen[0] if target is None else target, chosen)
    if reassign:
        # FeedbackItem: the updatedAt query returns items whose effective (editedAt) time
        # lies in another range; place each by its effective instant so it counts once.
        for rid, (ri, row) in by_id.items():
            target = _range_of(_effective(row, spec), ranges)
            if target is not None and target != ri:
                by_id[rid] = (target, row)
    merged = removed = 0
    last: dict[str, Any] = {}
    for change in unit.changes:  # planning sorted them by sequence number
        last[change.record_id] = change
    for rid, change in last.items():
        image = change.old_image if change.event_name == "REMOVE" else change.new_image
        if image is None:
            continue
        shown = by_id.get(rid)
        if shown is not None:
            index_upd = parse_instant_or_none(shown[1].get("updatedAt"))
            image_upd = parse_instant_or_none(image.get("updatedAt"))
            if index_upd is not None and image_upd is not None and index_upd > image_upd:
                continue  # the index already shows a later version than this batch saw
        if change.event_name == "REMOVE":
            if by_id.pop(rid, None) is not None:
                removed += 1
            continue
        by_id.pop(rid, None)
        target = _range_of(change.new_time, ranges)
        if target is not None:
            by_id[rid] = (target, image)
            merged += 1
    buckets: list[list[_Record]] = [[] for _ in ranges]
    for ri, row in by_id.values():
        buckets[ri].append(row)
    for ri, row in anonymous:
        buckets[ri].append(row)
    return Snapshot(
        unit=unit,
        snapshot_time=snapshot_time,
        ranges=tuple(RangeRecords(r, tuple(b)) for r, b in zip(ranges, buckets, strict=True)),
        records_read=records_read,
        merged_from_batch=merged,
        removed_by_batch=removed,
        offsets=offsets,
    )
