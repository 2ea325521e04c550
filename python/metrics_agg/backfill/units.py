"""Backfill units: (model, account, day or hour) windows and their recount messages.

A backfill of a long range is cut into units small enough for one Lambda invocation and
many enough to run in parallel. A unit is a whole UTC day, or, when the stored 60-minute
buckets say that day holds more than ``max_unit_records`` records, each of its hours
(docs/design.md §4: a recount event backfills any window; this only decides how many). Days with
no stored buckets are unknown volume and stay whole: on day one that is most of them.

Units are a pure function of their inputs, so a rerun plans the same units with the same
ids: that is what lets a journal of finished ids resume an interrupted backfill.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_UNIT_RECORDS",
    "BackfillUnit",
    "UnitMessage",
    "decode_message",
    "encode_message",
    "plan_backfill",
]

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from metrics_agg.aggregator.plan import floor_hour
from metrics_agg.models import SOURCE_MODELS
from metrics_agg.timestamps import format_bucket_time, parse_instant

DEFAULT_MAX_UNIT_RECORDS = 100_000  # a day above this is split into hours
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class BackfillUnit:
    """One recount event's window: ``[start, end)`` of one (model, account), hour-aligned."""

    model: str
    account_id: str
    start: datetime
    end: datetime

    @property
    def unit_id(self) -> str:
        """Stable across runs (the journal's key)."""
        return (
            f"{self.model}|{self.account_id}|"
            f"{format_bucket_time(self.start)}|{format_bucket_time(self.end)}"
        )

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / _HOUR)


@dataclass(frozen=True, slots=True)
class UnitMessage:
    """A queued recount event as the worker reads it back."""

    unit: BackfillUnit
    run_id: str | None  # None: a plain recount event, not part of a backfill run
    # The event's ``"reason"``; "recheck" (`aggregator.recheck`): report corrections as drift.
    reason: str | None = None


def _days(start: datetime, end: datetime) -> Iterable[tuple[datetime, datetime]]:
    day = floor_hour(start).replace(hour=0)
    while day < end:
        yield max(day, start), min(day + _DAY, end)
        day += _DAY


def plan_backfill(
    accounts: Sequence[str],
    models: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    hourly_counts: Mapping[tuple[str, str], Mapping[datetime, int]] | None = None,
    max_unit_records: int = DEFAULT_MAX_UNIT_RECORDS,
    hours_only: bool = False,
) -> list[BackfillUnit]:
    """Every unit of ``[start, end)`` (widened to whole hours) for each model and account.

    ``hourly_counts[(model, account)][hour]`` is the stored 60-minute count of the model's
    main recordType, where one exists; it decides day or hour units. ``hours_only`` makes
    every unit an hour (for days known to be large that have no stored buckets yet).

    Raises:
        ValueError: unknown model, empty account id, naive datetimes or an empty range.
    """
    for m in models:
        if m not in SOURCE_MODELS:
            raise ValueError(f"unknown model {m!r}; expected one of {', '.join(SOURCE_MODELS)}")
    if any(not a for a in accounts):
        raise ValueError("account ids must not be empty")
    first = floor_hour(start)
    stop = floor_hour(end)
    if stop != end:
        stop += _HOUR
    if stop <= first:
        raise ValueError("backfill range is empty: --until must be after --since")
    if max_unit_records < 1:
        raise ValueError("max_unit_records must be at least 1")
    counts = hourly_counts or {}
    units: list[BackfillUnit] = []
    for model in dict.fromkeys(models):
        for account in dict.fromkeys(accounts):
            known = counts.get((model, account), {})
            for a, b in _days(first, stop):
                volume = sum(n for hour, n in known.items() if a <= hour < b)
                if (hours_only or volume > max_unit_records) and b - a > _HOUR:
                    hour = a
                    while hour < b:
                        units.append(BackfillUnit(model, account, hour, hour + _HOUR))
                        hour += _HOUR
                else:
                    units.append(BackfillUnit(model, account, a, b))
    return units


def encode_message(unit: BackfillUnit, run_id: str) -> str:
    """The SQS body: the recount event of docs/design.md §4 plus the run it belongs to."""
    return json.dumps(
        {
            "recount": {
                "accountId": unit.account_id,
                "model": unit.model,
                "start": format_bucket_time(unit.start),
                "end": format_bucket_time(unit.end),
            },
            "backfill": {"run": run_id},
        },
        separators=(",", ":"),
    )


def decode_message(body: str) -> UnitMessage:
    """An SQS body back into a unit.

    Raises:
        ValueError: not JSON, not a recount event, or its fields are wrong (the message
            says which field, never the body).
    """
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValueError("message body is not JSON") from None
    spec = doc.get("recount") if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        raise ValueError("message body is not a recount event {'recount': {...}}")
    fields = {}
    for name in ("accountId", "model", "start", "end"):
        value = spec.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"recount event lacks {name!r}")
        fields[name] = value
    if fields["model"] not in SOURCE_MODELS:
        raise ValueError("recount event names an unknown model")
    start, end = parse_instant(fields["start"]), parse_instant(fields["end"])
    if end <= start:
        raise ValueError("recount event window is empty")
    info = doc.get("backfill")
    run = info.get("run") if isinstance(info, dict) else None
    reason = doc.get("reason")
    return UnitMessage(
        BackfillUnit(fields["model"], fields["accountId"], start, end),
        run if isinstance(run, str) and run else None,
        reason if isinstance(reason, str) and reason else None,
    )
