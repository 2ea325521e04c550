"""Stored 1-minute rows -> 5-, 15- and 60-minute buckets as their sums (docs/design.md §4.8).

Pure: the incremental path (`incremental`) reads the stored rows of the hours it derives
after its own 1-minute writes were acknowledged, and this module turns them into the
desired coarser values and the stored rows to compare them with.

- Rows of this invocation's own 1-minute writes replace what the read returned when the
  read shows an older `updatedAt` (or nothing): AppSync reads an index eventually
  consistently, and a write this invocation saw acknowledged must be in its own sum.
- ``always``: the parents of every 1-minute bucket this invocation wrote. They are written
  whatever is stored (the rule of docs/design.md §4.5, for the same race: skipping an "unchanged"
  coarse bucket would let an older derivation land last).
- In a recount hour (self-check failed) every coarse bucket of every series present in the
  hour is derived; those not in ``always`` are written only when they differ.
"""

from __future__ import annotations

__all__ = ["derive_coarse", "overlay_own_writes"]

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from metrics_agg.aggregator.invalidation import COARSE_SIZES, in_series, scope_of, sum_values
from metrics_agg.models import BucketKey, BucketValue, StoredBucket, WorkUnit
from metrics_agg.timestamps import epoch_minute, format_write_time


def overlay_own_writes(
    rows: Mapping[str, StoredBucket],
    own: Iterable[tuple[BucketKey, BucketValue]],
    snapshot_time: datetime,
) -> dict[str, StoredBucket]:
    """``rows`` with this invocation's acknowledged 1-minute writes where the read is older."""
    stamp = format_write_time(snapshot_time)
    out = dict(rows)
    for key, value in own:
        ck = key.composite_key
        seen = out.get(ck)
        if seen is None or seen.updated_at < stamp:
            out[ck] = StoredBucket(key, value, stamp)
    return out


def derive_coarse(
    unit: WorkUnit,
    rows: Mapping[str, StoredBucket],
    *,
    hours: Iterable[datetime],
    always: Iterable[BucketKey],
    recount_hours: Iterable[datetime],
    read_time: datetime,
    errors: bool = False,
) -> tuple[dict[BucketKey, BucketValue], dict[str, StoredBucket]]:
    """(desired coarse values, the stored coarse rows they replace), by series sums.

    ``rows``: stored rows (every size) of ``hours``, own writes overlaid. ``complete`` is
    ``bucket end <= read_time``, the time the writes carry as `updatedAt`. ``errors``: the
    model has error rules, so errorCount is summed like the count.
    """
    hour_set = {epoch_minute(h) for h in hours}
    ones: dict[str, dict[int, BucketValue]] = defaultdict(dict)
    coarse: dict[str, StoredBucket] = {}
    example: dict[str, BucketKey] = {}
    for ck, sb in rows.items():
        if epoch_minute(sb.key.start) // 60 * 60 not in hour_set:
            continue
        series = scope_of(sb.key)
        example.setdefault(series, sb.key)
        if sb.key.minutes == 1:
            ones[series][epoch_minute(sb.key.start)] = sb.value
        elif sb.key.minutes in COARSE_SIZES:
            coarse[ck] = sb
    always_keys = {k.composite_key: k for k in always}
    targets = dict(always_keys)
    for hour in recount_hours:
        first = epoch_minute(hour)
        for key in example.values():
            for size in COARSE_SIZES:
                for start in range(first, first + 60, size):
                    k = in_series(key, start, size)
                    targets.setdefault(k.composite_key, k)
    desired: dict[BucketKey, BucketValue] = {}
    replaced: dict[str, StoredBucket] = {}
    for ck, key in targets.items():
        first = epoch_minute(key.start)
        minutes = ones.get(scope_of(key), {})
        children = [minutes[m] for m in range(first, first + key.minutes) if m in minutes]
        count, meta, error_count = sum_values(key.record_type, children, errors=errors)
        stored = coarse.get(ck)
        if stored is None and not count and ck not in always_keys and key not in unit.touched:
            continue  # readers take a missing bucket as 0: never create an untouched zero
        end = key.start + timedelta(minutes=key.minutes)
        desired[key] = BucketValue(count, end <= read_time, meta, error_count)
        if stored is not None:
            replaced[ck] = stored
    return desired, replaced
