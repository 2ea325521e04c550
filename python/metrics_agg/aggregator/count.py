"""`Snapshot` -> `UnitCounts`: the desired value of every bucket of a unit (docs/design.md §4.4).

One counter pass per hour range covers all recordTypes of the model: `items` /
`predictionItems` / `evaluationItems` share one `count_records` call through the
category field; FeedbackItem's three scopes and the changed/unchanged/invalid metadata
share one `count_buckets` call through a per-record label.

The desired set holds every bucket of every range for the unscoped recordTypes (zeros
included, so a stored bucket that became empty is compared against 0), and only the
non-empty buckets of the feedback scopes (a scope that became empty is found by the
writer from the stored side). ``complete`` is ``bucket end <= snapshot_time`` (docs/design.md §2).
"""

from __future__ import annotations

__all__ = [
    "FEEDBACK_METADATA_KEYS",
    "count_minutes",
    "count_unit",
    "cross_check",
    "feedback_class",
]

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from metrics_agg.counter.api import (
    Backend,
    count_buckets,
    count_records,
    feedback_class,
    is_error,
)
from metrics_agg.models import (
    BUCKET_SIZES,
    SCOPE_OF,
    SOURCE_MODELS,
    BucketKey,
    BucketValue,
    CountResult,
    ErrorRules,
    HourRange,
    ModelSpec,
    Snapshot,
    UnitCounts,
)

FEEDBACK_METADATA_KEYS = ("changedCount", "unchangedCount", "invalidCount")
_CLASSES = ("changed", "unchanged", "invalid")
_MAX_EXAMPLES = 5

# A feedback scope: (recordType, scorecardId, scoreId).
_Scope = tuple[str, str | None, str | None]


def _check_hours(r: HourRange) -> None:
    # docs/design.md §4.4 / issue 4: a bucket (of any size up to 60) is only ever written
    # from a read covering its whole hour; ranges not on hour bounds would break that.
    if (
        r.start.minute
        or r.start.second
        or r.start.microsecond
        or r.end <= r.start
        or ((r.end - r.start) % timedelta(hours=1))
    ):
        raise ValueError(f"range is not whole hours: {r}")


def _complete(start: datetime, size: int, snapshot_time: datetime) -> bool:
    return start + timedelta(minutes=size) <= snapshot_time


def _emit(
    desired: dict[BucketKey, BucketValue],
    account: str,
    scope: _Scope,
    r: HourRange,
    counts: Mapping[int, Sequence[int]],
    meta: Mapping[str, Mapping[int, Sequence[int]]] | None,
    snapshot_time: datetime,
    *,
    zeros: bool,
    sizes: tuple[int, ...] = BUCKET_SIZES,
    errors: Mapping[int, Sequence[int]] | None = None,
) -> None:
    record_type, sc, score = scope
    for size in sizes:
        row = counts[size]
        error_row = None if errors is None else errors[size]
        for i, n in enumerate(row):
            if not n and not zeros:
                continue
            start = r.start + timedelta(minutes=i * size)
            metadata = None
            if meta is not None:
                metadata = {
                    key: (meta[cls][size][i] if cls in meta else 0)
                    for key, cls in zip(FEEDBACK_METADATA_KEYS, _CLASSES, strict=True)
                }
            desired[BucketKey(account, record_type, start, size, sc, score)] = BucketValue(
                n,
                _complete(start, size, snapshot_time),
                metadata,
                None if error_row is None else error_row[i],
            )


