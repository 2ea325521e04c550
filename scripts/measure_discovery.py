"""Measure what the scheduled pass costs to find and recount the active pairs, on the local stack.

    .venv/bin/python scripts/measure_discovery.py [--records 10000] [--accounts 10000]
                                                 [--latency-ms 50]

Two ways to find the pairs, in the same run on the same data:
- *recorded* (the 5-minute pass): the pairs the stream units recorded in the activity
  table, read with one Query per reconciled hour (`aggregator.activity`);
- *discovery* (the opt-in daily sweep, and the 5-minute pass before the activity table):
  ``listAccounts``, then one key-condition query per account (`graphql.discovery`).

1. History: three accounts with three days of Items (``--records`` each), recounted, and
   one active pair (a few Tasks written now, delivered to the stream path). Then one pass
   each way. Reported: AggregatedMetrics rows read per index (the store counts rows each
   Query/Scan page reads, before any filter: what DynamoDB charges), HTTP requests, and
   the ratio to the active pair's two-hour buckets.
2. Many accounts: ``--accounts`` Account rows, five of them active (delivered to the
   stream path, so recorded), one pass each way with ``--latency-ms`` added to every
   request, GraphQL and DynamoDB alike (modelling AWS), with the Lambda's default 300 s
   timeout (or ``--timeout``) as the deadline: HTTP requests (GraphQL + DynamoDB), time,
   units. The bar for the recorded pass at 10,000 accounts and 50 ms: at most 20 requests
   and 5 s.

Figures only; nothing is asserted. Runs against 127.0.0.1 in a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metrics_agg.aggregator import pipeline
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack, seed_accounts, seed_records

SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
SWEEP = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {"sweep": True}}
LAMBDA_TIMEOUT = 300.0 - 3.0  # template default, less the handler's reserve


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _activity(stack: LocalStack, account: str, now: datetime, records: int = 3) -> None:
    table = "Task-local-NONE"
    after = stack.store.stream_end(table)
    for n in range(records):
        stamp = _stamp(now - timedelta(minutes=2 * n + 1))
        stack.store.create(
            "Task",
            {"id": str(uuid.uuid4()), "accountId": account, "createdAt": stamp, "updatedAt": stamp},
        )
    event = {"Records": stack.store.read_stream(table, after, 100)}
    out = pipeline.handle_event(event, config=stack.config())
    assert out == {"batchItemFailures": []}, out


def _metric_rows(stack: LocalStack) -> int:
    return len(stack.store.all_metrics())


def history(folder: Path, records: int) -> None:
    now = datetime.now(UTC)
    end = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=3)
    with LocalStack(folder / "history.sqlite3", mapping=False) as stack:
        t0 = time.monotonic()
        with GraphQLClient(stack.config()) as client:
            for n, account in enumerate(("acct-1", "acct-2", "acct-3")):
                seed_records(
                    stack.store, "Item", account, records, start, end, seed=n, stream=False
                )
                outcome = pipeline.recount(
                    config=stack.config(),
                    account_id=account,
                    model="Item",
                    start=start,
                    end=end,
                    client=client,
                )
                assert outcome.ok, outcome
        _activity(stack, "acct-2", now)
        hour = now.replace(minute=0, second=0, microsecond=0)
        lo = (hour - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        pair_buckets = sum(
            1
            for r in stack.store.all_metrics("acct-2")
            if r["recordType"] == "tasks" and r["timeRangeStart"] >= lo
        )
        table_rows = _metric_rows(stack)
        print(
            f"history: 3 accounts x {records:,} Items over 3 days, recounted "
            f"({time.monotonic() - t0:.0f} s); AggregatedMetrics rows: {table_rows:,}; "
            f"the active pair (Task, acct-2) has {pair_buckets} buckets in its two hours"
        )
        metric_indexes = (
            "AggregatedMetrics",
            "byAccountRecordType",
            "byAccountTimeRangeRecord",
            "byScorecardTimeRangeRecord",
            "byScoreTimeRangeRecord",
        )
        for name, event in (("recorded", SCHEDULED), ("discovery", SWEEP)):
            stack.store.rows_read.clear()
            stack.activity_faults.reset_counts()
            t0 = time.monotonic()
            with GraphQLClient(stack.config()) as client:
                out = pipeline.handle_event(event, config=stack.config(), client=client)
                requests = client.request_count + stack.activity_faults.requests
            seconds = time.monotonic() - t0
            reads = dict(stack.store.rows_read)
            metric_rows = sum(reads.get(ix, 0) for ix in metric_indexes)
            print(
                f"scheduled pass ({name}): {out['status']}, {out['units']} unit(s), {requests} "
                f"HTTP requests ({stack.activity_faults.requests} to the activity table), "
                f"{seconds:.2f} s"
            )
            print(f"  rows read per index: {reads}")
            print(
                f"  AggregatedMetrics rows read: {metric_rows} = "
                f"{metric_rows / max(pair_buckets, 1):.1f}x the active pair's two-hour buckets; "
                f"a filtered Scan would read the whole table, {table_rows:,} rows"
            )


def _pass(stack: LocalStack, config: Any, event: dict[str, Any], timeout: float) -> str:
    stack.store.rows_read.clear()
    stack.activity_faults.reset_counts()
    t0 = time.monotonic()
    with GraphQLClient(config) as client:
        out: dict[str, Any] = pipeline.handle_event(
            event, config=config, client=client, deadline=Deadline.after(timeout)
        )
        graphql = client.request_count
    seconds = time.monotonic() - t0
    dynamodb = stack.activity_faults.requests
    failed = out["failedUnits"]
    return (
        f"{graphql + dynamodb:,} HTTP requests ({graphql:,} GraphQL + {dynamodb} DynamoDB), "
        f"{seconds:.2f} s; {out['status']}, {out['units']} unit(s) ({len(failed)} failed or "
        f"not discovered{', e.g. ' + failed[0] if failed else ''}); rows read "
        f"{dict(stack.store.rows_read)}"
    )


def many_accounts(folder: Path, accounts: int, latency_ms: float, timeout: float) -> None:
    now = datetime.now(UTC)
    with LocalStack(folder / "many.sqlite3", mapping=False, latency_ms=latency_ms) as stack:
        ids = [f"acct-{n:05d}" for n in range(accounts)]
        seed_accounts(stack.store, ids)
        active = ids[:: max(1, accounts // 5)][:5]
        for account in active:
            _activity(stack, account, now, records=1)
        config = stack.config()
        print(
            f"{accounts:,} accounts ({len(active)} active pairs, recorded by their stream "
            f"units), {latency_ms:g} ms added per request, read parallelism "
            f"{config.read_parallelism}, deadline {timeout:g} s:"
        )
        print(f"  5-minute pass, recorded pairs:  {_pass(stack, config, SCHEDULED, timeout)}")
        print(
            f"  same pass, listAccounts discovery (the sweep, and the earlier 5-minute pass): "
            f"{_pass(stack, config, SWEEP, timeout)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="Items per history account")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--timeout",
        type=float,
        default=LAMBDA_TIMEOUT,
        help="the invocation's deadline in seconds (default: the template's 300 s less 3 s)",
    )
    parser.add_argument("--skip-history", action="store_true")
    args = parser.parse_args()
    logging.getLogger("metrics_agg").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="metrics-agg-discovery-") as tmp:
        if not args.skip_history:
            history(Path(tmp), args.records)
        many_accounts(Path(tmp), args.accounts, args.latency_ms, args.timeout)


if __name__ == "__main__":
    main()
