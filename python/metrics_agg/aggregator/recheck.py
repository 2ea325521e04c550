"""Hours the scheduled reconcile will not reread, handed over as delayed direct recounts.

A stream invocation's reads are eventually consistent (docs/incremental.md): a record
written within the index lag of another batch's read can be missing from that batch's
counts. The scheduled reconcile repairs that for the current and previous hour; Lambdas
keep no state, so an older hour a stream invocation touched is rechecked only if the
invocation hands it over. It does, through a `RecheckSink`: one recount event per
contiguous run of hours of a (model, account), marked ``"reason": "recheck"`` so the
recount reports what it corrected as ``DriftRepaired``, sent with a delay that outlasts
the lag (docs/incremental.md "Rechecks").

Every hour of such an invocation is handed over, derived or fallen back: a fallback
hour's direct recount read the source index as it lagged, and a derived hour's touched
minutes did too, as did its derivation read of the stored 1-minute rows. Either can be
short by a record of another batch; only a later direct recount sees it.
"""

from __future__ import annotations

__all__ = [
    "RECHECK_REASON",
    "RECONCILE_REACH",
    "RecheckHour",
    "RecheckSink",
    "SqsSink",
    "hand_over",
    "outside_reconcile",
    "recheck_events",
    "sqs_sink",
]

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from metrics_agg.aggregator.plan import floor_hour
from metrics_agg.errors import QueueError, TransportError
from metrics_agg.timestamps import format_bucket_time

_log = logging.getLogger("metrics_agg")
RECHECK_REASON = "recheck"
_HOUR = timedelta(hours=1)
# The reconcile runs every 5 minutes (template `Schedule: rate(5 minutes)`) and reads the
# current and previous hour of its own start. A change made now is reread by a reconcile
# only if its hour is still "previous" at the first tick after the index caught up: up to
# 5 minutes away, plus a margin for a late tick and the lag. Hours older than the previous
# hour of now + this reach are handed over (at :50-:59 that includes the previous hour).
RECONCILE_REACH = timedelta(minutes=10)


@dataclass(frozen=True, slots=True, order=True)
class RecheckHour:
    """One hour of one (model, account) to recount directly later."""

    model: str
    account_id: str
    hour: datetime  # aware UTC, on the hour


class RecheckSink(Protocol):
    """Where an invocation hands its recheck hours over: one call per invocation."""

    def send(self, hours: Sequence[RecheckHour]) -> None:
        """Queue a delayed direct recount of every hour (sorted, no duplicates).

        Raises:
            TransportError: the hours could not be queued (the caller logs and counts them;
                the stream batch's own counts stand).
        """


class SqsSink:
    """Recheck events to an SQS queue (the backfill queue) with DelaySeconds."""

    def __init__(self, queue_url: str, delay_seconds: int) -> None:
        self.queue_url = queue_url
        self.delay_seconds = delay_seconds
        self._client: Any = None
        self._lock = threading.Lock()

    def connect(self) -> Any:
        """The sink's client, made on first use (or at init: `lambda_support.prepare`).

        Raises:
            QueueError: botocore could not make the client (no region, no credentials).
        """
        from metrics_agg.backfill.sqs import QueueClient

        with self._lock:  # one client per sink, kept across warm invocations
            if self._client is None:
                from botocore.exceptions import BotoCoreError

                try:
                    self._client = QueueClient.for_url(self.queue_url)
                except BotoCoreError as exc:  # no region or credentials configuration
                    raise QueueError(f"SQS client: {type(exc).__name__}: {exc}") from exc
            return self._client

    def send(self, hours: Sequence[RecheckHour]) -> None:
        client = self.connect()
        bodies = [json.dumps(e, separators=(",", ":")) for e in recheck_events(hours)]
        client.send(self.queue_url, bodies, delay_seconds=self.delay_seconds)


_sinks: dict[tuple[str, int], SqsSink] = {}
_sinks_lock = threading.Lock()


def sqs_sink(queue_url: str, delay_seconds: int) -> SqsSink:
    """The sink for ``queue_url`` (one per process: its botocore client is reused)."""
    with _sinks_lock:
        sink = _sinks.get((queue_url, delay_seconds))
        if sink is None:
            sink = _sinks[(queue_url, delay_seconds)] = SqsSink(queue_url, delay_seconds)
        return sink


def outside_reconcile(hours: Iterable[datetime], *, now: datetime) -> tuple[datetime, ...]:
    """The hours no scheduled reconcile after ``now`` is sure to reread (sorted)."""
    first_reread = floor_hour(now + RECONCILE_REACH) - _HOUR
    return tuple(sorted({h for h in hours if h < first_reread}))


def recheck_events(hours: Iterable[RecheckHour]) -> list[dict[str, Any]]:
    """Recount events (docs/design.md §4) for ``hours``: contiguous hours of a (model,
    account) merged into one window, each marked ``"reason": "recheck"``."""
    runs: list[list[Any]] = []  # [model, account, start, end]
    for h in sorted(set(hours)):
        last = runs[-1] if runs else None
        if last and last[0] == h.model and last[1] == h.account_id and last[3] == h.hour:
            last[3] = h.hour + _HOUR
        else:
            runs.append([h.model, h.account_id, h.hour, h.hour + _HOUR])
    return [
        {
            "recount": {
                "accountId": account,
                "model": model,
                "start": format_bucket_time(start),
                "end": format_bucket_time(end),
            },
            "reason": RECHECK_REASON,
        }
        for model, account, start, end in runs
    ]


def _windows(hours: Sequence[RecheckHour]) -> str:
    return "; ".join(
        f"{e['recount']['model']} · {e['recount']['accountId']} "
        f"[{e['recount']['start']}, {e['recount']['end']})"
        for e in recheck_events(hours)
    )


def hand_over(hours: Iterable[RecheckHour], sink: RecheckSink | None) -> tuple[int, int]:
    """Send ``hours`` (deduplicated) to ``sink`` in one call: (hours queued, not queued).

    Hours that are not queued (no sink, or the send failed) get one ⚠ line naming them
    all, so an operator can recount them; a failed send never raises: the stream batch's
    own counts are written and stand.
    """
    unique = sorted(set(hours))
    if not unique:
        return 0, 0
    if sink is None:
        _log.warning(
            "⚠ not rechecked: %d hour(s) outside the reconcile window (no recheck queue; set "
            "METRICS_AGG_RECHECK_QUEUE_URL, or run `metrics-agg recount` for them): %s",
            len(unique),
            _windows(unique),
        )
        return 0, len(unique)
    try:
        sink.send(unique)
    except TransportError as exc:
        _log.warning(
            "⚠ recheck not queued: %d hour(s) outside the reconcile window (%s: %s); the "
            "batch's counts stand, run `metrics-agg recount` for: %s",
            len(unique),
            type(exc).__name__,
            exc,
            _windows(unique),
        )
        return 0, len(unique)
    _log.info(
        "Recheck: %d hour(s) outside the reconcile window queued for a delayed direct recount: %s",
        len(unique),
        _windows(unique),
    )
    return len(unique), 0
