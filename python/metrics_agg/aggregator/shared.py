"""Every stream unit of one invocation in shared requests (docs/incremental.md "Shared requests").

The per-unit path (`incremental.run_stream_unit`) sends about five requests per
(model, account). Here the units of one invocation go through the same steps together,
each step one request for all of them (more only where ``mutations_per_request`` or a
page forces it):

1. ``read``: every unit's stored rows of its touched hours and, speculatively, the source
   records of its touched minutes (`api.read_units`). Each unit then self-checks its
   hours (`incremental.plan_minutes`); only a unit with a failing hour reads again,
   on its own: every minute of those hours (the per-unit `read_unit`);
2. ``minute-writes``: every unit's 1-minute writes (`write.write_many`);
3. ``derivation-read``: every unit's stored rows of its hours, after step 2 was
   acknowledged;
4. ``coarse-writes``: every unit's 5/15/60-minute writes.

Each unit takes its steps in the per-unit path's order and with its rules, so the
exactness argument is the per-unit one; units share requests but no buckets (a unit is
one model's recordTypes of one account). A failure fails only its unit (the alias's, or
every unit with a part in a failed request), which then takes no further step: a unit
whose read failed writes nothing. ``pause`` is called with each step's name before it
starts (the race tests interleave invocations there).
"""

from __future__ import annotations

__all__ = ["SHARED_STEPS", "run_shared_units"]

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metrics_agg.aggregator.incremental import (
    MinutePlan,
    Pause,
    coarse_counts,
    count_snapshot,
    finish,
    no_pause,
    plan_minutes,
    touched_hours,
)
from metrics_agg.aggregator.invalidation import hour_ranges, minute_spans
from metrics_agg.aggregator.read import merge_snapshot, read_unit
from metrics_agg.aggregator.report import warn_skipped_hours
from metrics_agg.aggregator.write import write_many
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import TransportError
from metrics_agg.graphql import api
from metrics_agg.graphql._parallel import run_all
from metrics_agg.graphql.shared_reads import UnitReads
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import (
    SOURCE_MODELS,
    HourRange,
    Snapshot,
    SourceRead,
    StoredBucket,
    UnitCounts,
    UnitOutcome,
    WorkUnit,
    WriteOutcome,
)
from metrics_agg.timestamps import epoch_minute, parse_instant_or_none, utc_now

_log = logging.getLogger("metrics_agg")

SHARED_STEPS = ("read", "minute-writes", "derivation-read", "coarse-writes")


@dataclass
class _Unit:
    """One unit's state between the shared steps."""

    unit: WorkUnit
    errors: bool
    requests: int = 0
    error: str | None = None
    stored: dict[str, StoredBucket] = field(default_factory=dict)
    plan: MinutePlan | None = None
    snapshot: Snapshot | None = None
    counts: UnitCounts | None = None
    minute_stored: dict[str, StoredBucket] = field(default_factory=dict)
    first: WriteOutcome | None = None
    coarse: UnitCounts | None = None
    replaced: dict[str, StoredBucket] = field(default_factory=dict)
    second: WriteOutcome | None = None

    def fail(self, error: TransportError | str) -> None:
        if isinstance(error, str):
            self.error = error
        else:
            self.error = f"{type(error).__name__}: {error}"
            key = self.unit.key
            _log.error("      ✗ %s · %s failed: %s", key.model, key.account_id, self.error)


def _new_hours(
    unit: WorkUnit, hours: Sequence[datetime], probes: Sequence[list[dict[str, Any]] | None]
) -> frozenset[datetime]:
    """Hours whose probes (one per (hour, list query), hour-major) came back whole and hold
    no record placed in one of the hour's untouched minutes (docs/incremental.md)."""
    spec = SOURCE_MODELS[unit.key.model]
    touched = {epoch_minute(k.start) for k in unit.touched if k.minutes == 1}
    per_hour = len(spec.list_queries)
    out = set()
    for h, hour in enumerate(hours):
        first = epoch_minute(hour)
        clean = True
        for qi in range(per_hour):
            rows = probes[h * per_hour + qi]
            if rows is None:
                clean = False
                break
            for row in rows:
                when = parse_instant_or_none(row.get(spec.sort_keys[qi]))
                minute = None if when is None else epoch_minute(when)
                if minute is None or (first <= minute < first + 60 and minute not in touched):
                    clean = False
        if clean:
            out.add(hour)
    return frozenset(out)


