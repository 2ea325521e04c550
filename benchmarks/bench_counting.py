"""Counting speed (docs/design.md §7): every implementation on the same inputs, one group per size.

    pytest benchmarks/bench_counting.py                       # 1k, 10k, 100k
    METRICS_AGG_BENCH_SIZES=1000,10000 pytest benchmarks --benchmark-disable   # CI smoke

Implementations (each times exactly one public call; inputs are built outside the
timing from a fixed seed):
- naive: the original per-record algorithm (`naive.py`), the baseline
- python: `count_buckets(list[str], backend="python")`
- rust: `count_buckets(list[str], backend="rust")`
- rust-records: `count_records(list[dict], category_field="createdByType", backend="rust")`
- python-records: the same with the pure-Python loop
- polars: Series from the list, `%+` parse, per-minute `value_counts`, sizes summed
- rust-floor: the extension's parser and counter looping over the same strings already
  copied into Rust (`_OwnedStrings`, built with the `bench` feature as bootstrap does),
  i.e. a standalone Rust loop with no Python objects

A debug build of the extension is refused (its `build_profile` says which it is).
The counters log one warning per call when inputs are invalid (1% here); that fixed cost
(tens of µs with a handler attached) is logging, not counting, so it is silenced here.
The summary table at the end prints ns/record and the ratios of docs/design.md §7.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from _counting_results import NS_PER_RECORD
from metrics_agg import count_buckets, count_records
from naive import count_naive

SIZES = tuple(
    int(s) for s in os.environ.get("METRICS_AGG_BENCH_SIZES", "1000,10000,100000").split(",")
)
IMPLS = ("naive", "python", "python-records", "polars", "rust", "rust-records", "rust-floor")
W0 = datetime(2024, 5, 7, 12, 0, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)
START = int((W0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) // 60
BUCKETS = (1, 5, 15, 60)


def _stamp(rng: random.Random, t: datetime) -> str | None:
    """AppSync-style mix: mostly `new Date().toISOString()` (ms, Z), some Python clients
    (µs, +00:00), whole seconds, other zones; a few missing or invalid."""
    k = rng.random()
    if k < 0.70:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if k < 0.80:
        return t.isoformat(timespec="microseconds")
    if k < 0.90:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if k < 0.98:
        local = t + timedelta(hours=5, minutes=30)
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+05:30"
    if k < 0.99:
        return None
    return rng.choice(["", "2024-05-07 12:61", "yesterday", "2024-05-07T12:00:00.1234567890Z"])


@cache
def inputs(n: int) -> tuple[list[str | None], list[dict[str, Any]]]:
    rng = random.Random(n)
    texts = []
    for _ in range(n):
        # ~2% fall just outside the hour on either side.
        t = W0 + timedelta(microseconds=rng.randrange(-36, 3636) * 10**6 + rng.randrange(10**6))
        texts.append(_stamp(rng, t))
    labels = rng.choices(["prediction", "evaluation", None], weights=[6, 3, 1], k=n)
    records = [
        {"id": f"item-{i}", "accountId": "acct-1", "createdAt": text, "createdByType": label}
        for i, (text, label) in enumerate(zip(texts, labels, strict=True))
    ]
    return texts, records


def _rust(required: bool) -> ModuleType | None:
    try:
        return importlib.import_module("metrics_agg._rust_counter")
    except ImportError:
        if required:
            pytest.fail("METRICS_AGG_REQUIRE_RUST=1 but metrics_agg._rust_counter is not built")
        return None


@pytest.fixture(autouse=True)
def _quiet_counting_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="metrics_agg.counting")


@pytest.fixture(scope="session")
def rust(request: pytest.FixtureRequest) -> ModuleType | None:
    module = _rust(os.environ.get("METRICS_AGG_REQUIRE_RUST") == "1")
    timing = not request.config.getoption("benchmark_disable", False)
    if module is not None and timing and module.build_profile != "release":
        pytest.exit(
            f"refusing to benchmark a {module.build_profile} build of the extension: "
            "rebuild with `bash scripts/bootstrap.sh test,bench`",
            returncode=2,
        )
    return module


def _target(impl: str, n: int, rust: ModuleType | None) -> Callable[[], object]:
    texts, records = inputs(n)
    if impl == "naive":
        return lambda: count_naive(texts, W0, W1, BUCKETS)
    if impl == "python":
        return lambda: count_buckets(texts, W0, W1, backend="python")
    if impl == "python-records":
        return lambda: count_records(
            records, W0, W1, category_field="createdByType", backend="python"
        )
    if impl == "polars":
        pl = pytest.importorskip("polars")

        def by_polars() -> list[list[int]]:
            parsed = pl.Series(texts, dtype=pl.String).str.to_datetime(
                format="%+", time_zone="UTC", strict=False
            )
            index = (parsed.dt.epoch("s") // 60 - START).drop_nulls()
            index = index.filter((index >= 0) & (index < 60))
            minutes = [0] * 60
            counted = index.value_counts()
            for i, c in zip(counted[:, 0].to_list(), counted[:, 1].to_list(), strict=True):
                minutes[i] = c
            return [[sum(minutes[i : i + s]) for i in range(0, 60, s)] for s in BUCKETS]

        return by_polars
    if rust is None:
        pytest.skip("metrics_agg._rust_counter is not built")
    if impl == "rust":
        return lambda: count_buckets(texts, W0, W1, backend="rust")
    if impl == "rust-records":
        return lambda: count_records(
            records, W0, W1, category_field="createdByType", backend="rust"
        )
    if not hasattr(rust, "_OwnedStrings"):
        pytest.skip("the extension was built without the `bench` feature (scripts/bootstrap.sh)")
    owned = rust._OwnedStrings([t if t is not None else "" for t in texts])
    return lambda: owned.count(start_minute=START, end_minute=START + 60, sizes=BUCKETS)


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n}")
@pytest.mark.parametrize("impl", IMPLS)
def test_counting(benchmark: Any, rust: ModuleType | None, impl: str, n: int) -> None:
    benchmark.group = f"count {n:,} records"
    benchmark.extra_info["records"] = n
    target = _target(impl, n, rust)
    if impl == "naive" and n >= 100_000:
        benchmark.pedantic(target, rounds=3, iterations=1, warmup_rounds=0)
    else:
        benchmark(target)
    if benchmark.stats is not None:
        ns = benchmark.stats.stats.median / n * 1e9
        benchmark.extra_info["ns_per_record"] = round(ns, 1)
        NS_PER_RECORD[(n, impl)] = ns


def test_implementations_agree() -> None:
    """Every benchmarked implementation counts the benchmark input the same way (except
    polars, whose `%+` rejects the no-seconds forms and is only timed)."""
    texts, records = inputs(min(SIZES))
    py = count_buckets(texts, W0, W1, backend="python")
    # The original algorithm (datetime.fromisoformat) also takes 10-digit fractions.
    strict = [t for t in texts if t is None or "1234567890" not in t]
    naive = count_naive(strict, W0, W1, BUCKETS)
    assert sum(c for (_, size), c in naive.items() if size == 60) == py.processed
    by_records = count_records(records, W0, W1, category_field="createdByType", backend="python")
    assert by_records.counts == py.counts
    if _rust(False) is not None:
        assert count_buckets(texts, W0, W1, backend="rust").counts == py.counts
