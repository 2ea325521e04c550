"""The per-record algorithm of the original design: the baseline the counters are measured against.

Per record: parse the timestamp to a ``datetime``; for each bucket size compute the
aligned bucket start as a ``datetime``; increment a dict keyed by (start, size).
"""

from __future__ import annotations

__all__ = ["count_naive"]

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def count_naive(
    timestamps: Iterable[object],
    window_start: datetime,
    window_end: datetime,
    sizes: Sequence[int] = (1, 5, 15, 60),
) -> dict[tuple[datetime, int], int]:
    counts: dict[tuple[datetime, int], int] = defaultdict(int)
    for text in timestamps:
        if not isinstance(text, str) or not text:
            continue
        instant = _parse(text)
        if instant is None or not window_start <= instant < window_end:
            continue
        for size in sizes:
            minutes = (instant - _EPOCH) // timedelta(minutes=1)
            start = _EPOCH + timedelta(minutes=minutes - minutes % size)
            counts[(start, size)] += 1
    return counts
