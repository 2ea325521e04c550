"""One stream unit, incrementally (docs/design.md §4.8): cost follows the change, not the hour.

Steps, each after the previous one finished (the order is what keeps it exact; the
argument and its edge cases are in docs/incremental.md):

1. read the unit's stored rows of every touched hour (one request) and self-check each
   hour (`invalidation`): agreeing hours recount their touched minutes, the others every
   minute;
2. read the source records of those minutes only (adjacent minutes merged into one
   key-condition range; the batch's images merged by id), count 1-minute buckets;
3. write the 1-minute buckets with the rules of docs/design.md §4.5 (conditional on the snapshot
   time, touched buckets always, emptied ones as zero);
4. once every one of those writes is acknowledged, take the time ``t`` and read the
   stored rows of the hours again (one request);
5. write the parents (5, 15, 60 minutes) of every 1-minute bucket written in step 3 as the
   sums of the stored 1-minute rows (`derivation`), conditional on the stored `updatedAt`
   being no newer than ``t``, which they store as `updatedAt`.

A failed step raises a `TransportError`: nothing later runs (a failed 1-minute write means
nothing is derived), and the pipeline reports the unit for a retry. ``pause`` is called
with the name of each step before it starts: the race tests interleave invocations there.
"""

from __future__ import annotations

__all__ = [
    "STEPS",
    "MinutePlan",
    "Pause",
    "coarse_counts",
    "count_snapshot",
    "finish",
    "no_pause",
    "plan_minutes",
    "run_stream_unit",
    "touched_hours",
]

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from metrics_agg.aggregator.count import count_minutes
from metrics_agg.aggregator.derivation import derive_coarse, overlay_own_writes
from metrics_agg.aggregator.invalidation import (
    Invalidation,
    coarse_parents,
    hour_ranges,
    invalidate,
    minute_spans,
)
from metrics_agg.aggregator.read import read_stored, read_unit
from metrics_agg.aggregator.recheck import outside_reconcile
from metrics_agg.aggregator.report import fmt_count
from metrics_agg.aggregator.write import plan_writes, write_changes
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import (
    SOURCE_MODELS,
    HourRange,
    Snapshot,
    StoredBucket,
    UnitCounts,
    UnitOutcome,
    WorkUnit,
    WriteOutcome,
)
from metrics_agg.timestamps import epoch_minute, format_bucket_time, utc_now

_log = logging.getLogger("metrics_agg")

STEPS = ("stored-read", "source-read", "minute-writes", "derivation-read", "coarse-writes")
Pause = Callable[[str], None]


def no_pause(_step: str) -> None:
    """The default `Pause`: the race tests pass one that stops between steps."""
    return None


@dataclass(frozen=True, slots=True)
class MinutePlan:
    """What a unit recounts after its self-check: the minutes (as key-condition spans),
    the hours they lie in, and the unit narrowed to them."""

    inv: Invalidation
    spans: tuple[HourRange, ...]
    ranges: tuple[HourRange, ...]
    minute_unit: WorkUnit


def touched_hours(unit: WorkUnit) -> list[datetime]:
    return sorted({k.start.replace(minute=0) for k in unit.touched if k.minutes == 1})


def plan_minutes(
    unit: WorkUnit,
    stored: Mapping[str, StoredBucket],
    *,
    errors: bool,
    new_hours: frozenset[datetime] = frozenset(),
) -> MinutePlan:
    """Self-check the touched hours on ``stored`` (logged fallbacks) and narrow the unit;
    ``new_hours``: hours seen to hold nothing outside their touched minutes."""
    inv = invalidate(unit, stored, errors=errors, new_hours=new_hours)
    for hour, reason in sorted(inv.reasons.items()):
        _log.warning(
            "      ⚠ fallback: hour %s recounted directly: %s", format_bucket_time(hour), reason
        )
    minutes = inv.minutes
    ranges = hour_ranges(inv.hours)
    minute_unit = WorkUnit(
        key=unit.key,
        ranges=ranges,
        changes=unit.changes,
        touched=frozenset(
            k for k in unit.touched if k.minutes == 1 and epoch_minute(k.start) in minutes
        ),
    )
    return MinutePlan(inv, minute_spans(minutes), ranges, minute_unit)


def count_snapshot(
    plan: MinutePlan, snapshot: Snapshot, stored: Mapping[str, StoredBucket], config: Config
) -> tuple[UnitCounts, dict[str, StoredBucket]] | None:
    """The 1-minute counts and the stored rows they replace; None: the cross-check failed."""
    counts = count_minutes(snapshot, backend=config.counter_backend, errors=config.errors)
    _log.info(
        "[2/3] Counting: %s rows read, %s records in the minutes (%d merged, %d removed "
        "from the batch); Cross-check: %s in 1-min buckets vs %s records %s",
        fmt_count(snapshot.records_read),
        fmt_count(counts.processed),
        snapshot.merged_from_batch,
        snapshot.removed_by_batch,
        fmt_count(counts.one_minute_total),
        fmt_count(counts.processed),
        "✓" if counts.one_minute_total == counts.processed else "✗",
    )
    if counts.one_minute_total != counts.processed:
        return None
    minutes = plan.inv.minutes
    minute_stored = {
        ck: sb
        for ck, sb in stored.items()
        if sb.key.minutes == 1 and epoch_minute(sb.key.start) in minutes
    }
    return counts, minute_stored


