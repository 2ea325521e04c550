"""CloudWatch embedded metric format: one JSON line per invocation (DESIGN §4.7).

In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) or with ``METRICS_AGG_EMF=1`` the line goes to
stdout, where CloudWatch Logs extracts the metrics; elsewhere (CLI, local stream mapping,
tests) it is logged at DEBUG so it does not clutter a terminal. The line carries figures,
the event kind and the stack (or function) name only: no account ids, keys, endpoints or
payloads.
"""

from __future__ import annotations

__all__ = [
    "DIMENSIONS",
    "NAMESPACE",
    "STACK_ENV",
    "InvocationMetrics",
    "emit",
    "render",
    "stack_name",
]

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

NAMESPACE = "MetricsAgg"
# The `Stack` dimension: the template sets METRICS_AGG_STACK to the stack name, so a staging
# and a production stack in one account keep apart; the function name otherwise.
STACK_ENV = "METRICS_AGG_STACK"
# Per stack and event kind, and per stack alone (what an alarm on the whole function needs).
DIMENSIONS = (("Stack", "EventKind"), ("Stack",))
_log = logging.getLogger("metrics_agg")


@dataclass(frozen=True, slots=True)
class InvocationMetrics:
    """The figures of one invocation."""

    event_kind: str  # "stream" | "scheduled" | "recount"
    records_counted: int
    buckets_written: int
    invalid_timestamps: int
    duration_ms: float
    failed_units: int
    http_requests: int
    # Records whose timestamp has a zone offset beyond the read margin (`zones`): a
    # recount can miss them; set METRICS_AGG_ZONE_MARGIN_MINUTES.
    offset_timestamps_beyond_margin: int = 0


_METRICS = (
    ("RecordsCounted", "records_counted", "Count"),
    ("BucketsWritten", "buckets_written", "Count"),
    ("InvalidTimestamps", "invalid_timestamps", "Count"),
    ("DurationMs", "duration_ms", "Milliseconds"),
    ("FailedUnits", "failed_units", "Count"),
    ("HttpRequests", "http_requests", "Count"),
    ("OffsetTimestampsBeyondMargin", "offset_timestamps_beyond_margin", "Count"),
)


def stack_name(environ: Mapping[str, str] | None = None) -> str:
    """The `Stack` dimension's value: METRICS_AGG_STACK, the function name, or ``local``."""
    env = os.environ if environ is None else environ
    return env.get(STACK_ENV) or env.get("AWS_LAMBDA_FUNCTION_NAME") or "local"


def render(
    metrics: InvocationMetrics, *, stack: str = "local", timestamp_ms: int | None = None
) -> str:
    """The EMF JSON line (no trailing newline)."""
    doc: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(d) for d in DIMENSIONS],
                    "Metrics": [{"Name": name, "Unit": unit} for name, _, unit in _METRICS],
                }
            ],
        },
        "Stack": stack,
        "EventKind": metrics.event_kind,
    }
    for name, attr, _ in _METRICS:
        value = getattr(metrics, attr)
        doc[name] = round(value, 3) if isinstance(value, float) else value
    return json.dumps(doc, separators=(",", ":"))


def emit(
    metrics: InvocationMetrics,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Print the line to stdout in Lambda (or when asked), else log it at DEBUG."""
    env = os.environ if environ is None else environ
    line = render(metrics, stack=stack_name(env))
    in_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
    if stream is not None or in_lambda or env.get("METRICS_AGG_EMF") == "1":
        out = stream or sys.stdout
        out.write(line + "\n")
        out.flush()
    else:
        _log.debug("%s", line)
