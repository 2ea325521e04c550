"""What counting errors costs (issue 13): `count_records` over ScoreResult-shaped records with
and without the model's error rules, per backend, in one run.

    pytest benchmarks/bench_errors.py                     # 10k, 100k
    METRICS_AGG_BENCH_SIZES=1000 pytest benchmarks/bench_errors.py --benchmark-disable

The rules are ScoreResult's defaults (`code` >= 400, or `status == "error"`): one or two
more lookups per counted record, in the same pass. Inputs come from a fixed seed, built
outside the timing; a debug build of the extension is refused.
"""

from __future__ import annotations

import os
import random
from functools import cache
from typing import Any

import pytest

from metrics_agg import count_records
from metrics_agg.models import SOURCE_MODELS

SIZES = tuple(int(s) for s in os.environ.get("METRICS_AGG_BENCH_SIZES", "10000,100000").split(","))
RULES = SOURCE_MODELS["ScoreResult"].errors


@cache
def records(n: int) -> list[dict[str, Any]]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        minute, second = rng.randrange(60), rng.randrange(60)
        out.append(
            {
                "id": f"sr-{i}",
                "accountId": "acct-1",
                "updatedAt": f"2024-05-07T12:{minute:02d}:{second:02d}.{rng.randrange(1000):03d}Z",
                "type": rng.choice(["prediction", "evaluation"]),
                "code": rng.choices(["200", "500", "404"], weights=[92, 5, 3])[0],
                "status": rng.choices(["synced", "error"], weights=[97, 3])[0],
            }
        )
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("rules", ["none", "ScoreResult"])
@pytest.mark.parametrize("backend", ["rust", "python"])
def test_count_records_with_error_rules(
    benchmark: Any, backend: str, rules: str, size: int
) -> None:
    if backend == "rust":
        from metrics_agg import _rust_counter

        if _rust_counter.build_profile != "release":
            pytest.skip("benchmarks need a release build of the extension")
    data = records(size)
    benchmark.group = f"errors {size:,} records"
    result = benchmark(
        count_records,
        data,
        "2024-05-07T12:00Z",
        "2024-05-07T13:00Z",
        fields=("updatedAt",),
        category_field="type",
        errors=RULES if rules != "none" else None,
        backend=backend,
    )
    assert result.processed == size
    assert (result.error_counts is None) == (rules == "none")
