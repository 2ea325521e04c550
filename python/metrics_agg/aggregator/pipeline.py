"""The one orchestrator (docs/design.md §4): event -> plan -> read -> count -> write -> report.

The Lambda handler, the CLI and the local stream mapping all call `handle_event`:
- a DynamoDB stream batch (``{"Records": [...]}``) recounts the affected hours of every
  (model, account) of the batch and returns ``{"batchItemFailures": [...]}``;
- the scheduled finalize event (EventBridge ``"Scheduled Event"``) recounts the current and
  previous hour of every active (model, account), which sets ``complete`` on buckets that
  ended with no later record and repairs counts a lagging index hid from a stream
  invocation. Its pairs are the ones the units recorded in the activity table for those
  hours (`activity`) plus every model of ``METRICS_AGG_ACCOUNT_IDS``; ``"accountIds"`` in
  the event (or its ``detail``) replace both. The daily sweep (``"sweep": true``) finds
  them through the API instead (`graphql.discovery`: ``listAccounts``, then one
  key-condition query per account); accounts it could not finish within its share of the
  deadline are reported as failed units, not dropped;
- a recount event ``{"recount": {"accountId", "model", "start", "end"}}`` backfills
  ``[start, end)`` aligned outward to hours;
- an SQS batch of such recount events (the backfill queue's mapping, `queue_events`) runs
  each as a unit and returns ``{"batchItemFailures": [...]}`` with the message ids of the
  units that failed (SQS retries them, then redrives them to the dead-letter queue); a
  unit that belongs to a `metrics-agg backfill` run reports its end to the progress queue.

Every invocation that counts records (stream, recount, SQS) then records its units'
(model, account, hour) once (`activity`); a unit whose record could not be written is
reported failed, so it is retried with it.

A unit is one (model, account). A failed read or write of a unit (any `TransportError`)
means nothing of it is trusted: its lowest sequence number is reported (docs/design.md §4.6).
A unit is not started with less than `MIN_UNIT_SECONDS` left; it is reported instead.
Timestamps whose zone offset exceeds `Config.zone_margin_minutes` (seen in the batch's
images or in the rows read) get one warning per model per invocation and an EMF figure
(`zones`, docs/design.md §4.3): a recount can miss such records, so they are never silent.
The human log (docs/design.md §4.7) goes to the ``metrics_agg`` logger at INFO; EMF via `emf`.
"""

from __future__ import annotations

__all__ = [
    "MIN_UNIT_SECONDS",
    "BatchItemFailure",
    "InvocationResponse",
    "handle_event",
    "recount",
    "run_unit",
    "verify",
]

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict

from metrics_agg.aggregator import emf
from metrics_agg.aggregator._units import CountingApi, run_side_by_side
from metrics_agg.aggregator.activity import ActivityLog, activity_for, unit_activity
from metrics_agg.aggregator.count import count_unit, cross_check
from metrics_agg.aggregator.event_kinds import event_kind, recount_unit, scheduled_units
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.incremental import run_stream_unit
from metrics_agg.aggregator.plan import plan_recount, plan_units
from metrics_agg.aggregator.queue_events import QueuedRecount, parse_queue_event
from metrics_agg.aggregator.read import read_stored, read_unit
from metrics_agg.aggregator.recheck import (
    RECHECK_REASON,
    RecheckHour,
    RecheckSink,
    hand_over,
    sqs_sink,
)
from metrics_agg.aggregator.report import (
    fmt_count,
    log_counts,
    log_report,
    warn_offsets,
    warn_skipped_hours,
    window_text,
)
from metrics_agg.aggregator.shared import run_shared_units
from metrics_agg.aggregator.write import diff_buckets, plan_writes, write_changes
from metrics_agg.aggregator.zones import merge_offsets
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import TransportError
from metrics_agg.graphql.transport import GraphQLApi, GraphQLClient
from metrics_agg.models import (
    SOURCE_MODELS,
    OffsetTimestamps,
    UnitKey,
    UnitOutcome,
    VerifyReport,
    WorkUnit,
)
from metrics_agg.timestamps import utc_now

_log = logging.getLogger("metrics_agg")
MIN_UNIT_SECONDS = 2.0  # a unit needs a few requests; starting one later would overrun


class BatchItemFailure(TypedDict):
    itemIdentifier: str  # a stream record's SequenceNumber, or an SQS messageId


