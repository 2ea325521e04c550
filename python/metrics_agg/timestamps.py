"""The one accepted timestamp grammar (DESIGN §3) and the fixed-width UTC formatters.

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
    "parse_instant",
    "parse_instant_or_none",
    "utc_now",
]

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# ASCII digits only: `\d` would accept other Unicode digits.
_GRAMMAR = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2})"
    r"(?::(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,9}))?)?"
    r"(?P<z>[Zz]|[+-][0-9]{2}:?[0-9]{2})?",
    re.ASCII,
)


def parse_instant_or_none(text: object) -> datetime | None:
    """Aware UTC datetime for a string of the accepted form, else ``None``.

    Second 60 (a leap second) stays in its minute: it maps to second 59 plus the
    fraction so it can never spill into the next minute's bucket.
    """
    if not isinstance(text, str):
        return None
    m = _GRAMMAR.fullmatch(text)
    if m is None:
        return None
    zone = m["z"]
    if zone is not None and len(zone) == 6 and zone[3] != ":":
        return None  # "+hh:mm" or "+hhmm", never "+hhm:m"
    second = int(m["s"] or 0)
    if second > 60:
        return None
    frac = m["f"] or ""
    micro = int((frac + "000000")[:6])  # truncate, never round
    try:
        dt = datetime(
            int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
            min(second, 59), micro, tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone is not None and zone not in ("Z", "z"):
        zh, zm = int(zone[1:3]), int(zone[-2:])
        if zh > 23 or zm > 59:
            return None
        offset = timedelta(hours=zh, minutes=zm)
        try:
            dt = dt - offset if zone[0] == "+" else dt + offset
        except OverflowError:
            return None
    return dt


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


def epoch_minute(dt: datetime) -> int:
    """Whole minutes since the Unix epoch (floor), for an aware datetime."""
    return (dt - EPOCH) // timedelta(minutes=1)


def from_epoch_minute(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


def format_bucket_time(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: bucket bounds and composite keys (DESIGN §2)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_write_time(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: one width, so DynamoDB string order is time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)
