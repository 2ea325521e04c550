"""Steady state at volume: a one-record stream invocation into hours that hold
1k, 10k and 100k records, local server with 50 ms added per request.

    pytest benchmarks/bench_steady_state.py -s      # prints the table of docs/benchmarks.md

For each size the same account holds N Item records spread over the previous and the
current hour, every bucket stored (one direct recount). One new record is written (stamped
in the middle of the previous hour, where every minute holds its share) and its one-record
stream event is run through the *direct* path (the original design: recount the current
and previous hour, every size from the source), the *incremental* path
(docs/design.md §4.8: recount the touched minute, derive 5/15/60; one unit's own requests)
and the *shared* path (the default stream path: the same work in requests the units of an
invocation share, docs/incremental.md), all in the same run, in one benchmark group per size.
Per round: source rows read, HTTP requests, wall time; the touched minute's own volume
(records in that minute) is the yardstick for rows read.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.plan import plan_units
from metrics_agg.aggregator.shared import run_shared_units
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack, seed_records
from metrics_agg.timestamps import epoch_minute, parse_instant_or_none

LATENCY_MS = 50.0
SIZES = tuple(
    int(s) for s in os.environ.get("METRICS_AGG_BENCH_SIZES", "1000,10000,100000").split(",")
)
RESULTS: dict[tuple[int, str], dict[str, float]] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    path = tmp_path_factory.mktemp("steady") / "steady.sqlite3"
    with LocalStack(path, mapping=False, latency_ms=LATENCY_MS) as s:
        yield s


_prepared: dict[int, tuple[dict[str, Any], int]] = {}


def _prepare(stack: LocalStack, size: int) -> tuple[dict[str, Any], int]:
    """Seed, aggregate, write one new record; its stream event and its minute's volume."""
    if size in _prepared:
        return _prepared[size]
    account = f"steady-{size}"
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    seed_records(
        stack.store,
        "Item",
        account,
        size,
        hour - timedelta(hours=1),
        max(now - timedelta(seconds=1), hour + timedelta(seconds=1)),
        seed=size,
        stream=False,
    )
    recount = {
        "recount": {
            "accountId": account,
            "model": "Item",
            "start": (hour - timedelta(hours=1)).isoformat(),
            "end": (hour + timedelta(hours=1)).isoformat(),
        }
    }
    assert pipeline.handle_event(recount, config=stack.config())["status"] == "SUCCESS"
    table = "Item-local-NONE"
    after = stack.store.stream_end(table)
    # A minute in the middle of the previous hour: a full minute of records around it
    # (the current minute may have barely begun).
    stamp = hour - timedelta(minutes=30) + timedelta(seconds=17, microseconds=250_000)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    stack.store.create(
        "Item",
        {
            "id": str(uuid.uuid4()),
            "accountId": account,
            "createdAt": text,
            "updatedAt": text,
            "createdByType": "prediction",
        },
    )
    event = {"Records": stack.store.read_stream(table, after, 10)}
    minute = epoch_minute(stamp)
    volume = 0
    for row in stack.store.all_records("Item", account):
        at = parse_instant_or_none(row.get("createdAt"))
        volume += at is not None and epoch_minute(at) == minute
    _prepared[size] = (event, volume)
    return event, volume


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", ["direct", "incremental", "shared"])
def test_steady_state_at_volume(benchmark: Any, stack: LocalStack, path: str, size: int) -> None:
    event, volume = _prepare(stack, size)
    config = stack.config()
    (unit,) = plan_units(parse_batch(event), now=datetime.now(UTC), max_hours_back=168)
    figures: dict[str, float] = {}

    def run() -> None:
        with GraphQLClient(config) as client:
            t0 = time.perf_counter()
            if path == "shared":
                (outcome,) = run_shared_units(client, [unit], config=config, deadline=Deadline())
            else:
                outcome = pipeline.run_unit(
                    client,
                    unit,
                    config=config,
                    deadline=Deadline(),
                    incremental=path == "incremental",
                )
            figures.update(
                seconds=time.perf_counter() - t0,
                rows=outcome.records_read,
                requests=client.request_count,
            )
            assert outcome.ok, outcome.error

    rounds = 1 if size >= 100_000 and path == "direct" else 3
    benchmark.group = f"steady state at volume {size:,} records"
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    figures["volume"] = volume
    figures["median"] = benchmark.stats.stats.median if benchmark.stats else figures["seconds"]
    benchmark.extra_info.update(figures)
    RESULTS[(size, path)] = figures
    if len(RESULTS) == 3 * len(SIZES):
        print("\nsteady state at volume (one-record invocation, 50 ms per request)")
        print(
            "| records in the hours | path | source rows read | rows / touched minute | "
            "HTTP requests | wall time (median) |"
        )
        for (n, p), f in sorted(RESULTS.items()):
            ratio = f["rows"] / max(f["volume"], 1)
            print(
                f"| {n:,} | {p} | {int(f['rows']):,} | {ratio:.1f}x of {int(f['volume'])} | "
                f"{int(f['requests'])} | {f['median']:.2f} s |"
            )