class _BatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


class InvocationResponse(_BatchResponse, total=False):
    """What `handle_event` returns. Lambda reads only ``batchItemFailures`` of a stream or
    SQS response (ReportBatchItemFailures); the summary is for scheduled and recount
    events, whose caller reads it."""

    status: str  # "SUCCESS" | "PARTIAL"
    units: int
    failedUnits: list[str]
    recordsCounted: int
    bucketsWritten: int
    driftRepaired: int  # buckets the scheduled reconcile corrected (docs/design.md §4.8)


def run_unit(
    client: GraphQLApi,
    unit: WorkUnit,
    *,
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime] = utc_now,
    dry_run: bool = False,
    incremental: bool = False,
    reconcile: bool = False,
) -> UnitOutcome:
    """Read, count and write one unit; I/O failures become a failed outcome, not a raise.

    ``incremental`` (stream units): recount the touched minutes and derive the coarser
    buckets (`incremental`, docs/design.md §4.8); otherwise every size of every hour directly.
    ``reconcile`` (the scheduled event): every bucket whose stored count or metadata the
    direct recount corrects is reported as drift (``drift_repaired``, a ⚠ line).
    """
    key = unit.key
    if incremental:
        _log.info("%s · %s: incremental (touched minutes)", key.model, key.account_id)
    else:
        _log.info(
            "%s · %s: %d h in %d range(s) [%s]",
            key.model,
            key.account_id,
            sum(r.hours for r in unit.ranges),
            len(unit.ranges),
            window_text(unit),
        )
    warn_skipped_hours(unit)
    t0 = time.monotonic()
    offsets: OffsetTimestamps | None = None
    try:
        if incremental:
            return run_stream_unit(client, unit, config=config, deadline=deadline, clock=clock)
        margin = config.zone_margin_minutes
        _log.info(
            "[1/3] Querying %s%s",
            ", ".join(SOURCE_MODELS[key.model].list_queries),
            f" (ranges widened by a {margin}-min zone margin)" if margin else "",
        )
        # The stored buckets are read first: their hourly counts size the source reads
        # (docs/design.md §7). Reading them before the snapshot time is taken is safe
        # (docs/design.md §4.5): every write is conditional on the stored updatedAt being
        # no newer than the snapshot, the touched buckets are written whatever was stored,
        # and a stale view only picks create vs update (a wrong pick is a conflict, resolved
        # by retrying the other way) or skips an untouched bucket, which any later change
        # to it makes some newer snapshot write anyway.
        stored = read_stored(client, unit, deadline=deadline)
        snapshot = read_unit(
            client, unit, config=config, deadline=deadline, clock=clock, stored=stored
        )
        offsets = snapshot.offsets
        _log.info(
            "      %s rows read; batch images: %d merged, %d removed (%.2f s)",
            fmt_count(snapshot.records_read),
            snapshot.merged_from_batch,
            snapshot.removed_by_batch,
            time.monotonic() - t0,
        )
        _log.info(
            "[2/3] Counting %s records", fmt_count(sum(len(r.records) for r in snapshot.ranges))
        )
        counts = count_unit(snapshot, backend=config.counter_backend, errors=config.errors)
        checked = cross_check(counts)
        log_counts(counts, checked)
        if not checked:
            return UnitOutcome(
                key,
                ok=False,
                error="cross-check failed",
                sequence=unit.lowest_sequence,
                offsets=offsets,
            )
        base = UnitOutcome(
            key,
            ok=True,
            records_counted=counts.processed,
            invalid=counts.invalid,
            missing=counts.missing,
            offsets=offsets,
            records_read=snapshot.records_read,
        )
        if dry_run:
            writes = plan_writes(counts, stored)
            _log.info("[3/3] Dry run: %s bucket(s) would be written", fmt_count(len(writes)))
            return replace(base, buckets_planned=len(writes))
        drift = diff_buckets(counts, stored) if reconcile else []
        out = write_changes(client, counts, config=config, deadline=deadline, stored=stored)
        if drift:
            _log.warning(
                "      ⚠ DriftRepaired: %d bucket(s) corrected, e.g. %s",
                len(drift),
                "; ".join(
                    f"{d.key.composite_key} {d.stored.count if d.stored else 0}->{d.truth.count}"
                    for d in drift[:5]
                ),
            )
        _log.info(
            "[3/3] Wrote %s bucket(s) of %s compared: %d created, %d updated, "
            "%d superseded by a newer snapshot (%d round(s), %.2f s)",
            fmt_count(out.created + out.updated),
            fmt_count(out.compared),
            out.created,
            out.updated,
            out.superseded,
            out.rounds,
            time.monotonic() - t0,
        )
        return replace(
            base,
            buckets_written=out.created + out.updated,
            superseded=out.superseded,
            drift_repaired=len(drift),
        )
    except TransportError as exc:
        _log.error(
            "      ✗ %s · %s failed: %s: %s", key.model, key.account_id, type(exc).__name__, exc
        )
        return UnitOutcome(
            key,
            ok=False,
            error=f"{type(exc).__name__}: {exc}",
            sequence=unit.lowest_sequence,
            offsets=offsets,
        )


