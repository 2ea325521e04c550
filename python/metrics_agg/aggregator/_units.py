"""Units of one invocation run side by side, their log lines kept together (issue 9).

Units are independent (one (model, account) each: different buckets, own failure), so an
invocation's latency is that of its slowest unit rather than the sum: what keeps a batch
of several accounts within seconds. The human log (docs/design.md §4.7) stays readable: while a
unit runs in a worker thread, the records it logs on the ``metrics_agg`` logger are held
back and handed on, in order, when it ends (one unit's block after another).
"""

from __future__ import annotations

__all__ = ["CountingApi", "run_side_by_side"]

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLApi, GraphQLResponse, Kind

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


class CountingApi:
    """A client seen through one unit: counts the requests that unit's work sends
    (`UnitOutcome.requests`; retries inside `execute` not counted), delegates the rest.
    Units side by side share one client, whose own count mixes them."""

    def __init__(self, client: GraphQLApi) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.sent = 0

    @property
    def config(self) -> Config:
        return self._client.config

    @property
    def request_count(self) -> int:
        return self._client.request_count

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        kind: Kind,
        deadline: Deadline | None = None,
    ) -> GraphQLResponse:
        with self._lock:
            self.sent += 1
        return self._client.execute(document, variables, kind=kind, deadline=deadline)

    def pause_before_retry(self, attempt: int, deadline: Deadline | None = None) -> bool:
        return self._client.pause_before_retry(attempt, deadline)

    def close(self) -> None:
        self._client.close()
