"""Failures on purpose, and request counts: the switches other workstreams' tests flip.

    stack.faults.add(field="listItemByAccountIdAndCreatedAt", nth=2, action="http_503")
    stack.faults.add(field="updateAggregatedMetrics", action="alias_errors", aliases=("m1",))
    stack.faults.requests, stack.faults.field_requests["createAggregatedMetrics"]

A rule counts the requests that contain its top-level `field` (any request when None) and
fires on matching requests number nth .. nth+times-1 (times=None: every one from nth on).
"""

from __future__ import annotations

__all__ = ["ACTIONS", "Fault", "FaultPlan"]

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ACTIONS = frozenset(
    {
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_429",
        "http_400",
        "http_403",
        "timeout",  # hold the request `delay` seconds (default 30), then reset it
        "delay",  # hold the request `delay` seconds, then serve it normally
        "reset",  # close the connection without a response
        "malformed_json",  # HTTP 200 with a truncated JSON body
        "graphql_error",  # HTTP 200, data null, one request-level error
        "alias_errors",  # the listed aliases (all when None) fail; others succeed
    }
)


@dataclass(slots=True)
class Fault:
    action: str
    field: str | None = None
    nth: int = 1
    times: int | None = 1
    retry_after: float | None = None
    delay: float | None = None
    error_type: str | None = None
    message: str | None = None
    aliases: tuple[str, ...] | None = None
    seen: int = 0
    fired: int = 0

    @property
    def status(self) -> int | None:
        return int(self.action[5:]) if self.action.startswith("http_") else None

    def _take(self) -> bool:
        self.seen += 1
        last = None if self.times is None else self.nth + self.times - 1
        if self.seen >= self.nth and (last is None or self.seen <= last):
            self.fired += 1
            return True
        return False


@dataclass
class FaultPlan:
    """Thread-safe fault rules plus request counters, shared by the app and the tests."""

    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    field_requests: Counter[str] = field(default_factory=Counter)  # requests naming a field
    field_calls: Counter[str] = field(default_factory=Counter)  # top-level selections (aliases)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self,
        field: str | None = None,
        *,
        action: str,
        nth: int = 1,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        error_type: str | None = None,
        message: str | None = None,
        aliases: Sequence[str] | None = None,
    ) -> Fault:
        """Add a rule; returns it (its `seen`/`fired` counters are live).

        Raises:
            ValueError: unknown action, or nth < 1.
        """
        if action not in ACTIONS and not (action.startswith("http_") and action[5:].isdigit()):
            raise ValueError(f"unknown fault action {action!r}; one of {sorted(ACTIONS)}")
        if nth < 1:
            raise ValueError("nth counts from 1")
        fault = Fault(
            action,
            field,
            nth,
            times,
            retry_after,
            delay,
            error_type,
            message,
            tuple(aliases) if aliases is not None else None,
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.field_requests.clear()
            self.field_calls.clear()

    def record(self, fields: Iterable[str]) -> Fault | None:
        """Count one request with these top-level fields; the first rule that fires, if any."""
        names = list(fields)
        with self._lock:
            self.requests += 1
            self.field_calls.update(names)
            unique = set(names)
            self.field_requests.update(unique)
            chosen: Fault | None = None
            for fault in self.faults:
                if (
                    (fault.field is None or fault.field in unique)
                    and fault._take()
                    and (chosen is None)
                ):
                    chosen = fault
            return chosen
