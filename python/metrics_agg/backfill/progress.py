"""What a backfill unit reports when it ends, and how the CLI hears about it.

The worker (the same Lambda, fed by the backfill queue) sends one small JSON message per
attempt of a unit to the progress queue (`Config.progress_queue_url`); the CLI long-polls
that queue and deletes what it read. This works the same on AWS and against the local
server, needs no other store, and costs one SendMessage per unit attempt plus the CLI's
polls (docs/deployment.md gives the figures). A report that cannot be sent is logged and
dropped: the counts are written already, and the unit merely shows as unreported (a
resumed run recounts it, which is idempotent).
"""

from __future__ import annotations

__all__ = ["UnitReport", "send_report"]

import functools
import json
import logging
from dataclasses import asdict, dataclass

from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.errors import QueueError

_log = logging.getLogger("metrics_agg")


@dataclass(frozen=True, slots=True)
class UnitReport:
    """One attempt of one unit: counted and written, or failed (and retried by SQS)."""

    run: str
    unit: str  # BackfillUnit.unit_id
    ok: bool
    attempt: int  # the message's ApproximateReceiveCount
    records: int = 0
    buckets: int = 0
    seconds: float = 0.0
    error: str | None = None  # error class and message, never payloads

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, body: str) -> UnitReport | None:
        """None for anything that is not a report (logged by the caller)."""
        try:
            doc = json.loads(body)
            report = cls(
                run=str(doc["run"]),
                unit=str(doc["unit"]),
                ok=bool(doc["ok"]),
                attempt=int(doc["attempt"]),
                records=int(doc.get("records", 0)),
                buckets=int(doc.get("buckets", 0)),
                seconds=float(doc.get("seconds", 0.0)),
                error=None if doc.get("error") is None else str(doc["error"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return report


@functools.lru_cache(maxsize=4)
def _client(url: str) -> QueueClient:
    # One botocore client per process and queue: building one costs tens of milliseconds.
    return QueueClient.for_url(url)


def send_report(queue_url: str, reports: list[UnitReport]) -> bool:
    """Send the reports; False (and a warning) when the progress queue cannot be reached."""
    if not reports:
        return True
    try:
        _client(queue_url).send(queue_url, [r.encode() for r in reports])
    except QueueError as exc:
        _log.warning("backfill progress not reported (%d unit(s)): %s", len(reports), exc)
        return False
    return True