def _zeros(r: HourRange, sizes: tuple[int, ...] = BUCKET_SIZES) -> dict[int, list[int]]:
    minutes = int((r.end - r.start).total_seconds()) // 60
    return {size: [0] * (minutes // size) for size in sizes}


def _count_plain(
    spec: ModelSpec,
    r: HourRange,
    records: Sequence[Mapping[str, Any]],
    account: str,
    snapshot_time: datetime,
    desired: dict[BucketKey, BucketValue],
    rules: ErrorRules,
    backend: Backend = "auto",
    sizes: tuple[int, ...] = BUCKET_SIZES,
) -> CountResult:
    res = count_records(
        records,
        r.start,
        r.end,
        sizes=sizes,
        fields=spec.timestamp_fields,
        category_field=spec.category_field,
        backend=backend,
        errors=rules or None,
    )
    _emit(
        desired,
        account,
        (spec.record_type, None, None),
        r,
        res.counts,
        None,
        snapshot_time,
        zeros=True,
        sizes=sizes,
        errors=res.error_counts,
    )
    for label, record_type in spec.category_record_types.items():
        counts = res.category_counts.get(label) or _zeros(r, sizes)
        errors = (res.category_error_counts.get(label) or _zeros(r, sizes)) if rules else None
        _emit(
            desired,
            account,
            (record_type, None, None),
            r,
            counts,
            None,
            snapshot_time,
            zeros=True,
            sizes=sizes,
            errors=errors,
        )
    return res


def _add(into: dict[int, list[int]], counts: Mapping[int, Sequence[int]]) -> None:
    for size, row in counts.items():
        acc = into[size]
        for i, n in enumerate(row):
            if n:
                acc[i] += n


def _count_scoped(
    spec: ModelSpec,
    r: HourRange,
    records: Sequence[Mapping[str, Any]],
    account: str,
    snapshot_time: datetime,
    desired: dict[BucketKey, BucketValue],
    rules: ErrorRules,
    backend: Backend = "auto",
    sizes: tuple[int, ...] = BUCKET_SIZES,
) -> CountResult:
    timestamps: list[object] = []
    labels: list[str | None] = []
    # (scorecardId, scoreId, class, is an error) -> label: the counter's one pass splits
    # the records by everything a scope's count, metadata and errorCount need.
    label_of: dict[tuple[str | None, str | None, str, bool], str] = {}
    for rec in records:
        ts: object = None
        for name in spec.timestamp_fields:  # effective = editedAt or updatedAt or createdAt
            value = rec.get(name)
            if value is not None and value != "":
                ts = value
                break
        sc, score = rec.get("scorecardId"), rec.get("scoreId")
        triple = (
            sc if isinstance(sc, str) and sc else None,
            score if isinstance(score, str) and score else None,
            feedback_class(rec),
            bool(rules) and is_error(rec, rules),
        )
        label = label_of.get(triple)
        if label is None:
            label = label_of[triple] = str(len(label_of))
        timestamps.append(ts)
        labels.append(label)
    res = count_buckets(timestamps, r.start, r.end, sizes=sizes, categories=labels, backend=backend)
    # Sum the per-label counts into every scope's total and per-class metadata.
    totals: dict[_Scope, dict[int, list[int]]] = {}
    classes: dict[_Scope, dict[str, dict[int, list[int]]]] = {}
    errors: dict[_Scope, dict[int, list[int]]] = {}
    all_scope: _Scope = (spec.scopes[0].record_type, None, None)
    for (sc, score, cls, err), label in label_of.items():
        counts = res.category_counts.get(label)
        if counts is None:
            continue  # every record of this label was outside the window or invalid
        for scope in spec.scopes_of({"scorecardId": sc, "scoreId": score}):
            # compositeKey uses scoreId alone (docs/design.md §2): one scope per scoreId.
            key = scope if not SCOPE_OF[scope[0]].by_score else _score_scope(totals, scope)
            _add(totals.setdefault(key, _zeros(r, sizes)), counts)
            _add(classes.setdefault(key, {}).setdefault(cls, _zeros(r, sizes)), counts)
            if err:
                _add(errors.setdefault(key, _zeros(r, sizes)), counts)

    def errors_of(scope: _Scope) -> Mapping[int, Sequence[int]] | None:
        return (errors.get(scope) or _zeros(r, sizes)) if rules else None

    _emit(
        desired,
        account,
        all_scope,
        r,
        totals.get(all_scope) or _zeros(r, sizes),
        classes.get(all_scope, {}),
        snapshot_time,
        zeros=True,
        sizes=sizes,
        errors=errors_of(all_scope),
    )
    for scope, counts in totals.items():
        if scope != all_scope:
            _emit(
                desired,
                account,
                scope,
                r,
                counts,
                classes[scope],
                snapshot_time,
                zeros=False,
                sizes=sizes,
                errors=errors_of(scope),
            )
    return res


def _score_scope(totals: Mapping[_Scope, object], scope: _Scope) -> _Scope:
    """The existing ByScore scope with this scoreId, whatever its scorecardId."""
    for other in totals:
        if other[0] == scope[0] and other[2] == scope[2]:
            return other
    return scope


def count_unit(
    snapshot: Snapshot,
    *,
    backend: Backend = "auto",
    errors: Mapping[str, ErrorRules] | None = None,
) -> UnitCounts:
    """Count every recordType of the unit's model, one counter pass per hour range.

    ``errors``: error rules per model (`Config.errors`); a model absent from it uses its
    default (`ModelSpec.errors`). With rules, every bucket gets an ``error_count``.

    Raises:
        ValueError: a range of the snapshot is not made of whole hours.
    """
    for rr in snapshot.ranges:
        _check_hours(rr.range)
    return _count(snapshot, BUCKET_SIZES, backend, errors)


def count_minutes(
    snapshot: Snapshot,
    *,
    backend: Backend = "auto",
    errors: Mapping[str, ErrorRules] | None = None,
) -> UnitCounts:
    """The 1-minute buckets of every recordType over the snapshot's minute spans
    (docs/design.md §4.8: the incremental path recounts minutes; coarser sizes are derived).

    Raises:
        ValueError: a span does not start and end on whole minutes.
    """
    for rr in snapshot.ranges:
        r = rr.range
        if r.start.second or r.start.microsecond or r.end <= r.start or (r.end - r.start) % _MINUTE:
            raise ValueError(f"span is not whole minutes: {r}")
    return _count(snapshot, (1,), backend, errors)


_MINUTE = timedelta(minutes=1)


def _count(
    snapshot: Snapshot,
    sizes: tuple[int, ...],
    backend: Backend,
    errors: Mapping[str, ErrorRules] | None,
) -> UnitCounts:
    unit = snapshot.unit
    spec = SOURCE_MODELS[unit.key.model]
    rules = spec.errors if errors is None else errors.get(spec.name, spec.errors)
    desired: dict[BucketKey, BucketValue] = {}
    processed = missing = invalid = outside = one_minute = 0
    examples: list[str] = []
    for rr in snapshot.ranges:
        count = _count_scoped if spec.scopes else _count_plain
        res = count(
            spec,
            rr.range,
            rr.records,
            unit.key.account_id,
            snapshot.snapshot_time,
            desired,
            rules,
            backend,
            sizes,
        )
        processed += res.processed
        missing += res.missing
        invalid += res.invalid
        outside += res.outside_window
        one_minute += sum(res.counts[1])
        examples.extend(res.invalid_examples[: _MAX_EXAMPLES - len(examples)])
    return UnitCounts(
        unit=unit,
        snapshot_time=snapshot.snapshot_time,
        desired=desired,
        processed=processed,
        missing=missing,
        invalid=invalid,
        outside_window=outside,
        one_minute_total=one_minute,
        invalid_examples=tuple(examples),
        errors=bool(rules),
    )


def cross_check(counts: UnitCounts) -> bool:
    """The unit's verdict: its 1-minute buckets hold every processed record exactly once.

    False means a counter bug; the unit then fails and writes nothing.
    """
    return counts.one_minute_total == counts.processed
