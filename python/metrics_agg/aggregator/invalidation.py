"""`WorkUnit` + its stored rows -> which minutes a stream invocation recounts (docs/design.md §4.8).

A stream invocation invalidates minutes, not hours: the 1-minute buckets holding an old or
new timestamp of the batch's records (`WorkUnit.touched`, every scope of the model). Each
hour holding such a minute passes a self-check on the rows stored *before* this
invocation, and then only its touched minutes are recounted and its coarser buckets are
derived from the stored 1-minute rows (`derivation`). An hour that fails the check has
every one of its minutes recounted instead (the "direct" fallback), because deriving from
rows that already disagree would only carry the disagreement forward. The check, per hour:

- the model's base 60-minute row exists (a hour never aggregated, or aggregated before
  deployment by something that wrote no rows, has none: its untouched minutes were never
  counted into 1-minute rows), unless the hour is known to hold no record outside its
  touched minutes (``new_hours``: a series new in the hour, whose rows read as zero
  because there was nothing to count; the shared path probes the source for this);
- for every scope with a stored row in the hour (recordType, and scorecard/score for
  feedback): the 60-minute row equals the sum of its 1-minute rows (count, feedback
  metadata and, for a model with error rules, errorCount; a missing row is 0), and so does
  every 5- and 15-minute row of the hour (all of them, not only those over touched minutes:
  a whole-hour derivation whose coarser write failed part-way can leave a stale row
  anywhere in the hour, and the retry must see it). With error rules, a row without
  errorCount (written before the rules applied) fails the check: its errors are unknown.

`complete` is not compared: it lags by design until the scheduled reconcile.
"""

from __future__ import annotations

__all__ = [
    "Invalidation",
    "coarse_parents",
    "in_series",
    "invalidate",
    "minute_spans",
    "scope_of",
]

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from metrics_agg.models import (
    FEEDBACK_RECORD_TYPES,
    SOURCE_MODELS,
    BucketKey,
    BucketValue,
    HourRange,
    StoredBucket,
    WorkUnit,
)
from metrics_agg.timestamps import epoch_minute, from_epoch_minute

COARSE_SIZES = (5, 15, 60)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What one stream unit recounts: minutes of hours that agree, whole hours that do not."""

    touched_minutes: frozenset[int]  # epoch minutes holding a batch timestamp (within limits)
    derive_hours: tuple[datetime, ...]  # self-check passed: recount touched minutes only
    recount_hours: tuple[datetime, ...]  # self-check failed: recount every minute
    reasons: Mapping[datetime, str]  # why each recount hour failed the check

    @property
    def hours(self) -> tuple[datetime, ...]:
        return tuple(sorted({*self.derive_hours, *self.recount_hours}))

    @property
    def minutes(self) -> frozenset[int]:
        """Every invalidated minute: touched ones of derive hours, all of recount hours."""
        derive = {epoch_minute(h) // 60 for h in self.derive_hours}
        out = {m for m in self.touched_minutes if m // 60 in derive}
        for hour in self.recount_hours:
            first = epoch_minute(hour)
            out.update(range(first, first + 60))
        return frozenset(out)


def minute_spans(minutes: Iterable[int]) -> tuple[HourRange, ...]:
    """Sorted minute spans, adjacent minutes merged (one key-condition range each)."""
    spans: list[list[int]] = []
    for m in sorted(set(minutes)):
        if spans and spans[-1][1] == m:
            spans[-1][1] = m + 1
        else:
            spans.append([m, m + 1])
    return tuple(HourRange(from_epoch_minute(a), from_epoch_minute(b)) for a, b in spans)


def scope_of(key: BucketKey) -> str:
    """A bucket's series: its composite key without ``#ts#n`` (ByScore: scoreId alone)."""
    return key.composite_key.rsplit("#", 2)[0]


def in_series(key: BucketKey, start_minute: int, size: int) -> BucketKey:
    """The bucket of ``key``'s series (recordType, scorecard, score) at another start/size."""
    return BucketKey(
        key.account_id,
        key.record_type,
        from_epoch_minute(start_minute),
        size,
        key.scorecard_id,
        key.score_id,
    )


