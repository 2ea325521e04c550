"""Run a backfill from the CLI: enqueue the units, then follow their reports to the end.

The units run elsewhere (the Lambda behind the backfill queue, or `metrics-agg serve`'s
emulation of it); this side only sends them and reads the progress queue (`progress`).
A journal file records every unit that reported success, so running the same backfill
again, after an interruption or not, sends only what is not done yet; the units
themselves are recounts, so a unit run twice ends at the same exact buckets.
"""

from __future__ import annotations

__all__ = ["BackfillQueues", "Journal", "Progress", "run_backfill", "run_id_for"]

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metrics_agg.backfill.progress import UnitReport
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.backfill.units import BackfillUnit, encode_message
from metrics_agg.timestamps import format_write_time, utc_now

_log = logging.getLogger("metrics_agg")


def run_id_for(queue_url: str, accounts: Sequence[str] | None, models: Sequence[str]) -> str:
    """Stable for the same queue, accounts (None: all) and models: a rerun resumes."""
    key = json.dumps([queue_url, sorted(accounts) if accounts is not None else "*", sorted(models)])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class BackfillQueues:
    units: str  # the backfill queue's URL (its mapping runs the units)
    progress: str  # where units report (the function's METRICS_AGG_BACKFILL_PROGRESS_URL)


class Journal:
    """Append-only JSON lines: one per unit that ended (``done`` or ``failed``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def done(self) -> set[str]:
        if not self.path.exists():
            return set()
        out: set[str] = set()
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue  # a line cut by an interruption: that unit simply runs again
                if isinstance(doc, dict) and doc.get("status") == "done":
                    out.add(str(doc.get("unit")))
                elif isinstance(doc, dict) and doc.get("status") == "failed":
                    out.discard(str(doc.get("unit")))
        return out

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def record(self, report: UnitReport, status: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {
                "unit": report.unit,
                "status": status,
                "records": report.records,
                "attempt": report.attempt,
                "at": format_write_time(utc_now()),
            }
        )
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass(slots=True)
class Progress:
    """What the progress bar shows; counts are units unless named otherwise."""

    total: int  # units of the plan
    already_done: int = 0  # done in an earlier run (journal): not sent again
    queued: int = 0
    done: int = 0
    failed: int = 0  # sent to the dead-letter queue after their last attempt
    retrying: int = 0  # failed an attempt, SQS will deliver them again
    records: int = 0
    buckets: int = 0
    started: float = field(default_factory=time.monotonic)
    unreported: tuple[str, ...] = ()  # sent, never reported (set when the run gives up)
    failed_units: tuple[str, ...] = ()

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def records_per_second(self) -> float:
        return self.records / max(time.monotonic() - self.started, 1e-9)

    @property
    def complete(self) -> bool:
        return self.failed == 0 and not self.unreported and self.finished == self.queued


def _max_receives(client: QueueClient, units_url: str) -> int:
    raw = client.attributes(units_url, ["RedrivePolicy"]).get("RedrivePolicy")
    try:
        return int(json.loads(raw)["maxReceiveCount"]) if raw else 1
    except (ValueError, KeyError, TypeError):
        return 1


def _in_queue(client: QueueClient, units_url: str) -> int:
    attrs = client.attributes(
        units_url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    return int(attrs.get("ApproximateNumberOfMessages", "0")) + int(
        attrs.get("ApproximateNumberOfMessagesNotVisible", "0")
    )


def run_backfill(
    units: Sequence[BackfillUnit],
    *,
    run_id: str,
    queues: BackfillQueues,
    client: QueueClient,
    journal: Journal,
    on_progress: Callable[[Progress], None] = lambda p: None,
    wait_seconds: int = 1,
    settle_seconds: float = 30.0,
    send_only: bool = False,
) -> Progress:
    """Send the units not journaled done, then read reports until each one ended.

    Gives up on the remaining units (``Progress.unreported``) when the backfill queue has
    been empty for ``settle_seconds`` and no report came: a unit whose report was lost.

    Raises:
        QueueError: a queue could not be reached.
    """
    done_before = journal.done()
    pending = [u for u in units if u.unit_id not in done_before]
    progress = Progress(total=len(units), already_done=len(units) - len(pending))
    waiting = {u.unit_id for u in pending}
    bodies = [encode_message(u, run_id) for u in pending]
    for i in range(0, len(bodies), 100):
        client.send(queues.units, bodies[i : i + 100])
        progress.queued += len(bodies[i : i + 100])
        on_progress(progress)
    if send_only or not waiting:
        return progress
    max_receives = _max_receives(client, queues.units)
    quiet_since = time.monotonic()
    failed: list[str] = []
    retrying: set[str] = set()
    while waiting:
        got = client.receive(queues.progress, wait_seconds=wait_seconds, visibility_timeout=30)
        mine = []
        for message in got:
            report = UnitReport.decode(message.body)
            if report is None:
                _log.warning("ignored a message on the progress queue that is not a report")
                mine.append(message.receipt_handle)
                continue
            if report.run != run_id:
                continue  # another run's report: left for its own CLI
            mine.append(message.receipt_handle)
            if report.unit not in waiting:
                continue  # a duplicate (SQS delivers at least once)
            retrying.discard(report.unit)
            if report.ok:
                waiting.discard(report.unit)
                journal.record(report, "done")
                progress.done += 1
                progress.records += report.records
                progress.buckets += report.buckets
            elif report.attempt >= max_receives:
                waiting.discard(report.unit)
                journal.record(report, "failed")
                progress.failed += 1
                failed.append(report.unit)
            else:
                retrying.add(report.unit)
        if mine:
            client.delete(queues.progress, mine)
        if got:
            quiet_since = time.monotonic()
        progress.retrying = len(retrying)
        progress.failed_units = tuple(failed)
        on_progress(progress)
        if not got and time.monotonic() - quiet_since > settle_seconds:
            if _in_queue(client, queues.units) == 0:
                progress.unreported = tuple(sorted(waiting))
                break
            quiet_since = time.monotonic()
    return progress
