"""The human log of one invocation (docs/design.md §4.7): per-unit lines and the final verdict.

Pure formatting over typed outcomes, logged to the ``metrics_agg`` logger at INFO (failures
and offset warnings at WARNING); the EMF figures are `emf`'s. The verdict line carries the
invocation's figures as ``extra`` fields, which JSON logs (`logs`) turn into keys.
"""

from __future__ import annotations

__all__ = [
    "fmt_count",
    "log_counts",
    "log_report",
    "warn_offsets",
    "warn_skipped_hours",
    "window_text",
]

import logging
from collections.abc import Sequence

from metrics_agg import logs
from metrics_agg.aggregator.zones import offset_warning
from metrics_agg.config import Config
from metrics_agg.models import (
    BUCKET_SIZES,
    SOURCE_MODELS,
    OffsetTimestamps,
    UnitCounts,
    UnitOutcome,
    WorkUnit,
)
from metrics_agg.timestamps import format_bucket_time

_log = logging.getLogger("metrics_agg")


def fmt_count(value: int) -> str:
    """Thousands separated, ``12,345``: the one count format of the logs and the CLI."""
    return f"{value:,}"


def window_text(unit: WorkUnit) -> str:
    parts = [f"{format_bucket_time(r.start)}–{format_bucket_time(r.end)}" for r in unit.ranges]
    return ", ".join(parts)


def warn_skipped_hours(unit: WorkUnit) -> None:
    """Warn once per hour the planner left out (`WorkUnit.skipped_hours`): a record there
    is not counted by this run, on either stream path, so the operator must hear of it."""
    key = unit.key
    for hour in unit.skipped_hours:
        _log.warning(
            "      %s · %s: hour %s is beyond the recount limits: not recounted",
            key.model,
            key.account_id,
            format_bucket_time(hour),
        )


def log_counts(counts: UnitCounts, ok: bool) -> None:
    """Log the counting lines; ``ok`` is the cross-check verdict (`count.cross_check`)."""
    _log.info(
        "      processed %s · missing %s · invalid %s · outside window %s",
        fmt_count(counts.processed),
        fmt_count(counts.missing),
        fmt_count(counts.invalid),
        fmt_count(counts.outside_window),
    )
    if counts.invalid_examples:
        _log.info("      invalid timestamps, e.g. %s", ", ".join(counts.invalid_examples))
    _log.info(
        "      Cross-check: %s in 1-min buckets vs %s records %s",
        fmt_count(counts.one_minute_total),
        fmt_count(counts.processed),
        "✓" if ok else "✗",
    )
    # Per recordType and size: non-empty buckets / buckets, and their total (one pass).
    totals: dict[tuple[str, int], list[int]] = {}
    for k, v in counts.desired.items():
        acc = totals.setdefault((k.record_type, k.minutes), [0, 0, 0])
        acc[0] += v.count > 0
        acc[1] += 1
        acc[2] += v.count
    for record_type in SOURCE_MODELS[counts.unit.key.model].record_types:
        per_size = []
        for size in BUCKET_SIZES:
            nonempty, n, total = totals.get((record_type, size), (0, 0, 0))
            per_size.append(f"{size}-min {nonempty}/{n} Σ{fmt_count(total)}")
        _log.info("      %-24s %s", record_type, " · ".join(per_size))


_NAMED = 10  # failed units named in the summary line


def _unit_fields(o: UnitOutcome, kind: str) -> dict[str, object]:
    """One unit's fields of the JSON log (docs/operations.md, "Structured logs")."""
    fields: dict[str, object] = {
        "summary": "unit",
        "eventKind": kind,
        "model": o.key.model,
        "account": o.key.account_id,
        "unit": f"{o.key.model}/{o.key.account_id}",
        "outcome": "ok" if o.ok else "failed",
        "hours": o.hours,
        "minutesRecounted": o.minutes_recounted,
        "recordsCounted": o.records_counted,
        "bucketsWritten": o.buckets_written,
        "driftRepaired": o.drift_repaired,
        "durationMs": round(o.seconds * 1000.0, 1),
    }
    if not o.ok:
        fields["error"] = o.error
        fields["sequence"] = o.sequence
    return fields


def log_report(
    outcomes: Sequence[UnitOutcome], seconds: float, requests: int, *, kind: str = "recount"
) -> None:
    """The verdict line; with JSON logs (`logs.structured`) one line per unit before it.

    The human log has already said each unit's figures in its own lines; a JSON line per
    unit carries them as fields, so Logs Insights can aggregate them.
    """
    failed = [o for o in outcomes if not o.ok]
    counted = sum(o.records_counted for o in outcomes)
    written = sum(o.buckets_written for o in outcomes)
    if logs.structured():
        for o in outcomes:
            fields = _unit_fields(o, kind)
            _log.log(
                logging.INFO if o.ok else logging.WARNING,
                "unit %s %s",
                fields["unit"],
                fields["outcome"],
                extra=fields,
            )
    summary: dict[str, object] = {
        "summary": "invocation",
        "eventKind": kind,
        "outcome": "PARTIAL" if failed else "SUCCESS",
        "units": len(outcomes),
        "failedCount": len(failed),
        "failedUnits": [
            {"unit": f"{o.key.model}/{o.key.account_id}", "sequence": o.sequence} for o in failed
        ],
        "recordsCounted": counted,
        "bucketsWritten": written,
        "driftRepaired": sum(o.drift_repaired for o in outcomes),
        "httpRequests": requests,
        "durationMs": round(seconds * 1000.0, 1),
    }
    if not failed:
        _log.info(
            "✓ SUCCESS: %d unit(s), %s records counted, %s buckets written, "
            "%d HTTP requests, %.2f s",
            len(outcomes),
            fmt_count(counted),
            fmt_count(written),
            requests,
            seconds,
            extra=summary,
        )
        return
    names = "; ".join(f"{o.key.model} · {o.key.account_id}: {o.error}" for o in failed[:_NAMED])
    if len(failed) > _NAMED:  # e.g. many accounts discovery did not finish: the count says it
        names += f"; and {len(failed) - _NAMED} more"
    _log.warning(
        "⚠ PARTIAL: %d of %d unit(s) failed (%s); %s records counted, %s buckets "
        "written, %d HTTP requests, %.2f s",
        len(failed),
        len(outcomes),
        names,
        fmt_count(counted),
        fmt_count(written),
        requests,
        seconds,
        extra=summary,
    )


def warn_offsets(found: Sequence[OffsetTimestamps], config: Config) -> int:
    """docs/design.md §4.3: one warning per model of this invocation; the records involved."""
    for item in found:
        _log.warning("⚠ %s", offset_warning(item, config.zone_margin_minutes))
    return sum(item.count for item in found)
