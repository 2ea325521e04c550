"""Run a backfill from the CLI: enqueue the units, then follow their reports to the end.

The units run elsewhere (the Lambda behind the backfill queue, or `metrics-agg serve`'s
emulation of it); this side only sends them and reads the progress queue (`progress`).
A journal file records every unit as it is sent and as it ends, so running the same
backfill again after an interruption sends only what was never sent or failed, and follows
the units an earlier run sent that are still queued or running (their reports wait on the
progress queue) instead of sending them twice. A unit sent earlier that is neither queued
nor reported once the queue is empty, or sent longer ago than the queue keeps messages, is
lost and sent again. The units themselves are recounts, so a unit run twice would still end
at the same exact buckets: the journal saves the time and cost.
"""

from __future__ import annotations

__all__ = [
    "BackfillQueues",
    "Journal",
    "JournalEntry",
    "Progress",
    "default_journal_path",
    "run_backfill",
    "run_id_for",
]

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from metrics_agg.backfill.progress import UnitReport
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.backfill.units import BackfillUnit, encode_message
from metrics_agg.timestamps import format_write_time, parse_instant, utc_now

_log = logging.getLogger("metrics_agg")


def run_id_for(queue_url: str, accounts: Sequence[str] | None, models: Sequence[str]) -> str:
    """Stable for the same queue, accounts (None: all) and models: a rerun resumes."""
    key = json.dumps([queue_url, sorted(accounts) if accounts is not None else "*", sorted(models)])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class BackfillQueues:
    units: str  # the backfill queue's URL (its mapping runs the units)
    progress: str  # where units report (the function's METRICS_AGG_BACKFILL_PROGRESS_URL)


def default_journal_path(run_id: str, environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/metrics-agg/backfill-<run>.jsonl`` (default ``~/.local/state``): one
    place per user, whatever directory the command runs in. ``environ``: the CLI's."""
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "metrics-agg" / f"backfill-{run_id}.jsonl"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A unit's last journaled state: ``sent``, ``done`` or ``failed``, and when."""

    status: str
    at: datetime | None


class Journal:
    """Append-only JSON lines: one per unit sent (``sent``) and per unit that ended
    (``done`` or ``failed``); a unit's last line is its state."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def state(self) -> dict[str, JournalEntry]:
        if not self.path.exists():
            return {}
        out: dict[str, JournalEntry] = {}
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue  # a line cut by an interruption: that unit is sent again
                if not isinstance(doc, dict) or doc.get("status") not in _STATUSES:
                    continue
                try:
                    at = parse_instant(str(doc["at"]))
                except (KeyError, ValueError):
                    at = None
                out[str(doc.get("unit"))] = JournalEntry(str(doc["status"]), at)
        return out

    def done(self) -> set[str]:
        return {unit for unit, entry in self.state().items() if entry.status == "done"}

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def record(self, report: UnitReport, status: str) -> None:
        self._append(
            [
                {
                    "unit": report.unit,
                    "status": status,
                    "records": report.records,
                    "attempt": report.attempt,
                    "at": format_write_time(utc_now()),
                }
            ]
        )

    def record_sent(self, unit_ids: Iterable[str]) -> None:
        """Before the send: a unit journaled but not sent is found lost and sent later; one
        sent but not journaled would be sent twice."""
        at = format_write_time(utc_now())
        self._append([{"unit": u, "status": "sent", "at": at} for u in unit_ids])

    def _append(self, docs: list[dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(d) + "\n" for d in docs))
            f.flush()
            os.fsync(f.fileno())


_STATUSES = frozenset({"sent", "done", "failed"})
_SEND_CHUNK = 10  # SQS's batch: journaled and sent together
_DEFAULT_RETENTION = 4 * 24 * 3600  # SQS's default MessageRetentionPeriod


@dataclass(slots=True)
class Progress:
    """What the progress bar shows; counts are units unless named otherwise."""

    total: int  # units of the plan
    already_done: int = 0  # done in an earlier run (journal): not sent again
    queued: int = 0  # sent by this run, plus `resumed`
    resumed: int = 0  # sent by an earlier run and still queued or running: followed, not sent
    resent: int = 0  # of `resumed`: found lost (neither queued nor reported), sent again
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


def _retention(client: QueueClient, units_url: str) -> timedelta:
    raw = client.attributes(units_url, ["MessageRetentionPeriod"]).get("MessageRetentionPeriod")
    try:
        return timedelta(seconds=int(raw) if raw else _DEFAULT_RETENTION)
    except ValueError:
        return timedelta(seconds=_DEFAULT_RETENTION)


def _send(
    client: QueueClient,
    queues: BackfillQueues,
    units: Sequence[BackfillUnit],
    run_id: str,
    journal: Journal,
    after_chunk: Callable[[int], None],
) -> None:
    for i in range(0, len(units), _SEND_CHUNK):
        chunk = units[i : i + _SEND_CHUNK]
        journal.record_sent(u.unit_id for u in chunk)
        client.send(queues.units, [encode_message(u, run_id) for u in chunk])
        after_chunk(len(chunk))


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
    """Send the units never sent or failed, follow the ones an earlier run sent, then read
    reports until each one ended.

    Once the backfill queue has been empty for ``settle_seconds`` with no report, the
    followed units still unreported are lost: they are sent again, once. After that, the
    remaining units are given up (``Progress.unreported``): a unit whose report was lost.

    Raises:
        QueueError: a queue could not be reached.
    """
    state = journal.state()
    done_before = {u for u, e in state.items() if e.status == "done"}
    oldest = utc_now() - _retention(client, queues.units)
    in_flight = {
        u for u, e in state.items() if e.status == "sent" and e.at is not None and e.at > oldest
    }
    todo = [u for u in units if u.unit_id not in done_before]
    followed = [u for u in todo if u.unit_id in in_flight]
    pending = [u for u in todo if u.unit_id not in in_flight]
    progress = Progress(
        total=len(units),
        already_done=len(units) - len(todo),
        queued=len(followed),
        resumed=len(followed),
    )
    waiting = {u.unit_id for u in todo}
    if followed:
        _log.info("%d unit(s) sent by an earlier run are followed, not sent again", len(followed))

    def sent(n: int) -> None:
        progress.queued += n
        on_progress(progress)

    _send(client, queues, pending, run_id, journal, sent)
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
                lost = [u for u in followed if u.unit_id in waiting]
                if lost and not progress.resent:
                    _log.warning(
                        "%d unit(s) an earlier run sent are neither queued nor reported: "
                        "sending them again",
                        len(lost),
                    )
                    _send(client, queues, lost, run_id, journal, lambda n: None)
                    progress.resent = len(lost)
                    quiet_since = time.monotonic()
                    continue
                progress.unreported = tuple(sorted(waiting))
                break
            quiet_since = time.monotonic()
    return progress
