"""A monotonic deadline, so every stage stops before the Lambda is killed."""

from __future__ import annotations

__all__ = ["Deadline"]

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """Absolute point on ``time.monotonic()`` after which no new I/O may start.

    ``at=None`` means no deadline (CLI, tests).
    """

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def from_lambda_context(cls, context: object, *, reserve_seconds: float = 3.0) -> Deadline:
        """Leave ``reserve_seconds`` to log and return the report before Lambda's own timeout."""
        get_ms = getattr(context, "get_remaining_time_in_millis", None)
        if get_ms is None:
            return cls(None)
        return cls.after(max(0.0, get_ms() / 1000.0 - reserve_seconds))

    def remaining(self) -> float:
        """Seconds left (``inf`` without a deadline, never negative)."""
        if self.at is None:
            return float("inf")
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0
