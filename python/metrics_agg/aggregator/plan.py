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

A MODIFY whose old and new images look the same to the counter (`CountedView`: account,
placing field and minute, recordTypes and scopes, feedback class, error verdict) changes
no bucket, so it invalidates nothing: it adds no hour and no touched bucket
(docs/incremental.md "MODIFYs that change nothing counted").
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_HOURS_AHEAD",
    "CountedView",
    "changes_nothing_counted",
    "counted_view",
    "floor_hour",
    "group_hours",
    "image_record_types",
    "plan_recount",
    "plan_units",
]

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from metrics_agg.counter.api import feedback_class, is_error
from metrics_agg.models import (
    BUCKET_SIZES,
    SOURCE_MODELS,
    Batch,
    BucketKey,
    ErrorRules,
    HourRange,
    ModelSpec,
    StreamChange,
    UnitKey,
    WorkUnit,
)
from metrics_agg.timestamps import epoch_minute, from_epoch_minute, parse_instant_or_none

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


@dataclass(frozen=True, slots=True)
class CountedView:
    """Everything of one image that can change a bucket; equal views count identically.

    ``placing`` is the first present timestamp field with its UTC minute and the raw
    string's local-minute prefix (the index sorts the raw string, so a record whose prefix
    moves can be found by another range even in the same UTC minute); an unparsable value
    is kept whole.
    """

    account_id: object
    placing: tuple[str, int | None, str] | None
    families: frozenset[tuple[str, str | None, str | None]]
    feedback: str | None
    error: bool | None


def counted_view(spec: ModelSpec, image: Mapping[str, object], rules: ErrorRules) -> CountedView:
    """What the counter reads of ``image`` under ``rules`` (docs/design.md §2, §3)."""
    placing: tuple[str, int | None, str] | None = None
    for name in spec.timestamp_fields:
        raw = image.get(name)
        if raw is None or raw == "":
            continue
        when = parse_instant_or_none(raw)
        text = raw if isinstance(raw, str) else repr(raw)
        placing = (name, None, text) if when is None else (name, epoch_minute(when), text[:16])
        break
    return CountedView(
        account_id=image.get("accountId"),
        placing=placing,
        families=frozenset(image_record_types(spec, image)),
        feedback=feedback_class(image) if spec.scopes else None,
        error=is_error(image, rules) if rules else None,
    )


def changes_nothing_counted(change: StreamChange, rules: ErrorRules) -> bool:
    """A MODIFY with both images whose `CountedView`s are equal.

    Without an old image (a stream view type other than NEW_AND_OLD_IMAGES) nothing is
    known of what changed: the record invalidates its minutes as any other.
    """
    if change.event_name != "MODIFY" or change.old_image is None or change.new_image is None:
        return False
    spec = SOURCE_MODELS[change.model]
    return counted_view(spec, change.old_image, rules) == counted_view(
        spec, change.new_image, rules
    )


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
    unchanged_rules: Mapping[str, ErrorRules] | None = None,
) -> list[WorkUnit]:
    """One `WorkUnit` per (model, account) of the batch, sorted by key.

    With ``unchanged_rules`` (every model's error rules), a MODIFY that changes nothing
    counted (`changes_nothing_counted`) adds no hour and no touched bucket; it stays in
    ``changes`` (its images are merged like any other) and is counted in ``unchanged``.
    None keeps every MODIFY invalidating its minutes (the earlier per-unit path).

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
        rules = None if unchanged_rules is None else unchanged_rules.get(key.model, ())
        counted = [c for c in changes if rules is None or not changes_nothing_counted(c, rules)]
        hours = {current, current - _HOUR}
        skipped: set[datetime] = set()
        for change in counted:
            for when in (change.old_time, change.new_time):
                if when is None:
                    continue
                hour = floor_hour(when)
                (hours if oldest <= hour <= newest else skipped).add(hour)
        touched: set[BucketKey] = set()
        for change in counted:
            touched |= _touched(spec, change, hours)
        units.append(
            WorkUnit(
                key=key,
                ranges=group_hours(hours),
                changes=tuple(changes),
                touched=frozenset(touched),
                skipped_hours=tuple(sorted(skipped)),
                unchanged=len(changes) - len(counted),
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
