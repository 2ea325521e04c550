"""Run I/O tasks on threads; the first failure cancels the rest and is re-raised."""

from __future__ import annotations

__all__ = ["Cancelled", "run_all", "run_expanding"]

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeAlias, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


# A task of run_expanding: returns its result and the tasks it found more work for.
Expanding: TypeAlias = Callable[[threading.Event], "tuple[R, Sequence[Expanding[R]]]"]


def run_expanding(tasks: Sequence[Expanding[R]], parallelism: int) -> list[R]:
    """Like `run_all`, but a task may return more tasks; all share one pool.

    Results come in completion order. The first exception stops everything (the stop
    flag is set, queued tasks are cancelled) and is re-raised: never partial results.
    """
    stop = threading.Event()
    results: list[R] = []
    if parallelism <= 1:
        queue = list(tasks)
        while queue:
            result, more = queue.pop(0)(stop)
            results.append(result)
            queue.extend(more)
        return results
    executor = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="metrics-agg-io")
    try:
        pending: set[Future[tuple[R, Sequence[Expanding[R]]]]] = {
            executor.submit(task, stop) for task in tasks
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                stop.set()
                failed.sort(key=lambda f: isinstance(f.exception(), Cancelled))
                first = failed[0].exception()
                assert first is not None
                raise first
            for f in done:
                result, more = f.result()
                results.append(result)
                pending.update(executor.submit(task, stop) for task in more)
        return results
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
