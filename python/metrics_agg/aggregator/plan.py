"""`Batch` -> `[WorkUnit]`: which hours of which (model, account) to recount (docs/design.md §4.2).

Per (model, account): the current and previous wall-clock hour, plus every hour holding
an old or new timestamp of a batch record. Hours older than `max_hours_back` are not
recounted but reported (`WorkUnit.skipped_hours`, logged by the pipeline).

Future hours: a record stamped ahead of the clock (client clock skew, scheduled items) is
recounted when it is at most `max_hours_ahead` (default 24) hours ahead, so its bucket is
right as soon as it is written (with ``complete`` false); further ahead it is reported
like a too-old hour. The stream will not mention such a record again when its hour
arrives, so counting it now is the only time it would be counted from the stream.

Also computed here, for docs/design.md §4.5's always-write rule: the "touched" buckets, i.e. for
every image of a batch record, its bucket of every size in every recordType that image
feeds (base type, category type, feedback scopes).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_HOURS_AHEAD",
    "floor_hour",
    "group_hours",
    "image_record_types",
    "plan_recount",
    "plan_units",
]

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from metrics_agg.models import (
    BUCKET_SIZES,
    SOURCE_MODELS,
    Batch,
    BucketKey,
    HourRange,
    ModelSpec,
    StreamChange,
    UnitKey,
    WorkUnit,
)
from metrics_agg.timestamps import epoch_minute, from_epoch_minute

DEFAULT_MAX_HOURS_AHEAD = 24
_HOUR = timedelta(hours=1)


def floor_hour(dt: datetime) -> datetime:
    """The start of the UTC hour holding ``dt`` (aware)."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return from_epoch_minute(epoch_minute(dt) // 60 * 60)


def _ceil_hour(dt: datetime) -> datetime:
    start = floor_hour(dt)
    return start if start == dt.astimezone(UTC) else start + _HOUR


def group_hours(hours: Iterable[datetime]) -> tuple[HourRange, ...]:
    """Hour starts -> sorted ranges, contiguous hours merged (one read per range, §4.3)."""
    ranges: list[HourRange] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1].end == hour:
            ranges[-1] = HourRange(ranges[-1].start, hour + _HOUR)
        else:
            ranges.append(HourRange(hour, hour + _HOUR))
    return tuple(ranges)


def image_record_types(
    spec: ModelSpec, image: Mapping[str, object]
) -> list[tuple[str, str | None, str | None]]:
    """(recordType, scorecardId, scoreId) of every bucket family this image counts in."""
    if spec.scopes:
        return spec.scopes_of(image)
    out: list[tuple[str, str | None, str | None]] = [(spec.record_type, None, None)]
    if spec.category_field is not None:
        label = image.get(spec.category_field)
        if isinstance(label, str) and label in spec.category_record_types:
            out.append((spec.category_record_types[label], None, None))
    return out


def _touched(spec: ModelSpec, change: StreamChange, hours: set[datetime]) -> set[BucketKey]:
    keys: set[BucketKey] = set()
    for image, when in ((change.old_image, change.old_time), (change.new_image, change.new_time)):
        if image is None or when is None or floor_hour(when) not in hours:
            continue
        minute = epoch_minute(when)
        for record_type, sc, score in image_record_types(spec, image):
            for size in BUCKET_SIZES:
                keys.add(
                    BucketKey(
                        change.account_id,
                        record_type,
                        from_epoch_minute(minute // size * size),
                        size,
                        sc,
                        score,
                    )
                )
    return keys


def plan_units(
    batch: Batch,
    *,
    now: datetime,
    max_hours_back: int,
    max_hours_ahead: int = DEFAULT_MAX_HOURS_AHEAD,
) -> list[WorkUnit]:
    """One `WorkUnit` per (model, account) of the batch, sorted by key.

    Raises:
        ValueError: ``now`` is naive or a limit is negative.
    """
    if max_hours_back < 1 or max_hours_ahead < 0:
        raise ValueError("max_hours_back must be >= 1 and max_hours_ahead >= 0")
    current = floor_hour(now)
    oldest = current - max_hours_back * _HOUR
    newest = current + max_hours_ahead * _HOUR
    by_key: dict[UnitKey, list[StreamChange]] = defaultdict(list)
    for change in batch.changes:
        by_key[UnitKey(change.model, change.account_id)].append(change)
    units: list[WorkUnit] = []
    for key in sorted(by_key):
        spec = SOURCE_MODELS[key.model]
        changes = sorted(by_key[key], key=lambda c: int(c.sequence_number))
        hours = {current, current - _HOUR}
        skipped: set[datetime] = set()
        for change in changes:
            for when in (change.old_time, change.new_time):
                if when is None:
                    continue
                hour = floor_hour(when)
                (hours if oldest <= hour <= newest else skipped).add(hour)
        touched: set[BucketKey] = set()
        for change in changes:
            touched |= _touched(spec, change, hours)
        units.append(
            WorkUnit(
                key=key,
                ranges=group_hours(hours),
                changes=tuple(changes),
                touched=frozenset(touched),
                skipped_hours=tuple(sorted(skipped)),
            )
        )
    return units


def plan_recount(model: str, account_id: str, start: datetime, end: datetime) -> WorkUnit:
    """A backfill unit for ``[start, end)``, aligned outward to whole hours (docs/design.md §4).

    Raises:
        ValueError: unknown model, naive datetimes, or ``end <= start``.
    """
    if model not in SOURCE_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SOURCE_MODELS)}")
    if not account_id:
        raise ValueError("account id must not be empty")
    first, stop = floor_hour(start), _ceil_hour(end)
    if end <= start:
        raise ValueError("recount window is empty: end must be after start")
    hours = []
    hour = first
    while hour < stop:
        hours.append(hour)
        hour += _HOUR
    return WorkUnit(key=UnitKey(model, account_id), ranges=group_hours(hours))