def _run_units(
    client: GraphQLApi,
    units: Sequence[WorkUnit],
    *,
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime],
    kind: str = "recount",
    reconcile: bool = False,
) -> list[UnitOutcome]:
    if kind == "stream" and config.invocation_path == "shared":
        # docs/incremental.md "Shared requests": all units of the batch share each request.
        if units and deadline.remaining() < MIN_UNIT_SECONDS:
            _log.warning("%d unit(s) not started: deadline too close", len(units))
            return [
                UnitOutcome(
                    u.key, ok=False, error="not started: deadline", sequence=u.lowest_sequence
                )
                for u in units
            ]
        return run_shared_units(client, units, config=config, deadline=deadline, clock=clock)

    def one(i: int, unit: WorkUnit) -> UnitOutcome:
        if deadline.remaining() < MIN_UNIT_SECONDS:
            _log.warning(
                "[%d/%d] %s · %s not started: deadline too close",
                i,
                len(units),
                unit.key.model,
                unit.key.account_id,
            )
            return UnitOutcome(
                unit.key,
                ok=False,
                error="not started: deadline",
                sequence=unit.lowest_sequence,
            )
        _log.info("── unit %d/%d", i, len(units))
        t0 = time.monotonic()
        counted = CountingApi(client)
        outcome = run_unit(
            counted,
            unit,
            config=config,
            deadline=deadline,
            clock=clock,
            incremental=kind == "stream",
            reconcile=reconcile,
        )
        # The structured log's per-unit figures (`report.log_report`): a stream unit sets its
        # own hours and minutes (the touched ones), a direct recount every minute of its hours.
        hours = outcome.hours if kind == "stream" else sum(r.hours for r in unit.ranges)
        minutes = outcome.minutes_recounted or (0 if kind == "stream" else hours * 60)
        return replace(
            outcome,
            requests=counted.sent,
            hours=hours if outcome.ok else 0,
            minutes_recounted=minutes if outcome.ok else 0,
            seconds=round(time.monotonic() - t0, 3),
        )

    return run_side_by_side(units, one, config.unit_parallelism)


def _run_queued(
    client: GraphQLApi,
    queued: Sequence[QueuedRecount],
    *,
    config: Config,
    deadline: Deadline,
    clock: Callable[[], datetime],
) -> tuple[list[UnitOutcome], list[str]]:
    """Each SQS message's unit in turn: (outcomes, message ids that failed).

    Units of a backfill run report their end to the progress queue (`backfill.progress`)
    whether they succeeded or not; the CLI reads those reports for its progress bar.
    """
    from metrics_agg.backfill.progress import UnitReport, send_report

    outcomes: list[UnitOutcome] = []
    failed: list[str] = []
    reports: list[UnitReport] = []
    for q in queued:
        if q.unit is None:
            outcomes.append(UnitOutcome(UnitKey("?", "?"), ok=False, error=q.error))
            failed.append(q.message_id)
            continue
        work = plan_recount(q.unit.model, q.unit.account_id, q.unit.start, q.unit.end)
        t0 = time.monotonic()
        # A recheck (`recheck`) reports what it corrects as drift, as the reconcile does.
        (outcome,) = _run_units(
            client,
            [work],
            config=config,
            deadline=deadline,
            clock=clock,
            reconcile=q.reason == RECHECK_REASON,
        )
        outcomes.append(outcome)
        if not outcome.ok:
            failed.append(q.message_id)
        if q.run_id is not None:
            reports.append(
                UnitReport(
                    run=q.run_id,
                    unit=q.unit.unit_id,
                    ok=outcome.ok,
                    attempt=q.receive_count,
                    records=outcome.records_counted,
                    buckets=outcome.buckets_written,
                    seconds=round(time.monotonic() - t0, 3),
                    error=outcome.error,
                )
            )
    if reports and config.progress_queue_url:
        send_report(config.progress_queue_url, reports)
    return outcomes, failed