def coarse_parents(key: BucketKey) -> list[BucketKey]:
    """The 5-, 15- and 60-minute buckets of the same series holding a 1-minute bucket."""
    minute = epoch_minute(key.start)
    return [in_series(key, minute // size * size, size) for size in COARSE_SIZES]


def sum_values(
    record_type: str, values: Iterable[BucketValue], *, errors: bool = False
) -> tuple[int, dict[str, int] | None, int | None]:
    """Count, (feedback) metadata and, with ``errors``, errorCount of a set of 1-minute
    values; a missing key is 0."""
    total = 0
    error_total: int | None = 0 if errors else None
    meta: dict[str, int] | None = (
        {"changedCount": 0, "unchangedCount": 0, "invalidCount": 0}
        if record_type in FEEDBACK_RECORD_TYPES
        else None
    )
    for v in values:
        total += v.count
        if meta is not None:
            for k in meta:
                meta[k] += int((v.metadata or {}).get(k, 0))
        if error_total is not None:
            error_total += v.error_count or 0
    return total, meta, error_total


def _agrees(
    record_type: str, stored: BucketValue | None, children: list[BucketValue], errors: bool
) -> bool:
    if errors and any(c.error_count is None for c in children):
        return False  # a row from before the error rules: its errors are unknown
    count, meta, error_total = sum_values(record_type, children, errors=errors)
    if stored is None:
        return count == 0
    if stored.count != count or (errors and stored.error_count != error_total):
        return False
    if meta is None:
        return True
    have = {k: int((stored.metadata or {}).get(k, 0)) for k in meta}
    return have == meta


def _check_hour(
    unit: WorkUnit, hour: datetime, rows: list[StoredBucket], errors: bool, new: bool = False
) -> str | None:
    spec = SOURCE_MODELS[unit.key.model]
    base = BucketKey(unit.key.account_id, spec.record_type, hour, 60).composite_key
    by_scope: dict[str, dict[int, dict[int, StoredBucket]]] = defaultdict(lambda: defaultdict(dict))
    for sb in rows:
        by_scope[scope_of(sb.key)][sb.key.minutes][epoch_minute(sb.key.start)] = sb
    if not new and not any(sb.key.composite_key == base for sb in rows):
        return "no stored 60-minute row (first aggregation of this hour, or pre-deployment data)"
    first = epoch_minute(hour)
    for scope, sizes in sorted(by_scope.items()):
        record_type = next(iter(next(iter(sizes.values())).values())).key.record_type
        ones = sizes.get(1, {})
        # Every 5- and 15-minute row of the hour, not only those over touched minutes: a
        # whole-hour derivation whose coarser write failed part-way leaves rows anywhere in
        # the hour, and only this check sends their hour back to a full recount.
        starts = {60: [first]}
        for size in (5, 15):
            starts[size] = list(range(first, first + 60, size))
        for size, bucket_starts in starts.items():
            for start in bucket_starts:
                stored = sizes.get(size, {}).get(start)
                children = [ones[m].value for m in range(start, start + size) if m in ones]
                if not _agrees(record_type, stored.value if stored else None, children, errors):
                    have = stored.value.count if stored else 0
                    total = sum(c.count for c in children)
                    if have == total and errors:
                        return (
                            f"{scope}: stored {size}-minute row at "
                            f"{from_epoch_minute(start):%H:%M} disagrees with its 1-minute rows "
                            "on errorCount (or they carry none yet)"
                        )
                    return (
                        f"{scope}: stored {size}-minute row at {from_epoch_minute(start):%H:%M} "
                        f"says {have}, its 1-minute rows sum to {total}"
                    )
    return None


def invalidate(
    unit: WorkUnit,
    stored: Mapping[str, StoredBucket],
    *,
    errors: bool = False,
    new_hours: frozenset[datetime] = frozenset(),
) -> Invalidation:
    """Touched minutes of ``unit`` and the self-check of their hours on ``stored`` (pure).

    ``stored``: the unit's stored rows of every size over the touched hours, read before
    this invocation wrote anything. ``errors``: the model has error rules (errorCount is
    checked too). ``new_hours``: hours seen to hold no record outside their touched
    minutes (module doc).
    """
    touched = frozenset(epoch_minute(k.start) for k in unit.touched if k.minutes == 1)
    per_hour: dict[int, set[int]] = defaultdict(set)
    for m in touched:
        per_hour[m // 60 * 60].add(m)
    rows: dict[int, list[StoredBucket]] = defaultdict(list)
    for sb in stored.values():
        rows[epoch_minute(sb.key.start) // 60 * 60].append(sb)
    derive: list[datetime] = []
    recount: list[datetime] = []
    reasons: dict[datetime, str] = {}
    for first in sorted(per_hour):
        hour = from_epoch_minute(first)
        reason = _check_hour(unit, hour, rows.get(first, []), errors, hour in new_hours)
        if reason is None:
            derive.append(hour)
        else:
            recount.append(hour)
            reasons[hour] = reason
    return Invalidation(touched, tuple(derive), tuple(recount), reasons)


def hour_ranges(hours: Iterable[datetime]) -> tuple[HourRange, ...]:
    """One range per hour (not merged: callers need them one by one)."""
    return tuple(HourRange(h, h + timedelta(hours=1)) for h in sorted(set(hours)))
