"""The independent check: every bucket implied by the source tables, counted directly,
and the comparison of stored buckets with it.

Deliberately independent of the package's counting: `datetime.fromisoformat` and plain
loops, no `metrics_agg` counter, planner or timestamp parser, so that what uses it (the
demo, `metrics-agg demo`) checks the pipeline rather than repeating it. Only the data
contract (`models.SOURCE_MODELS`: recordTypes, timestamp and category fields) is shared.
"""

from __future__ import annotations

__all__ = ["Mismatch", "TruthBucket", "compare_with_tables", "direct_counts"]

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_agg.models import SOURCE_MODELS

SIZES = (1, 5, 15, 60)
_FEEDBACK_TALLIES = ("changedCount", "unchangedCount", "invalidCount")


@dataclass(frozen=True, slots=True)
class TruthBucket:
    count: int
    metadata: Mapping[str, int] | None = None
    errors: int | None = None  # errorCount; None for models without error conventions


def _code_error(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 400
    return isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 400


# docs/design.md §2: upstream's failure conventions, written out here rather than taken from
# `models.ErrorRule`, so the demo checks the counters' rule evaluation too.
_IS_ERROR: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "Task": lambda r: r.get("status") == "FAILED",
    "Evaluation": lambda r: r.get("status") == "FAILED",
    "Procedure": lambda r: r.get("status") in ("FAILED", "ERROR"),
    "ScoreResult": lambda r: _code_error(r.get("code")) or r.get("status") == "error",
}
_ERROR_TYPES = frozenset(rt for model in _IS_ERROR for rt in SOURCE_MODELS[model].record_types)


def _instant(value: object) -> datetime | None:
    """The instant of a well-formed AWSDateTime; None for absent or malformed values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _bucket_label(dt: datetime, minutes: int) -> str:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    whole = int((dt - epoch).total_seconds() // 60)
    start = epoch + timedelta(minutes=whole - whole % minutes)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_present(record: Mapping[str, Any], fields: Sequence[str]) -> object:
    for name in fields:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def direct_counts(
    records_by_model: Mapping[str, Iterable[Mapping[str, Any]]],
) -> dict[str, TruthBucket]:
    """Every non-empty bucket implied by the records, keyed by `compositeKey` (docs/design.md §2).

    Written from the data contract alone: a record is placed by its model's timestamp
    (FeedbackItem: editedAt, else updatedAt, else createdAt), counted once per size in
    its recordType and in its category's recordType; feedback also per scorecard and per
    score with changed/unchanged/invalid tallies.
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    meta: dict[str, Counter[str]] = {}
    for model, records in records_by_model.items():
        spec = SOURCE_MODELS[model]
        fields = (
            ("editedAt", "updatedAt", "createdAt")
            if model == "FeedbackItem"
            else (spec.timestamp_fields)
        )
        for record in records:
            dt = _instant(_first_present(record, fields))
            if dt is None:
                continue
            if model == "FeedbackItem":
                initial, final = record.get("initialAnswerValue"), record.get("finalAnswerValue")
                if record.get("isInvalid") or initial is None or final is None:
                    outcome = "invalidCount"
                elif str(initial) != str(final):
                    outcome = "changedCount"
                else:
                    outcome = "unchangedCount"
                prefixes = ["feedbackItems"]
                scorecard, score = record.get("scorecardId"), record.get("scoreId")
                if isinstance(scorecard, str) and scorecard:
                    prefixes.append(f"feedbackItemsByScorecard#{scorecard}")
                    if isinstance(score, str) and score:
                        prefixes.append(f"feedbackItemsByScore#{score}")
                for minutes in SIZES:
                    label = _bucket_label(dt, minutes)
                    for prefix in prefixes:
                        key = f"{prefix}#{label}#{minutes}"
                        counts[key] += 1
                        meta.setdefault(key, Counter())[outcome] += 1
                continue
            types = [spec.record_type]
            if spec.category_field is not None:
                category = record.get(spec.category_field)
                if isinstance(category, str) and category in spec.category_record_types:
                    types.append(spec.category_record_types[category])
            is_error = _IS_ERROR.get(model)
            failed = is_error is not None and is_error(record)
            for minutes in SIZES:
                label = _bucket_label(dt, minutes)
                for record_type in types:
                    counts[f"{record_type}#{label}#{minutes}"] += 1
                    if failed:
                        errors[f"{record_type}#{label}#{minutes}"] += 1
    out: dict[str, TruthBucket] = {}
    for key, n in counts.items():
        tally = meta.get(key)
        metadata = None
        if tally is not None:
            metadata = {k: tally.get(k, 0) for k in _FEEDBACK_TALLIES}
        record_type = key.split("#", 1)[0]
        out[key] = TruthBucket(
            n, metadata, errors.get(key, 0) if record_type in _ERROR_TYPES else None
        )
    return out


@dataclass(frozen=True, slots=True)
class Mismatch:
    composite_key: str
    stored: int | None  # None: no such bucket stored
    truth: int
    reason: str


def _stored_metadata(raw: object) -> dict[str, int] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, Mapping):
        return None
    return {str(k): int(v) for k, v in value.items()}


def compare_with_tables(
    stored_metrics: Iterable[Mapping[str, Any]], truth: Mapping[str, TruthBucket]
) -> tuple[int, list[Mismatch]]:
    """(buckets checked, mismatches): every stored bucket against the truth (absent = 0),
    errorCount included (absent for models without error conventions), and every
    non-empty truth bucket that is not stored. `complete` must equal "the
    bucket had ended when the snapshot that wrote it (`updatedAt`) was taken"."""
    mismatches: list[Mismatch] = []
    seen: set[str] = set()
    checked = 0
    for item in stored_metrics:
        key = str(item["compositeKey"])
        seen.add(key)
        checked += 1
        record_type = str(item.get("recordType", ""))
        want = truth.get(key, TruthBucket(0, None, 0 if record_type in _ERROR_TYPES else None))
        count = int(item["count"])
        reasons = []
        if count != want.count:
            reasons.append("count")
        if item.get("errorCount") != want.errors:
            reasons.append("errorCount")
        if str(item.get("recordType", "")).startswith("feedbackItems"):
            have_meta = _stored_metadata(item.get("metadata")) or {}
            want_meta = dict(want.metadata or {})
            if any(have_meta.get(n, 0) != want_meta.get(n, 0) for n in _FEEDBACK_TALLIES):
                reasons.append("metadata")
        end, updated = _instant(item.get("timeRangeEnd")), _instant(item.get("updatedAt"))
        if (
            end is not None
            and updated is not None
            and bool(item.get("complete")) != (end <= updated)
        ):
            reasons.append("complete")
        if reasons:
            mismatches.append(Mismatch(key, count, want.count, ", ".join(reasons)))
    for key, want in truth.items():
        if key not in seen and want.count:
            mismatches.append(Mismatch(key, None, want.count, "not stored"))
    return checked, sorted(mismatches, key=lambda m: m.composite_key)
