"""The accepted timestamp grammar (docs/design.md §3) as `metrics_agg.timestamps` implements it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from metrics_agg.timestamps import (
    EPOCH,
    epoch_minute,
    format_bucket_time,
    format_write_time,
    from_epoch_minute,
    parse_epoch_minute,
    parse_instant,
    parse_instant_or_none,
    utc_now,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:34", utc(2024, 5, 1, 12, 34)),
        ("2024-05-01t12:34z", utc(2024, 5, 1, 12, 34)),
        ("2024-05-01 12:34:56", utc(2024, 5, 1, 12, 34, 56)),
        ("2024-05-01T12:34:56.7Z", utc(2024, 5, 1, 12, 34, 56, 700000)),
        ("2024-05-01T12:34:56.123456789Z", utc(2024, 5, 1, 12, 34, 56, 123456)),
        ("2024-05-01T12:34:56.9999999+00:00", utc(2024, 5, 1, 12, 34, 56, 999999)),
        ("2024-05-01T12:34:60.5Z", utc(2024, 5, 1, 12, 34, 59, 500000)),
        ("2024-05-01T00:30:00+01:00", utc(2024, 4, 30, 23, 30)),
        ("2024-12-31T23:30:00-0100", utc(2025, 1, 1, 0, 30)),
        ("2024-02-29T23:59-23:59", utc(2024, 3, 1, 23, 58)),
        ("0001-01-01T00:00Z", utc(1, 1, 1)),
        ("9999-12-31T23:59:59.999999Z", utc(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_parse_instant_accepts(text: str, expected: datetime) -> None:
    assert parse_instant_or_none(text) == expected
    assert parse_instant(text) == expected
    assert parse_epoch_minute(text) == epoch_minute(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-01",
        "2024-05-01T12:34:56.1234567890Z",
        "2024-05-01T12:34:61Z",
        "2024-05-01T24:00Z",
        "2023-02-29T00:00Z",
        "0000-01-01T00:00Z",
        "2024-05-01T12:34:56+24:00",
        "2024-05-01T12:34:56+01:60",
        "2024-05-01T12:34:56+1:00",
        "2024-05-01T12:34:56+01",
        " 2024-05-01T12:34",
        "2024-05-01T12:34\n",
        "2024-05-01T12:3\u0664",
        "２０２４-05-01T12:34",
        "2024-05-01T12:34:56,5Z",
    ],
)
def test_parse_instant_rejects(text: str) -> None:
    assert parse_instant_or_none(text) is None
    assert parse_epoch_minute(text) is None
    with pytest.raises(ValueError, match="not an accepted timestamp"):
        parse_instant(text)


@pytest.mark.parametrize("value", [None, 1714567890, b"2024-05-01T12:34Z", ["x"]])
def test_non_strings_are_not_timestamps(value: object) -> None:
    assert parse_instant_or_none(value) is None
    assert parse_epoch_minute(value) is None


def test_instant_outside_datetime_range_is_still_valid() -> None:
    # Valid fields, but the offset moves the instant before year 1 / after 9999: the
    # counters call it outside_window, never invalid (docs/design.md §3 bounds the fields).
    before = parse_epoch_minute("0001-01-01T00:00+00:01")
    after = parse_epoch_minute("9999-12-31T23:59-00:01")
    assert before == epoch_minute(utc(1, 1, 1)) - 1
    assert after == epoch_minute(utc(9999, 12, 31, 23, 59)) + 1
    assert parse_instant_or_none("0001-01-01T00:00+00:01") is None


def test_epoch_minute_round_trip() -> None:
    for dt in (utc(1970, 1, 1), utc(1969, 12, 31, 23, 59, 59), utc(2024, 5, 1, 12, 34, 56)):
        minute = epoch_minute(dt)
        assert from_epoch_minute(minute) <= dt < from_epoch_minute(minute + 1)
    assert epoch_minute(EPOCH - timedelta(seconds=1)) == -1


def test_formatters_have_fixed_width() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    dt = datetime(2024, 5, 1, 18, 4, 5, tzinfo=east)
    assert format_bucket_time(dt) == "2024-05-01T12:34:05Z"
    assert format_write_time(dt) == "2024-05-01T12:34:05.000000Z"
    assert len(format_write_time(utc(2024, 5, 1, 1, 2, 3, 4))) == 27
    assert utc_now().tzinfo is not None