def _record_activity(
    activity: ActivityLog,
    units: Sequence[WorkUnit],
    queued: Sequence[QueuedRecount],
    outcomes: list[UnitOutcome],
    failed_messages: list[str],
    now: datetime,
) -> tuple[list[UnitOutcome], list[str], int, int]:
    """Record the units' activity once; if that fails, fail the units it was for.

    Stream units, recount events (the on-failure replay) and backfill units alike: each
    one's (model, account, hour) the reconcile can read (`activity`). A failed write fails
    those units rather than being retried here: their work is idempotent, so the stream (or
    queue) retrying the batch costs a recount, while a unit reported done whose pair is not
    recorded would leave the pair out of the reconcile without a trace.
    Returns (outcomes, failed message ids, records written, records not written).
    """
    work = list(units)
    messages: dict[UnitKey, list[str]] = {}
    for q in queued:
        if q.unit is not None:
            work.append(plan_recount(q.unit.model, q.unit.account_id, q.unit.start, q.unit.end))
            messages.setdefault(UnitKey(q.unit.model, q.unit.account_id), []).append(q.message_id)
    records = unit_activity(work, now)
    try:
        return outcomes, failed_messages, activity.record(records, now), 0
    except TransportError as exc:
        keys = {UnitKey(r.model, r.account_id) for r in records}
        _log.error(
            "⚠ activity not recorded for %d pair(s), reported failed so they are retried: %s",
            len(keys),
            exc,
        )
    sequences = {u.key: u.lowest_sequence for u in units}
    error = "activity not recorded (the reconcile would miss the pair)"
    failed_now = [
        replace(o, ok=False, error=error, sequence=o.sequence or sequences.get(o.key))
        if o.ok and o.key in keys
        else o
        for o in outcomes
    ]
    more = [m for k in keys for m in messages.get(k, ()) if m not in failed_messages]
    return failed_now, [*failed_messages, *sorted(set(more))], 0, len(records)


def _response(
    kind: str, outcomes: Sequence[UnitOutcome], failed_items: Sequence[str]
) -> InvocationResponse:
    """The one place the response is built (docs/design.md §4.6)."""
    items = sorted(set(failed_items), key=int) if kind == "stream" else list(failed_items)
    response: InvocationResponse = {"batchItemFailures": [{"itemIdentifier": i} for i in items]}
    if kind in ("stream", "sqs"):  # Lambda reads only batchItemFailures of these
        return response
    failed = [o for o in outcomes if not o.ok]
    response["status"] = "PARTIAL" if failed else "SUCCESS"
    response["units"] = len(outcomes)
    response["failedUnits"] = [f"{o.key.model}/{o.key.account_id}" for o in failed]
    response["recordsCounted"] = sum(o.records_counted for o in outcomes)
    response["bucketsWritten"] = sum(o.buckets_written for o in outcomes)
    response["driftRepaired"] = sum(o.drift_repaired for o in outcomes)
    return response


