"""Run I/O tasks on threads; the first failure cancels the rest and is re-raised."""

from __future__ import annotations

__all__ = ["Cancelled", "run_all"]

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a task that saw the stop flag; its result is never used."""


def run_all(tasks: Sequence[Callable[[threading.Event], T]], parallelism: int) -> list[T]:
    """Results in task order. Each task gets a stop flag to check between requests.

    Any task's exception sets the flag, cancels tasks not yet started, waits for the
    running ones to reach their next check, and is re-raised: never partial results.
    """
    stop = threading.Event()
    workers = max(1, min(parallelism, len(tasks)))
    if workers == 1:
        return [task(stop) for task in tasks]
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics-agg-io")
    try:
        futures: list[Future[T]] = [executor.submit(task, stop) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        failed.sort(key=lambda f: isinstance(f.exception(), Cancelled))
        if failed:
            stop.set()
            first = failed[0].exception()
            assert first is not None
            raise first
        return [f.result() for f in futures]
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
