"""CloudWatch embedded metric format: one JSON line per invocation (docs/design.md §4.7).

In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) or with ``METRICS_AGG_EMF=1``
(``Config.emf_stdout``) the line goes to stdout, where CloudWatch Logs extracts the
metrics; elsewhere (CLI, local stream mapping, tests) it is logged at DEBUG so it does not
clutter a terminal. The line carries figures,
the event kind and the stack (or function) name only: no account ids, keys, endpoints or
payloads.
"""

from __future__ import annotations

__all__ = [
    "DIMENSIONS",
    "NAMESPACE",
    "InvocationMetrics",
    "emit",
    "metric_names",
    "render",
]

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import TextIO

NAMESPACE = "MetricsAgg"
# The `Stack` dimension (`Config.emf_stack`) keeps a staging and a production stack in one
# account apart. Per stack and event kind, and per stack alone (what an alarm on the whole
# function needs).
DIMENSIONS = (("Stack", "EventKind"), ("Stack",))
_log = logging.getLogger("metrics_agg")


@dataclass(frozen=True, slots=True)
class InvocationMetrics:
    """The figures of one invocation."""

    event_kind: str  # "stream" | "scheduled" | "recount" | "sqs"
    records_counted: int
    buckets_written: int
    invalid_timestamps: int
    duration_ms: float
    failed_units: int
    http_requests: int
    # Records whose timestamp has a zone offset beyond the read margin (`zones`): a
    # recount can miss them; set METRICS_AGG_ZONE_MARGIN_MINUTES.
    offset_timestamps_beyond_margin: int = 0
    # docs/design.md §4.8: source rows the list queries returned (cost follows the change).
    source_rows_read: int = 0
    # Hours a stream invocation recounted in full because their stored rows disagreed.
    derivation_fallbacks: int = 0
    # Buckets the scheduled reconcile found wrong and corrected (0 in a healthy system).
    drift_repaired: int = 0
    # Stream invocations: now minus the oldest ApproximateCreationDateTime of the batch,
    # taken once its buckets were written (docs/design.md §7's freshness, as a figure). Left out of
    # the line when None (other event kinds), so it never averages in zeros.
    freshness_seconds: float | None = None
    # Stream invocations: hours outside the reconcile window handed over for a delayed
    # direct recount (`recheck`), and those that could not be (no queue configured, or the
    # send failed): the latter stay unchecked until someone recounts them.
    recheck_hours_queued: int = 0
    recheck_hours_not_queued: int = 0
    # (model, account, hour) records written to the activity table (`activity`), and those
    # whose write failed: their units were reported failed, so the stream retries them.
    activity_records_written: int = 0
    activity_records_not_written: int = 0


_METRICS = (
    ("RecordsCounted", "records_counted", "Count"),
    ("BucketsWritten", "buckets_written", "Count"),
    ("InvalidTimestamps", "invalid_timestamps", "Count"),
    ("DurationMs", "duration_ms", "Milliseconds"),
    ("FailedUnits", "failed_units", "Count"),
    ("HttpRequests", "http_requests", "Count"),
    ("OffsetTimestampsBeyondMargin", "offset_timestamps_beyond_margin", "Count"),
    ("SourceRowsRead", "source_rows_read", "Count"),
    ("DerivationFallbacks", "derivation_fallbacks", "Count"),
    ("DriftRepaired", "drift_repaired", "Count"),
    ("FreshnessSeconds", "freshness_seconds", "Seconds"),
    ("RecheckHoursQueued", "recheck_hours_queued", "Count"),
    ("RecheckHoursNotQueued", "recheck_hours_not_queued", "Count"),
    ("ActivityRecordsWritten", "activity_records_written", "Count"),
    ("ActivityRecordsNotWritten", "activity_records_not_written", "Count"),
)


def metric_names() -> tuple[str, ...]:
    """Every metric name this module can emit (the dashboard's test reads it)."""
    return tuple(name for name, _, _ in _METRICS)


def render(
    metrics: InvocationMetrics, *, stack: str = "local", timestamp_ms: int | None = None
) -> str:
    """The EMF JSON line (no trailing newline); metrics whose value is None are left out."""
    present = [m for m in _METRICS if getattr(metrics, m[1]) is not None]
    doc: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(d) for d in DIMENSIONS],
                    "Metrics": [{"Name": name, "Unit": unit} for name, _, unit in present],
                }
            ],
        },
        "Stack": stack,
        "EventKind": metrics.event_kind,
    }
    for name, attr, _ in present:
        value = getattr(metrics, attr)
        doc[name] = round(value, 3) if isinstance(value, float) else value
    return json.dumps(doc, separators=(",", ":"))


def emit(
    metrics: InvocationMetrics,
    *,
    to_stdout: bool = False,
    stack: str = "local",
    stream: TextIO | None = None,
) -> None:
    """Print the line to stdout (``Config.emf_stdout``: in Lambda, or when asked) or to
    ``stream``; else log it at DEBUG."""
    line = render(metrics, stack=stack)
    if stream is not None or to_stdout:
        out = stream or sys.stdout
        out.write(line + "\n")
        out.flush()
    else:
        _log.debug("%s", line)