def handle_event(
    event: Mapping[str, Any],
    *,
    config: Config,
    deadline: Deadline | None = None,
    client: GraphQLApi | None = None,
    now: datetime | None = None,
    recheck: RecheckSink | None = None,
    activity: ActivityLog | None = None,
    metrics_sink: Callable[[emf.InvocationMetrics], None] | None = None,
) -> InvocationResponse:
    """Run one invocation; ``now`` (tests) fixes both the wall clock and the snapshot time.

    ``metrics_sink``: also given the invocation's metrics (the EMF line's values), for the
    local stack's Lambda sandboxes to hand back to their caller.

    ``activity``: where the units record their (model, account, hour) and the scheduled
    pass reads them (`activity`); None: the process's log for ``Config.activity_table``.

    ``recheck``: where a stream invocation hands over the hours outside the reconcile
    window it touched (`recheck`); None: the SQS queue ``Config.recheck_queue_url``, and
    without one they are logged and counted as not rechecked.
    A recount event marked ``"reason": "recheck"`` reports what it corrected as drift.

    Raises:
        ValueError: the event is none of the four kinds, or a recount event is malformed.
    """
    t0 = time.monotonic()
    kind = event_kind(event)
    deadline = deadline or Deadline()
    clock: Callable[[], datetime] = utc_now if now is None else (lambda: now)
    wall = clock()
    own = client is None
    active = GraphQLClient(config) if client is None else client
    before = active.request_count
    invalid_ts = 0
    batch_offsets: tuple[OffsetTimestamps, ...] = ()
    outcomes: list[UnitOutcome] = []
    units: list[WorkUnit] = []
    undiscovered: list[UnitOutcome] = []
    failed_messages: list[str] = []
    oldest_created: datetime | None = None
    activity = activity if activity is not None else activity_for(config)
    records_written = records_not_written = 0
    queued: Sequence[QueuedRecount] = ()
    try:
        if kind == "stream":
            batch = parse_batch(event, zone_margin_minutes=config.zone_margin_minutes)
            invalid_ts = batch.invalid_timestamps
            batch_offsets = batch.offsets
            oldest_created = batch.oldest_created
            # docs/incremental.md: a MODIFY that changes nothing counted invalidates nothing.
            shared = config.invocation_path == "shared"
            units = plan_units(
                batch,
                now=wall,
                max_hours_back=config.max_hours_back,
                unchanged_rules=config.error_rules() if shared else None,
            )
            names: dict[str, int] = {}
            for c in batch.changes:
                names[c.event_name] = names.get(c.event_name, 0) + 1
            _log.info(
                "Stream batch: %d record(s) -> %d change(s) (%s; %d MODIFY changing nothing "
                "counted); skipped: %d unknown table, %d malformed; %d invalid image timestamp(s)",
                batch.total_records,
                len(batch.changes),
                ", ".join(f"{k} {v}" for k, v in sorted(names.items())) or "none",
                sum(u.unchanged for u in units),
                batch.unknown_tables,
                batch.malformed,
                batch.invalid_timestamps,
            )
            _log.info(
                "Affected pairs: %d (%s)",
                len(units),
                ", ".join(f"{u.key.model} · {u.key.account_id}" for u in units) or "none",
            )
        elif kind == "recount":
            units = [recount_unit(event["recount"])]
        elif kind == "sqs":
            queued = parse_queue_event(event)
            _log.info("Backfill queue: %d message(s)", len(queued))
            outcomes, failed_messages = _run_queued(
                active, queued, config=config, deadline=deadline, clock=clock
            )
        else:
            try:
                plan = scheduled_units(
                    event,
                    active,
                    wall,
                    deadline,
                    configured_accounts=config.account_ids,
                    activity=activity,
                )
                units = plan.units
                # Accounts discovery could not finish are reported, not dropped (issue 15).
                undiscovered = [
                    UnitOutcome(UnitKey("*", a), ok=False, error=why) for a, why in plan.unfinished
                ]
            except TransportError as exc:
                _log.error(
                    "⚠ PARTIAL: finding active pairs failed: %s: %s", type(exc).__name__, exc
                )
                outcomes = [UnitOutcome(UnitKey("*", "*"), ok=False, error=str(exc))]
        if not outcomes:
            outcomes = _run_units(
                active,
                units,
                config=config,
                deadline=deadline,
                clock=clock,
                kind=kind,
                reconcile=kind == "scheduled"
                or (kind == "recount" and event.get("reason") == RECHECK_REASON),
            )
            outcomes += undiscovered
        if activity is not None and kind != "scheduled":
            outcomes, failed_messages, records_written, records_not_written = _record_activity(
                activity, units, queued, outcomes, failed_messages, wall
            )
        # One report, after the activity records: a unit they failed is reported failed.
        log_report(outcomes, time.monotonic() - t0, active.request_count - before, kind=kind)
        requests = active.request_count - before
    finally:
        if own:
            active.close()
    offsets = warn_offsets(merge_offsets([*batch_offsets, *(o.offsets for o in outcomes)]), config)
    failed = [o for o in outcomes if not o.ok]
    # Taken after the writes: how old the oldest change of the batch is once its buckets
    # show it (failed units included: their buckets show it only after the retry).
    freshness = None if oldest_created is None else (clock() - oldest_created).total_seconds()
    # A failed unit is retried by Lambda and hands its hours over then.
    if recheck is None and config.recheck_queue_url:
        recheck = sqs_sink(config.recheck_queue_url, config.recheck_delay_seconds)
    rechecks_queued, rechecks_not_queued = hand_over(
        (
            RecheckHour(o.key.model, o.key.account_id, h)
            for o in outcomes
            if o.ok
            for h in o.recheck_hours
        ),
        recheck,
    )
    metrics = emf.InvocationMetrics(
        event_kind=kind,
        records_counted=sum(o.records_counted for o in outcomes),
        buckets_written=sum(o.buckets_written for o in outcomes),
        invalid_timestamps=invalid_ts + sum(o.invalid for o in outcomes),
        duration_ms=(time.monotonic() - t0) * 1000.0,
        failed_units=len(failed),
        http_requests=requests,
        offset_timestamps_beyond_margin=offsets,
        source_rows_read=sum(o.records_read for o in outcomes),
        derivation_fallbacks=sum(o.fallback_hours for o in outcomes),
        drift_repaired=sum(o.drift_repaired for o in outcomes),
        freshness_seconds=None if freshness is None else max(0.0, freshness),
        recheck_hours_queued=rechecks_queued,
        recheck_hours_not_queued=rechecks_not_queued,
        activity_records_written=records_written,
        activity_records_not_written=records_not_written,
    )
    emf.emit(metrics, to_stdout=config.emf_stdout, stack=config.emf_stack)
    if metrics_sink is not None:
        metrics_sink(metrics)
    if kind == "sqs":
        return _response(kind, outcomes, failed_messages)
    return _response(kind, outcomes, [o.sequence for o in failed if o.sequence])


