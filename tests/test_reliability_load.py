"""Load, fast part (issue 6): sustained writes through the API with the event source
mapping on, then quiescence; and concurrent invocations on overlapping windows.

The lag figures are reported (printed with -s, and by scripts/reliability.py), never
asserted. `python scripts/reliability.py --long` runs the same load for two minutes.
"""

from __future__ import annotations

from collections.abc import Callable

from metrics_agg.local.server import LocalClient, LocalStack
from reliability_harness import run_concurrent, run_load


def test_sustained_writes_end_exact(make_local_stack: Callable[..., LocalStack]) -> None:
    report = run_load(make_local_stack, seconds=8, accounts=3, writers=3)
    print(report.summary())
    assert report.writes > 50 and report.deletes and report.updates and report.late
    assert report.undelivered == 0 and report.on_failure == 0
    assert not report.mismatches, "\n".join(report.mismatches[:30])
    assert report.drift_repaired == 0  # the reconcile after quiescence found nothing to fix


def test_concurrent_overlapping_invocations_end_exact(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    problems = run_concurrent(local_stack, local_client, rounds=1, threads=2)
    assert not problems, "\n".join(problems[:30])
