"""End to end (docs/design.md §7): one invocation recounting an hour of N records, local server
with 50 ms added per request, against a sequential baseline after the original design.

    pytest benchmarks/bench_end_to_end.py                   # 1k, 10k, 100k (a few minutes)
    METRICS_AGG_BENCH_SIZES=1000,10000 pytest benchmarks    # what CI runs, once each,
        --benchmark-disable                                 # with timing disabled

One benchmark group per size ("end-to-end 10,000 records"), pipeline and baseline side by
side; each round starts from the same state: every bucket of the window stored but stale
(count 0, an old `updatedAt`), so both must rewrite all of them and the baseline's
"update, then create on failure" takes exactly one mutation per bucket. The ratio of the
two, measured in the same run, is printed per size and kept in `extra_info`.

`test_steady_state_requests` records the HTTP requests of a steady-state stream
invocation (one new record in an hour whose buckets exist) per recordType family.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.graphql.api import list_source_reads, write_buckets
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack, seed_records
from metrics_agg.models import SOURCE_MODELS, BucketKey, BucketValue, BucketWrite, SourceRead

LATENCY_MS = 50.0
SIZES = tuple(
    int(s) for s in os.environ.get("METRICS_AGG_BENCH_SIZES", "1000,10000,100000").split(",")
)
STALE = "2000-01-01T00:00:00.000000Z"
_SECONDS: dict[tuple[int, str], float] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    path = tmp_path_factory.mktemp("bench") / "bench.sqlite3"
    with LocalStack(path, mapping=False, latency_ms=LATENCY_MS) as s:
        yield s


def _window() -> tuple[datetime, datetime]:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=3), hour - timedelta(hours=2)


_seeded: set[int] = set()


def _prepare(stack: LocalStack, size: int) -> tuple[str, datetime, datetime]:
    """Seed `size` items into one hour (once per size) and store its buckets."""
    account = f"bench-{size}"
    start, end = _window()
    if size not in _seeded:
        seed_records(stack.store, "Item", account, size, start, end, seed=size, stream=False)
        event = {
            "recount": {
                "accountId": account,
                "model": "Item",
                "start": start.isoformat(),
                "end": end.isoformat(),
            }
        }
        assert pipeline.handle_event(event, config=stack.config())["status"] == "SUCCESS"
        _seeded.add(size)
    return account, start, end


def _make_stale(stack: LocalStack, account: str) -> None:
    for m in stack.store.all_metrics(account):
        stack.store.update(
            "AggregatedMetrics",
            [account, m["compositeKey"]],
            {"count": 0, "complete": False, "updatedAt": STALE},
        )


# --------------------------------------------------------------------------- the baseline


def _naive_counts(
    records: list[dict[str, Any]], start: datetime, end: datetime
) -> dict[tuple[str, datetime, int], int]:
    """The original per-record algorithm: parse to datetime, floor per size, dict += 1."""
    spec = SOURCE_MODELS["Item"]
    counts: Counter[tuple[str, datetime, int]] = Counter()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for record in records:
        raw = record.get("createdAt")
        try:
            dt = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            continue
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        if not start <= dt < end:
            continue
        types = [spec.record_type]
        category = spec.category_record_types.get(str(record.get(spec.category_field)))
        if category:
            types.append(category)
        minute = int((dt - epoch).total_seconds() // 60)
        for size in (1, 5, 15, 60):
            bucket = epoch + timedelta(minutes=minute - minute % size)
            for record_type in types:
                counts[(record_type, bucket, size)] += 1
    return counts


def sequential_baseline(client: GraphQLClient, account: str, start: datetime, end: datetime) -> int:
    """Pages one after another; every bucket of the window rewritten with one mutation,
    update first and create when the update fails. Returns the mutations sent."""
    spec = SOURCE_MODELS["Item"]
    (records,) = list_source_reads(
        client, spec, account, [SourceRead(0, start, end)], parallelism=1
    )
    counts = _naive_counts(records, start, end)
    now = datetime.now(UTC)
    sent = 0
    for record_type in spec.record_types:
        for size in (1, 5, 15, 60):
            bucket = start
            while bucket < end:
                key = BucketKey(account, record_type, bucket, size)
                value = BucketValue(
                    counts.get((record_type, bucket, size), 0),
                    bucket + timedelta(minutes=size) <= now,
                )
                write = BucketWrite(key, value, snapshot_time=now, create=False)
                (result,) = write_buckets(client, [write], per_request=1, parallelism=1)
                sent += 1
                if not result.ok:
                    create = replace(write, create=True, created_at=now)
                    write_buckets(client, [create], per_request=1, parallelism=1)
                    sent += 1
                bucket += timedelta(minutes=size)
    return sent


# --------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n:,}")
@pytest.mark.parametrize("impl", ["pipeline", "baseline"])
def test_end_to_end(benchmark: Any, stack: LocalStack, impl: str, size: int) -> None:
    account, start, end = _prepare(stack, size)
    benchmark.group = f"end-to-end {size:,} records"
    requests: list[int] = []

    def setup() -> None:
        _make_stale(stack, account)

    def run_pipeline() -> None:
        with GraphQLClient(stack.config()) as client:
            event = {
                "recount": {
                    "accountId": account,
                    "model": "Item",
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                }
            }
            t0 = time.perf_counter()
            response = pipeline.handle_event(event, config=stack.config(), client=client)
            _SECONDS[(size, impl)] = time.perf_counter() - t0
            assert response["status"] == "SUCCESS", response
            requests.append(client.request_count)

    def run_baseline() -> None:
        with GraphQLClient(stack.config()) as client:
            t0 = time.perf_counter()
            sequential_baseline(client, account, start, end)
            _SECONDS[(size, impl)] = time.perf_counter() - t0
            requests.append(client.request_count)

    target: Callable[[], None] = run_pipeline if impl == "pipeline" else run_baseline
    rounds = 3 if size <= 10_000 else 1
    benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1)
    benchmark.extra_info["http_requests"] = requests[-1]
    benchmark.extra_info["records"] = size
    # Every bucket is back at the truth after either implementation.
    stored = [m for m in stack.store.all_metrics(account) if m["recordType"] == "items"]
    assert sum(m["count"] for m in stored if m["numberOfMinutes"] == 60) == sum(
        1
        for r in stack.store.all_records("Item", account)
        if r.get("createdAt") and start.isoformat()[:13] == str(r["createdAt"])[:13]
    )
    other = "baseline" if impl == "pipeline" else "pipeline"
    if (size, other) in _SECONDS:
        ratio = _SECONDS[(size, "baseline")] / _SECONDS[(size, "pipeline")]
        benchmark.extra_info["baseline_over_pipeline"] = round(ratio, 1)
        print(
            f"\nend-to-end {size:,} records: pipeline {_SECONDS[(size, 'pipeline')]:.2f} s, "
            f"baseline {_SECONDS[(size, 'baseline')]:.2f} s -> {ratio:.1f}x (last round)"
        )


class CountingClient(GraphQLClient):
    """Counts the calls of each kind (a request may bundle several queries as aliases)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.kinds: Counter[str] = Counter()

    def execute(self, document: str, variables: Any = None, **kwargs: Any) -> Any:
        self.kinds[kwargs["kind"]] += 1
        return super().execute(document, variables, **kwargs)