def recount(
    *,
    config: Config,
    account_id: str,
    model: str,
    start: datetime,
    end: datetime,
    dry_run: bool = False,
    client: GraphQLApi | None = None,
    deadline: Deadline | None = None,
) -> UnitOutcome:
    """Recount ``[start, end)`` (aligned outward to hours) of one (model, account).

    ``dry_run`` reads and compares but writes nothing (``buckets_planned`` says how many).

    Raises:
        ValueError: unknown model, naive datetimes or an empty window.
    """
    unit = plan_recount(model, account_id, start, end)
    active = GraphQLClient(config) if client is None else client
    try:
        outcome = run_unit(
            active, unit, config=config, deadline=deadline or Deadline(), dry_run=dry_run
        )
    finally:
        if client is None:
            active.close()
    warn_offsets(merge_offsets([outcome.offsets]), config)
    return outcome


def verify(
    *,
    config: Config,
    account_id: str,
    start: datetime,
    end: datetime,
    models: Sequence[str] | None = None,
    client: GraphQLApi | None = None,
    deadline: Deadline | None = None,
    check_complete: bool = False,
) -> VerifyReport:
    """Recount without writing; every stored bucket that differs from the truth.

    A bucket missing from the store counts as 0. ``complete`` is compared only with
    ``check_complete`` (between two scheduled runs it lags by design).

    Raises:
        ValueError: unknown model, naive datetimes or an empty window.
        ReadError: a read failed (the report would be incomplete).
    """
    units = [plan_recount(m, account_id, start, end) for m in (models or tuple(SOURCE_MODELS))]
    active = GraphQLClient(config) if client is None else client
    mismatches = []
    found: list[OffsetTimestamps | None] = []
    checked = counted = 0
    try:
        for unit in units:
            stored = read_stored(active, unit, deadline=deadline)
            snapshot = read_unit(active, unit, config=config, deadline=deadline, stored=stored)
            found.append(snapshot.offsets)
            counts = count_unit(snapshot, backend=config.counter_backend, errors=config.errors)
            mismatches.extend(diff_buckets(counts, stored, check_complete=check_complete))
            checked += len({k.composite_key for k in counts.desired} | set(stored))
            counted += counts.processed
    finally:
        if client is None:
            active.close()
    # The truth above is a recount from the same index: offsets beyond the margin make it
    # as blind as the stored counts, so "no mismatch" would be a silent wrong answer.
    offsets = merge_offsets(found)
    warn_offsets(offsets, config)
    return VerifyReport(
        tuple(mismatches),
        buckets_checked=checked,
        records_counted=counted,
        offsets=offsets,
        zone_margin_minutes=config.zone_margin_minutes,
    )
