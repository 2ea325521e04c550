"""Units of one invocation run side by side, their log lines kept together (issue 9).

Units are independent (one (model, account) each: different buckets, own failure), so an
invocation's latency is that of its slowest unit rather than the sum: what keeps a batch
of several accounts within seconds. The human log (docs/design.md §4.7) stays readable: while a
unit runs in a worker thread, the records it logs on the ``metrics_agg`` logger are held
back and handed on, in order, when it ends (one unit's block after another).
"""

from __future__ import annotations

__all__ = ["run_side_by_side"]

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_log = logging.getLogger("metrics_agg")


class _HoldBack(logging.Filter):
    """Keeps the records of registered worker threads; passes everything else."""

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[int, list[logging.LogRecord]] = {}
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            buffer = self.held.get(threading.get_ident())
        if buffer is None:
            return True
        buffer.append(record)
        return False


def run_side_by_side(items: Sequence[T], run: Callable[[int, T], R], parallelism: int) -> list[R]:
    """``run(i, item)`` for every item (i from 1), at most ``parallelism`` at once;
    results in the order of ``items``. With one item or ``parallelism`` 1: inline."""
    if parallelism <= 1 or len(items) <= 1:
        return [run(i, item) for i, item in enumerate(items, 1)]
    hold = _HoldBack()
    release = threading.Lock()

    def task(i: int, item: T) -> R:
        me = threading.get_ident()
        with hold.lock:
            hold.held[me] = []
        try:
            return run(i, item)
        finally:
            with hold.lock:
                records = hold.held.pop(me)
            with release:
                for record in records:
                    _log.handle(record)

    _log.addFilter(hold)
    try:
        with ThreadPoolExecutor(
            max_workers=min(parallelism, len(items)), thread_name_prefix="metrics-agg-unit"
        ) as pool:
            futures = [pool.submit(task, i, item) for i, item in enumerate(items, 1)]
            return [f.result() for f in futures]
    finally:
        _log.removeFilter(hold)