def _spans_reads(model: str, spans: Sequence[HourRange]) -> tuple[SourceRead, ...]:
    """One read per (span, list query), in `read._fetch`'s order (range-major)."""
    queries = range(len(SOURCE_MODELS[model].list_queries))
    return tuple(SourceRead(qi, s.start, s.end, ()) for s in spans for qi in queries)


def _read_step(
    client: GraphQLApi,
    live: list[_Unit],
    config: Config,
    deadline: Deadline,
    snapshot_time: datetime,
) -> None:
    """Stored rows and touched-minute records of every unit, self-check, fallback reads."""
    reads = []
    spans_of = []
    for u in live:
        model = u.unit.key.model
        hours = touched_hours(u.unit)
        spans = minute_spans(epoch_minute(k.start) for k in u.unit.touched if k.minutes == 1)
        spans_of.append(spans)
        reads.append(
            UnitReads(
                u.unit.key.account_id,
                SOURCE_MODELS[model].record_types,
                tuple((r.start, r.end) for r in hour_ranges(hours)),
                SOURCE_MODELS[model],
                _spans_reads(model, spans),
                _spans_reads(model, hour_ranges(hours)),  # the probes
            )
        )
    results = api.read_units(client, reads, deadline=deadline, sort_key_margin_minutes=0)
    fallback: list[_Unit] = []
    for u, spans, result in zip(live, spans_of, results, strict=True):
        if isinstance(result, TransportError):
            u.fail(result)
            continue
        u.requests += result.requests
        u.stored = {sb.key.composite_key: sb for sb in result.stored}
        new = _new_hours(u.unit, touched_hours(u.unit), result.probes)
        u.plan = plan_minutes(u.unit, u.stored, errors=u.errors, new_hours=new)
        _log.info(
            "[1/3] Querying %s · %s: %d minute(s) in %d range(s); %d hour(s) derived, %d recounted",
            u.unit.key.model,
            u.unit.key.account_id,
            len(u.plan.inv.minutes),
            len(u.plan.spans),
            len(u.plan.inv.derive_hours),
            len(u.plan.inv.recount_hours),
        )
        if u.plan.inv.recount_hours:
            fallback.append(u)  # a failing hour: read every minute of it, on its own
            continue
        per_span = len(SOURCE_MODELS[u.unit.key.model].list_queries)
        fetched = [(i // per_span, rows) for i, rows in enumerate(result.source)]
        u.snapshot = merge_snapshot(u.plan.minute_unit, spans, fetched, snapshot_time, config)

    def reread(u: _Unit) -> Callable[[threading.Event], None]:
        def run(_stop: threading.Event) -> None:
            assert u.plan is not None
            before = client.request_count
            try:
                u.snapshot = read_unit(
                    client,
                    u.plan.minute_unit,
                    config=config,
                    deadline=deadline,
                    clock=lambda: snapshot_time,
                    stored=u.stored,
                    spans=u.plan.spans,
                    sort_key_margin_minutes=0,
                )
            except TransportError as exc:
                u.fail(exc)
            u.requests += client.request_count - before

        return run

    if fallback:
        run_all([reread(u) for u in fallback], max(1, config.unit_parallelism))


def _writes(
    client: GraphQLApi,
    live: list[_Unit],
    step: str,
    pause: Pause,
    config: Config,
    deadline: Deadline,
) -> list[_Unit]:
    """One write step (1-minute or coarser) of every live unit; the units still alive."""
    pause(step)
    minute = step == "minute-writes"
    jobs = [(u.counts, u.minute_stored) if minute else (u.coarse, u.replaced) for u in live]
    before = client.request_count
    results = write_many(
        client, [(c, st) for c, st in jobs if c is not None], config=config, deadline=deadline
    )
    sent = client.request_count - before
    for u, result in zip(live, results, strict=True):
        u.requests += _share(sent, len(live))
        if isinstance(result, TransportError):
            u.fail(result)
        elif minute:
            u.first = result
        else:
            u.second = result
    return [u for u in live if u.error is None]


def _share(sent: int, units: int) -> int:
    """Requests a unit is counted for when ``units`` shared ``sent``: all of them when
    they hold one request's writes, else its share (rounded up)."""
    return max(1, -(-sent // units)) if sent else 0


def run_shared_units(
    client: GraphQLApi,
    units: Sequence[WorkUnit],
    *,
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime] = utc_now,
    pause: Pause = no_pause,
) -> list[UnitOutcome]:
    """Every stream unit's incremental recount, in shared requests (module doc).

    Failures are outcomes (error, lowest sequence number), never raised.
    """
    t0 = time.monotonic()
    rules = config.error_rules()
    state = [_Unit(u, bool(rules[u.key.model])) for u in units]
    for u in units:
        warn_skipped_hours(u)
    idle = [s for s in state if not touched_hours(s.unit)]
    for s in idle:
        _log.info(
            "      %s · %s: nothing to recount: no batch timestamp within the limits%s",
            s.unit.key.model,
            s.unit.key.account_id,
            f" ({s.unit.unchanged} MODIFY changing nothing counted)" if s.unit.unchanged else "",
        )
    live = [s for s in state if s not in idle]
    if live:
        _run(client, live, config, deadline, clock, pause)
    _log.info(
        "Shared requests: %d unit(s), %d failed (%.2f s)",
        len(live),
        sum(s.error is not None for s in live),
        time.monotonic() - t0,
    )
    outcomes = []
    for s in state:
        if s.error is not None:
            outcomes.append(
                UnitOutcome(
                    s.unit.key,
                    ok=False,
                    error=s.error,
                    sequence=s.unit.lowest_sequence,
                    offsets=s.snapshot.offsets if s.snapshot else None,
                    requests=s.requests,
                )
            )
        elif s in idle:
            outcomes.append(UnitOutcome(s.unit.key, ok=True))
        else:
            assert s.plan and s.snapshot and s.counts and s.first and s.second
            outcomes.append(
                finish(
                    s.unit,
                    s.plan,
                    s.snapshot,
                    s.counts,
                    s.first,
                    s.second,
                    now=clock(),
                    seconds=time.monotonic() - t0,
                    requests=s.requests,
                )
            )
    return outcomes


def _run(
    client: GraphQLApi,
    live: list[_Unit],
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime],
    pause: Callable[[str], None],
) -> None:
    pause("read")
    # Taken before the first request: every 1-minute write is conditional on it.
    snapshot_time = clock()
    _read_step(client, live, config, deadline, snapshot_time)
    live = [u for u in live if u.error is None]
    for u in live:
        assert u.plan is not None and u.snapshot is not None
        counted = count_snapshot(u.plan, u.snapshot, u.stored, config)
        if counted is None:
            u.fail("cross-check failed")
        else:
            u.counts, u.minute_stored = counted
    live = [u for u in live if u.error is None]
    if not live:
        return
    live = _writes(client, live, "minute-writes", pause, config, deadline)
    if not live:
        return
    # Every 1-minute write of these units is acknowledged (or superseded) here.
    pause("derivation-read")
    read_time = clock()
    reads = [
        UnitReads(
            u.unit.key.account_id,
            SOURCE_MODELS[u.unit.key.model].record_types,
            tuple((r.start, r.end) for r in u.plan.ranges),
        )
        for u in live
        if u.plan
    ]
    results = api.read_units(client, reads, deadline=deadline)
    for u, result in zip(live, results, strict=True):
        if isinstance(result, TransportError):
            u.fail(result)
            continue
        assert u.plan and u.counts and u.first
        u.requests += result.requests
        rows = {sb.key.composite_key: sb for sb in result.stored}
        u.coarse, u.replaced = coarse_counts(
            u.plan, u.counts, u.minute_stored, u.first, rows, read_time, errors=u.errors
        )
    live = [u for u in live if u.error is None]
    if not live:
        return
    _writes(client, live, "coarse-writes", pause, config, deadline)
