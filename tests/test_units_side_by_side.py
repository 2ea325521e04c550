"""Units of one invocation run side by side, each unit's log lines kept together (issue 9)."""

from __future__ import annotations

import logging
import threading

import pytest

from metrics_agg.aggregator._units import run_side_by_side

_log = logging.getLogger("metrics_agg")


def test_units_run_at_once_and_log_in_blocks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    barrier = threading.Barrier(3)

    def run(i: int, item: str) -> str:
        _log.info("start %s", item)
        barrier.wait(5)  # only passes when all three are in flight at once
        _log.info("end %s", item)
        return f"{i}:{item}"

    assert run_side_by_side(["a", "b", "c"], run, 3) == ["1:a", "2:b", "3:c"]
    messages = [r.getMessage() for r in caplog.records if r.name == "metrics_agg"]
    assert sorted(messages) == sorted(f"{w} {x}" for x in "abc" for w in ("start", "end"))
    for item in "abc":
        first = messages.index(f"start {item}")
        assert messages[first + 1] == f"end {item}", messages


def test_one_at_a_time_runs_inline() -> None:
    seen: list[str] = []
    out = run_side_by_side(
        ["x", "y"], lambda i, s: seen.append(threading.current_thread().name) or s, 1
    )
    assert out == ["x", "y"] and set(seen) == {threading.current_thread().name}


def test_a_raising_unit_raises_after_the_others_finish() -> None:
    done: list[int] = []

    def run(i: int, item: int) -> int:
        if item == 2:
            raise RuntimeError("bug")
        done.append(item)
        return item

    with pytest.raises(RuntimeError, match="bug"):
        run_side_by_side([1, 2, 3], run, 3)
    assert sorted(done) == [1, 3]
