"""Backfill on the local stack: 30 days x 3 accounts x 3 models, units one at a time
against units in parallel, in the same run (issue 12). Prints a table for docs/benchmarks.md.

    .venv/bin/python scripts/bench_backfill.py                       # defaults below
    .venv/bin/python scripts/bench_backfill.py --latency-ms 0 20 --concurrency 1 4
    .venv/bin/python scripts/bench_backfill.py --records-per-day 1000 --days 30

For each (latency, concurrency) a fresh local stack is seeded with the same records
(fixed seeds, no stream records, so only the backfill writes buckets), then
`run_backfill` sends the units to the stack's backfill queue and follows their progress
reports exactly as `metrics-agg backfill --local` does; the time is from the first send
to the last report. Every run is then checked bucket by bucket against a fresh count
(`pipeline.verify`); a mismatch exits 1. `--latency-ms` adds that much to every GraphQL
request, modelling AppSync's round trip. Everything runs in one process on 127.0.0.1, so
the server, the units and the CLI share the GIL: the parallel figure is a floor.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metrics_agg.aggregator import pipeline
from metrics_agg.backfill.runner import BackfillQueues, Journal, run_backfill
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.backfill.units import plan_backfill
from metrics_agg.local.server import LocalStack, seed_records
from metrics_agg.local.server.stack import BACKFILL_QUEUE, PROGRESS_QUEUE

ACCOUNTS = ("acct-1", "acct-2", "acct-3")
MODELS = ("Item", "ScoreResult", "FeedbackItem")


class _Ticker:
    """A progress line on stderr every 30 s (the table goes to stdout)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = time.monotonic()

    def __call__(self, p: Any) -> None:
        if time.monotonic() - self.last >= 30:
            self.last = time.monotonic()
            print(f"  {self.label}: {p.finished}/{p.queued} units", file=sys.stderr, flush=True)


def _run(
    db: Path, *, days: int, per_day: int, latency_ms: float, concurrency: int, end: datetime
) -> tuple[int, int, int, float, int]:
    """(units, records counted, buckets written, seconds, mismatches)."""
    start = end - timedelta(days=days)
    stack = LocalStack(db, mapping=True, latency_ms=latency_ms, backfill_concurrency=concurrency)
    stack.start()
    try:
        for i, account in enumerate(ACCOUNTS):
            for j, model in enumerate(MODELS):
                seed_records(
                    stack.store,
                    model,
                    account,
                    per_day * days,
                    start,
                    end,
                    seed=100 * i + j,
                    stream=False,
                )
        units = plan_backfill(list(ACCOUNTS), list(MODELS), start, end)
        queues = BackfillQueues(stack.queue_url(BACKFILL_QUEUE), stack.queue_url(PROGRESS_QUEUE))
        client = QueueClient.for_url(queues.units)
        t0 = time.perf_counter()
        try:
            progress = run_backfill(
                units,
                run_id=f"bench-{concurrency}",
                queues=queues,
                client=client,
                journal=Journal(db.with_suffix(".journal")),
                on_progress=_Ticker(f"latency {latency_ms:g} ms, {concurrency} at once"),
                settle_seconds=30,
            )
        finally:
            client.close()
        seconds = time.perf_counter() - t0
        if not progress.complete:
            print(f"  incomplete: {progress.failed} failed, {len(progress.unreported)} unreported")
            return len(units), progress.records, progress.buckets, seconds, -1
        mismatches = 0
        for account in ACCOUNTS:
            report = pipeline.verify(
                config=stack.config(),
                account_id=account,
                start=start,
                end=end,
                models=list(MODELS),
            )
            mismatches += len(report.mismatches)
        return len(units), progress.records, progress.buckets, seconds, mismatches
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--records-per-day",
        type=int,
        default=200,
        metavar="N",
        help="per (account, model); default 200",
    )
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    total = args.days * args.records_per_day * len(ACCOUNTS) * len(MODELS)
    print(
        f"backfill of {args.days} days x {len(ACCOUNTS)} accounts x {len(MODELS)} models "
        f"({', '.join(MODELS)}), {total:,} source records\n"
    )
    print(
        "| latency per request | units at once | units | records | buckets written "
        "| seconds | records/s | speed-up | exact |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for latency in args.latency_ms:
            base: float | None = None
            for concurrency in args.concurrency:
                db = Path(tmp) / f"l{latency:g}-c{concurrency}.sqlite3"
                units, records, buckets, seconds, bad = _run(
                    db,
                    days=args.days,
                    per_day=args.records_per_day,
                    latency_ms=latency,
                    concurrency=concurrency,
                    end=end,
                )
                base = seconds if base is None else base
                ok = ok and bad == 0 and records == total
                print(
                    f"| {latency:g} ms | {concurrency} | {units} | {records:,} | {buckets:,} "
                    f"| {seconds:.1f} | {records / seconds:,.0f} | {base / seconds:.2f}x "
                    f"| {'yes' if bad == 0 else f'NO ({bad} mismatches)'} |",
                    flush=True,
                )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