FAMILIES = ("Item", "ScoreResult", "Task", "Evaluation", "Procedure", "ChatSession", "FeedbackItem")


def test_steady_state_requests(
    benchmark: Any, stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """One new record in an hour whose buckets already exist: HTTP requests per family."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = []
    for model in FAMILIES:
        account = f"steady-{model}"
        seed_records(
            stack.store,
            model,
            account,
            200,
            hour - timedelta(hours=1),
            max(now - timedelta(seconds=1), hour),
            seed=7,
            stream=False,
        )
        for h in (hour - timedelta(hours=1), hour):
            event = {
                "recount": {
                    "accountId": account,
                    "model": model,
                    "start": h.isoformat(),
                    "end": (h + timedelta(hours=1)).isoformat(),
                }
            }
            pipeline.handle_event(event, config=stack.config())
        table = f"{model}-local-NONE"
        after = stack.store.stream_end(table)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "accountId": account,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        if model == "FeedbackItem":
            record |= {
                "scorecardId": "sc-steady",
                "scoreId": "s-steady",
                "editedAt": stamp,
                "initialAnswerValue": "yes",
                "finalAnswerValue": "no",
            }
        if model == "Item":
            record["createdByType"] = "prediction"
        stack.store.create(model, record)
        event = {"Records": stack.store.read_stream(table, after, 10)}
        with CountingClient(stack.config()) as client:
            response = pipeline.handle_event(event, config=stack.config(), client=client)
        assert response == {"batchItemFailures": []}
        # The shared path's reads are "aliased-read" (several units' fields in one request).
        total = client.request_count
        reads = client.kinds["read"] + client.kinds["aliased-read"]
        rows.append((model, total, reads, total - reads))
        benchmark.extra_info[f"steady_requests_{model}"] = total
        benchmark.extra_info[f"steady_write_requests_{model}"] = total - reads
    benchmark.group = "steady state (figures in extra_info)"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures are the result
    with capsys.disabled():
        print("\nsteady state (one new record; buckets exist): HTTP requests per invocation")
        print(f"  {'family':<14}{'total':>7}{'reads':>7}{'writes':>8}")
        for model, total, reads, writes in rows:
            print(f"  {model:<14}{total:>7}{reads:>7}{writes:>8}")
