"""The one accepted timestamp grammar (docs/design.md §3) and the fixed-width UTC formatters.

Parsing here is the readable reference used outside the hot loop (planning, CLI
arguments, the local server's AWSDateTime validation). The counters (`_pycounter`,
the Rust extension) implement the same grammar for speed; tests pin all three together.
"""

from __future__ import annotations

__all__ = [
    "EPOCH",
    "epoch_minute",
    "format_bucket_time",
    "format_write_time",
    "from_epoch_minute",
    "parse_epoch_minute",
    "parse_instant",
    "parse_instant_or_none",
    "utc_now",
    "zone_offset_minutes",
]

import functools
import re
from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# ASCII digits only: `\d` would accept other Unicode digits.
_GRAMMAR = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(?:[Zz]|([+-])([0-9]{2})(:?)([0-9]{2}))?",
    re.ASCII,
)


def _fields(text: object) -> tuple[int, int, int, str] | None:
    """(UTC epoch minute, second, offset minutes east, fraction digits) or ``None``.

    Pure integer arithmetic: a valid local time whose offset moves it before year 1 or
    after 9999 is still a valid timestamp (docs/design.md §3 bounds the written fields), just
    outside every window.
    """
    if not isinstance(text, str):
        return None
    m = _GRAMMAR.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, sign, zh, _colon, zm = m.groups()
    hour, minute, second = int(h), int(mi), int(s or 0)
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        days = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None  # year 0000, month 13, 2023-02-29, ...
    offset = 0
    if sign is not None:
        if int(zh) > 23 or int(zm) > 59:
            return None
        offset = int(zh) * 60 + int(zm)
        if sign == "-":
            offset = -offset
    return days * 1440 + hour * 60 + minute - offset, second, offset, frac or ""


def parse_epoch_minute(text: object) -> int | None:
    """UTC epoch minute of a string of the accepted form (docs/design.md §3), else ``None``.

    This is the classification the counters implement: ``None`` means `invalid`.
    """
    fields = _fields(text)
    return None if fields is None else fields[0]


def zone_offset_minutes(text: object) -> int | None:
    """Zone offset, in minutes east of UTC, of a string of the accepted form, else ``None``.

    ``Z``, ``z``, no zone, ``+00:00``, ``-00:00`` and ``+0000`` are all 0. DynamoDB sorts
    sort keys as strings, so a non-zero offset moves a record away from its UTC place in
    the index (docs/design.md §4.3; see `graphql.reads.SORT_KEY_MARGIN`).
    """
    fields = _fields(text)
    return None if fields is None else fields[2]


def parse_instant_or_none(text: object) -> datetime | None:
    """Aware UTC datetime for a string of the accepted form, else ``None``.

    Second 60 (a leap second) stays in its minute: it maps to second 59 plus the
    fraction so it can never spill into the next minute's bucket. The fraction is
    truncated to microseconds. An accepted string whose instant falls outside
    ``datetime``'s range (``0001-01-01T00:00+01:00``) also gives ``None``; use
    ``parse_epoch_minute`` to tell it from an invalid one.
    """
    fields = _fields(text)
    if fields is None:
        return None
    minute, second, _offset, frac = fields
    micro = int((frac + "000000")[:6])  # truncate, never round
    try:
        return EPOCH + timedelta(minutes=minute, seconds=min(second, 59), microseconds=micro)
    except OverflowError:  # before year 1 or after 9999 once the offset is applied
        return None


def parse_instant(text: str) -> datetime:
    """Like ``parse_instant_or_none`` but for arguments a person typed.

    Raises:
        ValueError: the text is not of the accepted form; the message shows the form.
    """
    dt = parse_instant_or_none(text)
    if dt is None:
        raise ValueError(
            f"not an accepted timestamp: {text!r} "
            "(expected YYYY-MM-DDTHH:MM[:SS[.fffffffff]][Z|+hh:mm|-hhmm])"
        )
    return dt


@functools.lru_cache(maxsize=16384)
def epoch_minute(dt: datetime) -> int:
    """Whole minutes since the Unix epoch (floor), for an aware datetime (memoised: bucket
    starts recur across every row of a unit)."""
    return (dt - EPOCH) // timedelta(minutes=1)


def from_epoch_minute(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


@functools.lru_cache(maxsize=16384)
def format_bucket_time(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: bucket bounds and composite keys (docs/design.md §2; memoised:
    every composite key formats its bucket start)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_write_time(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: one width, so DynamoDB string order is time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)