def coarse_counts(
    plan: MinutePlan,
    counts: UnitCounts,
    minute_stored: Mapping[str, StoredBucket],
    first: WriteOutcome,
    rows: Mapping[str, StoredBucket],
    read_time: datetime,
    *,
    errors: bool,
) -> tuple[UnitCounts, dict[str, StoredBucket]]:
    """The derived 5/15/60-minute values (as counts to write) and the rows they replace,
    from ``rows`` (read after the 1-minute writes ``first`` were acknowledged)."""
    planned = plan_writes(counts, minute_stored)
    own = [(w.key, w.value) for w in planned if w.key.composite_key not in first.superseded_keys]
    rows = overlay_own_writes(rows, own, counts.snapshot_time)
    always = {p for w in planned for p in coarse_parents(w.key)}
    desired, replaced = derive_coarse(
        plan.minute_unit,
        rows,
        hours=plan.inv.hours,
        always=always,
        recount_hours=plan.inv.recount_hours,
        read_time=read_time,
        errors=errors,
    )
    coarse = UnitCounts(
        unit=WorkUnit(key=plan.minute_unit.key, ranges=plan.ranges, touched=frozenset(always)),
        snapshot_time=read_time,
        desired=desired,
        processed=0,
        missing=0,
        invalid=0,
        outside_window=0,
        one_minute_total=0,
        errors=errors,
    )
    return coarse, replaced


def finish(
    unit: WorkUnit,
    plan: MinutePlan,
    snapshot: Snapshot,
    counts: UnitCounts,
    first: WriteOutcome,
    second: WriteOutcome,
    *,
    now: datetime,
    seconds: float,
    requests: int = 0,
) -> UnitOutcome:
    """The unit's outcome once its coarser writes are acknowledged (and its log line)."""
    # After every write: only a reconcile starting later (and after the lag) can repair it.
    recheck = outside_reconcile(plan.inv.hours, now=now)
    _log.info(
        "[3/3] Wrote %d 1-minute and %d derived bucket(s) (%d superseded by a newer "
        "snapshot; %.2f s)",
        first.created + first.updated,
        second.created + second.updated,
        first.superseded + second.superseded,
        seconds,
    )
    return UnitOutcome(
        unit.key,
        ok=True,
        records_counted=counts.processed,
        invalid=counts.invalid,
        missing=counts.missing,
        buckets_written=first.created + first.updated + second.created + second.updated,
        superseded=first.superseded + second.superseded,
        offsets=snapshot.offsets,
        records_read=snapshot.records_read,
        fallback_hours=len(plan.inv.recount_hours),
        derived=second.created + second.updated,
        recheck_hours=recheck,
        requests=requests,
        hours=len(plan.inv.hours),
        minutes_recounted=len(plan.inv.minutes),
        seconds=round(seconds, 3),
    )


def run_stream_unit(
    client: GraphQLApi,
    unit: WorkUnit,
    *,
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime] = utc_now,
    pause: Pause = no_pause,
) -> UnitOutcome:
    """Recount the touched minutes of one stream unit and derive its coarser buckets.

    Raises:
        TransportError: any read or write failed (the caller reports the unit).
    """
    key = unit.key
    t0 = time.monotonic()
    hours = touched_hours(unit)
    if not hours:
        _log.info(
            "      nothing to recount: no batch timestamp within the limits%s",
            f" ({unit.unchanged} MODIFY changing nothing counted)" if unit.unchanged else "",
        )
        return UnitOutcome(key, ok=True)
    pause("stored-read")
    stored = read_stored(client, unit, deadline=deadline, ranges=hour_ranges(hours))
    # errorCount is derived like the count where the model has error rules (issue 13).
    with_errors = bool(config.error_rules()[key.model])
    plan = plan_minutes(unit, stored, errors=with_errors)
    margin = config.zone_margin_minutes
    _log.info(
        "[1/3] Querying %s: %d minute(s) in %d range(s)%s; %d hour(s) derived, %d recounted",
        ", ".join(SOURCE_MODELS[key.model].list_queries),
        len(plan.inv.minutes),
        len(plan.spans),
        f" (widened by a {margin}-min zone margin)" if margin else "",
        len(plan.inv.derive_hours),
        len(plan.inv.recount_hours),
    )
    pause("source-read")
    snapshot = read_unit(
        client,
        plan.minute_unit,
        config=config,
        deadline=deadline,
        clock=clock,
        stored=stored,
        spans=plan.spans,
        sort_key_margin_minutes=0,
    )
    counted = count_snapshot(plan, snapshot, stored, config)
    if counted is None:
        return UnitOutcome(key, ok=False, error="cross-check failed", sequence=unit.lowest_sequence)
    counts, minute_stored = counted
    pause("minute-writes")
    first = write_changes(client, counts, config=config, deadline=deadline, stored=minute_stored)
    # Every 1-minute write is acknowledged (or superseded by a newer snapshot) here.
    pause("derivation-read")
    read_time = clock()
    rows = read_stored(client, unit, deadline=deadline, ranges=plan.ranges)
    coarse, replaced = coarse_counts(
        plan, counts, minute_stored, first, rows, read_time, errors=with_errors
    )
    pause("coarse-writes")
    second = write_changes(client, coarse, config=config, deadline=deadline, stored=replaced)
    return finish(
        unit, plan, snapshot, counts, first, second, now=clock(), seconds=time.monotonic() - t0
    )
