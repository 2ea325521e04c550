"""Both loops against each other and against an independent `datetime` reference.

The reference below shares no code with the package: it tries every way a string could
split into head / seconds / fraction / zone (rather than deciding from the last byte as
the counters do) and places instants with `datetime` arithmetic. `METRICS_AGG_FUZZ=1`
(or `METRICS_AGG_FUZZ_EXAMPLES=N`, for long runs; see test_reliability_bad_input.py)
runs many more examples.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_counter import require_rust
from metrics_agg import count_buckets, count_records
from metrics_agg.counter import _pycounter

EXAMPLES = int(
    os.environ.get("METRICS_AGG_FUZZ_EXAMPLES")
    or (2000 if os.environ.get("METRICS_AGG_FUZZ") == "1" else 120)
)
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the reference -----------------------------------------------------------------------

MISSING, INVALID, FAR = "missing", "invalid", "far"  # FAR: valid, beyond datetime's range
DIGITS = "0123456789"
NAIVE_EPOCH = datetime(1970, 1, 1)


def _num(text: str) -> int | None:
    return int(text) if text and all(c in DIGITS for c in text) else None


def _zone(text: str) -> int | None:
    """Minutes east for '', Z, z, +hh:mm, -hh:mm, +hhmm, -hhmm; None otherwise."""
    if text in ("", "Z", "z"):
        return 0
    if len(text) not in (5, 6) or text[0] not in "+-":
        return None
    hh, mm = text[1:3], text[-2:]
    if len(text) == 6 and text[3] != ":":
        return None
    h, m = _num(hh), _num(mm)
    if h is None or m is None or h > 23 or m > 59:
        return None
    return (h * 60 + m) * (1 if text[0] == "+" else -1)


def _seconds(text: str) -> bool:
    """'', ':ss' or ':ss.f{1,9}' with ss <= 60."""
    if text == "":
        return True
    if text[:1] != ":":
        return False
    ss, dot, frac = text[1:3], text[3:4], text[4:]
    sec = _num(ss)
    if sec is None or len(ss) != 2 or sec > 60:
        return False
    if dot == "" and frac == "":
        return True
    return dot == "." and 1 <= len(frac) <= 9 and _num(frac) is not None


def reference_minute(value: object) -> int | str:
    if value is None:
        return MISSING
    if not isinstance(value, str):
        return INVALID
    text = str.__str__(value)
    if text == "":
        return MISSING
    head = text[:16]
    if len(head) != 16 or head[4] + head[7] + head[13] != "--:" or head[10] not in "Tt ":
        return INVALID
    parts = [
        _num(head[0:4]),
        _num(head[5:7]),
        _num(head[8:10]),
        _num(head[11:13]),
        _num(head[14:16]),
    ]
    if any(p is None for p in parts):
        return INVALID
    y, mo, d, h, mi = (p for p in parts if p is not None)
    try:
        local = datetime(y, mo, d, h, mi)
    except ValueError:
        return INVALID
    rest = text[16:]
    for cut in range(len(rest) + 1):
        offset = _zone(rest[cut:])
        if offset is not None and _seconds(rest[:cut]):
            try:
                utc = local - timedelta(minutes=offset)
            except OverflowError:
                return FAR
            return (utc - NAIVE_EPOCH) // timedelta(minutes=1)
    return INVALID


def reference_count(
    values: Sequence[object],
    start: int,
    end: int,
    sizes: Sequence[int],
    labels: Sequence[object] | None = None,
) -> dict[str, Any]:
    tallies = {"processed": 0, "missing": 0, "invalid": 0, "outside_window": 0}
    counts = {size: [0] * ((end - start) // size) for size in sizes}
    categories: dict[object, dict[int, list[int]]] = {}
    for position, value in enumerate(values):
        minute = reference_minute(value)
        if minute == MISSING:
            tallies["missing"] += 1
        elif minute == INVALID:
            tallies["invalid"] += 1
        elif minute == FAR or not start <= minute < end:  # type: ignore[operator]
            tallies["outside_window"] += 1
        else:
            tallies["processed"] += 1
            assert isinstance(minute, int)
            per = counts
            if labels is not None:
                label = labels[position]
                key = label if isinstance(label, str) else None
                per = categories.setdefault(
                    key, {size: [0] * ((end - start) // size) for size in sizes}
                )
            for size in sizes:
                bucket = (minute // size * size - start) // size
                per[size][bucket] += 1
                if per is not counts:
                    counts[size][bucket] += 1
    return {**tallies, "counts": counts, "categories": categories}


def summary(result: Any) -> dict[str, Any]:
    return {
        "processed": result.processed,
        "missing": result.missing,
        "invalid": result.invalid,
        "outside_window": result.outside_window,
        "counts": dict(result.counts),
        "categories": {k: dict(v) for k, v in result.category_counts.items()},
    }


# --- strategies --------------------------------------------------------------------------

ANCHORS = [
    datetime(2024, 5, 7, 12, 0),
    datetime(2024, 2, 29, 23, 30),  # leap day
    datetime(2023, 12, 31, 23, 30),  # year end
    datetime(2100, 2, 28, 23, 0),  # not a leap year
    datetime(2000, 2, 29, 0, 30),
    datetime(1970, 1, 1, 0, 0),  # the epoch itself
    datetime(1969, 12, 31, 23, 0),  # negative epoch minutes
    datetime(1, 1, 1, 0, 30),  # offsets push it before year 1
    datetime(9999, 12, 31, 23, 0),  # ... or after 9999
]

FIRST_MINUTE = (datetime(1, 1, 1) - NAIVE_EPOCH) // timedelta(minutes=1)
LAST_MINUTE = (datetime(9999, 12, 31, 23) - NAIVE_EPOCH) // timedelta(minutes=1)
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59)


@st.composite
def valid_texts(draw: st.DrawFn, anchor: datetime) -> str:
    delta = draw(st.integers(-180, 180))
    try:
        local = anchor + timedelta(minutes=delta)
    except OverflowError:
        local = anchor
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    text += draw(st.sampled_from("Tt ")) + f"{local.hour:02d}:{local.minute:02d}"
    if draw(st.booleans()):
        text += f":{draw(st.sampled_from([0, 1, 30, 59, 60])):02d}"
        if draw(st.booleans()):
            text += "." + draw(st.text(DIGITS, min_size=1, max_size=9))
    zone = draw(st.sampled_from(["", "Z", "z", "colon", "compact"]))
    if zone in ("colon", "compact"):
        offset = draw(offsets)
        sign = "+" if offset >= 0 else "-"
        hh, mm = divmod(abs(offset), 60)
        text += f"{sign}{hh:02d}:{mm:02d}" if zone == "colon" else f"{sign}{hh:02d}{mm:02d}"
    else:
        text += zone
    return text


NOISE = [
    "",
    " ",
    "\t",
    "\n",
    "0",
    "9",
    "٤",
    "０",
    ":",
    ".",
    "+",
    "-",
    "Z",
    "T",
    "é",
    "\ud800",
    "0000000000",
]


@st.composite
def near_misses(draw: st.DrawFn, anchor: datetime) -> str:
    text = draw(valid_texts(anchor))
    at = draw(st.integers(0, len(text)))
    kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "wrap"]))
    piece = draw(st.sampled_from(NOISE))
    if kind == "insert":
        return text[:at] + piece + text[at:]
    if kind == "delete":
        return text[:at] + text[at + 1 :]
    if kind == "replace":
        return text[:at] + piece + text[at + 1 :]
    if kind == "truncate":
        return text[:at]
    return piece + text + draw(st.sampled_from(NOISE))


def values_for(anchor: datetime) -> st.SearchStrategy[object]:
    return st.one_of(
        valid_texts(anchor),
        valid_texts(anchor),
        near_misses(anchor),
        st.text(max_size=40),
        st.from_regex(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,10})?)?"
            r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?",
            fullmatch=True,
        ),
        st.none(),
        st.just(""),
        st.integers(),
        st.floats(allow_nan=False),
        st.binary(max_size=20),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[object], int, int, tuple[int, ...], list[object]]:
    anchor = draw(st.sampled_from(ANCHORS))
    values = draw(st.lists(values_for(anchor), max_size=40))
    sizes = draw(st.sampled_from([(1, 5, 15, 60), (60,), (1,), (2, 10), (3, 6, 30)]))
    lcm = 60 if 60 in sizes else 30
    anchor_minute = (anchor - NAIVE_EPOCH) // timedelta(minutes=1)
    start = (anchor_minute // lcm + draw(st.integers(-3, 1))) * lcm
    end = start + lcm * draw(st.integers(1, 4))
    # Keep the window itself inside datetime's range (both limits are multiples of 60).
    start, end = max(start, FIRST_MINUTE), min(end, LAST_MINUTE)
    if end <= start:
        start, end = (start, start + lcm) if start == FIRST_MINUTE else (end - lcm, end)
    labels = draw(
        st.lists(
            st.sampled_from(["prediction", "evaluation", None, 3, "é", "\ud800"]),
            min_size=len(values),
            max_size=len(values),
        )
    )
    return values, start, end, sizes, labels


def loops() -> list[Any]:
    return [_pycounter, require_rust()]


def window(start: int, end: int) -> tuple[datetime, datetime]:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + timedelta(minutes=start), epoch + timedelta(minutes=end)


# --- properties --------------------------------------------------------------------------


@fuzz
@given(cases())
def test_backends_agree_with_reference(case: tuple[Any, ...]) -> None:
    values, start, end, sizes, labels = case
    rust = require_rust()
    expected = reference_count(values, start, end, sizes)
    expected_cat = reference_count(values, start, end, sizes, labels)
    w0, w1 = window(start, end)
    results = {}
    for backend in ("python", "rust"):
        plain = count_buckets(values, w0, w1, sizes=sizes, backend=backend)  # type: ignore[arg-type]
        assert summary(plain) == {**expected, "categories": {}}, backend
        for size in sizes:
            assert sum(plain.counts[size]) == plain.processed
        cat = count_buckets(values, w0, w1, sizes=sizes, categories=labels, backend=backend)  # type: ignore[arg-type]
        assert summary(cat) == expected_cat, backend
        results[backend] = (plain, cat)
    py, rs = results["python"], results["rust"]
    assert py[0].invalid_examples == rs[0].invalid_examples
    assert list(py[1].category_counts) == list(rs[1].category_counts)  # same first-seen order
    assert rust.build_profile in ("debug", "release")


@fuzz
@given(cases(), st.data())
def test_record_backends_agree(case: tuple[Any, ...], data: st.DataObject) -> None:
    values, start, end, sizes, labels = case
    require_rust()
    fields = ("editedAt", "updatedAt")
    records: list[object] = []
    flat: list[object] = []
    for value, label in zip(values, labels, strict=True):
        shape = data.draw(st.sampled_from(["first", "second", "empty-first", "none", "nondict"]))
        record: dict[str, object]
        if shape == "first":
            record = {"editedAt": value, "updatedAt": "2024-05-07T12:00Z"}
        elif shape == "second":
            record = {"updatedAt": value}
        elif shape == "empty-first":
            record = {"editedAt": data.draw(st.sampled_from([None, ""])), "updatedAt": value}
        elif shape == "none":
            record = {"id": "x"}
        else:
            records.append(value)
            flat.append(object())  # not a mapping: invalid
            continue
        record["type"] = label
        records.append(record)
        decided = value if shape != "none" else None
        if shape == "second" and value in (None, ""):
            decided = None
        if shape == "first" and (value is None or value == ""):
            decided = "2024-05-07T12:00Z"
        flat.append(decided)
    flat_labels = [r.get("type") if isinstance(r, dict) else None for r in records]
    expected = reference_count(flat, start, end, sizes, flat_labels)
    w0, w1 = window(start, end)
    got = [
        count_records(
            records, w0, w1, fields=fields, category_field="type", sizes=sizes, backend=backend
        )  # type: ignore[arg-type]
        for backend in ("python", "rust")
    ]
    assert summary(got[0]) == expected
    assert summary(got[1]) == expected
    assert got[0].invalid_examples == got[1].invalid_examples


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(st.text(max_size=40), near_misses(ANCHORS[0]), near_misses(ANCHORS[7])))
def test_grammar_matches_on_arbitrary_text(text: str) -> None:
    rust = require_rust()
    minute = reference_minute(text)
    start = minute if isinstance(minute, int) else 0
    expected = {MISSING: (0, 1, 0, 0), INVALID: (0, 0, 1, 0), FAR: (0, 0, 0, 1)}.get(
        minute if isinstance(minute, str) else "", (1, 0, 0, 0)
    )
    for loop in (_pycounter, rust):
        result = loop.count_strings([text], start_minute=start, end_minute=start + 1, sizes=[1])
        assert tuple(result[:4]) == expected, loop


def test_window_too_large_for_memory(backend: str) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(MemoryError, match="too large"):
        count_buckets([], epoch, epoch + timedelta(days=366 * 300), sizes=(60,), backend=backend)  # type: ignore[arg-type]


# --- the hand-written corpus ------------------------------------------------------------

W0 = datetime(2024, 5, 7, 0, 0, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)
OUTSIDE = "outside"

CORPUS: list[tuple[object, str | int]] = [
    # (value, expected): an int is the processed minute of the window [00:00, 01:00).
    ("2024-05-07T00:00Z", 0),
    ("2024-05-07t00:01z", 1),
    ("2024-05-07 00:02", 2),
    ("2024-05-07T00:03:04", 3),
    ("2024-05-07T00:04:05.6Z", 4),
    ("2024-05-07T00:05:05.123456789Z", 5),
    ("2024-05-07T00:06:05.1234567890Z", INVALID),  # 10 fraction digits
    ("2024-05-07T00:07:60Z", 7),  # leap second stays in its minute
    ("2024-05-07T00:07:60.999999999Z", 7),
    ("2024-05-07T00:07:61Z", INVALID),
    ("2024-05-07T01:08+01:00", 8),
    ("2024-05-07T01:09+0100", 9),
    ("2024-05-06T23:10-0100", 10),
    ("2024-05-06T23:11:00.5-01:00", 11),
    ("2024-05-07T00:12:00+00:00", 12),
    ("2024-05-07T00:13-00:00", 13),
    ("2024-05-07T23:44+23:30", 14),
    ("2024-05-06T00:15-23:44", OUTSIDE),  # 23:59 the day before
    ("2024-05-06T00:15-23:59", 14),
    ("2024-05-07T00:59:59.999999999Z", 59),
    ("2024-05-07T01:00:00Z", OUTSIDE),
    ("2024-05-06T23:59:59.999999999Z", OUTSIDE),
    ("0001-01-01T00:00+00:01", OUTSIDE),
    ("9999-12-31T23:59-23:59", OUTSIDE),
    ("0000-01-01T00:00Z", INVALID),
    ("2023-02-29T00:00Z", INVALID),
    ("2024-02-30T00:00Z", INVALID),
    ("2024-05-07T24:00Z", INVALID),
    ("2024-05-07T00:60Z", INVALID),
    ("2024-05-07T00:16+24:00", INVALID),
    ("2024-05-07T00:16+00:60", INVALID),
    ("2024-05-07T00:16+1:00", INVALID),
    ("2024-05-07T00:16+01", INVALID),
    ("2024-05-07T00:16+01:0", INVALID),
    ("2024-05-07T00:16+0100Z", INVALID),
    ("2024-05-07T00:16:00.Z", INVALID),
    ("2024-05-07T00:16:0Z", INVALID),
    ("2024-05-07T00:16:", INVALID),
    ("2024-05-07T00:16.5", INVALID),
    ("2024-05-07T00:16:00,5Z", INVALID),
    ("2024-05-07X00:16Z", INVALID),
    ("2024-5-07T00:16Z", INVALID),
    (" 2024-05-07T00:16Z", INVALID),
    ("2024-05-07T00:16Z ", INVALID),
    ("2024-05-07T00:16Z\n", INVALID),
    ("2024-05-07T00:1\u0666Z", INVALID),  # Arabic-Indic digit
    ("２０２４-05-07T00:16Z", INVALID),  # fullwidth digits
    ("2024-05-07T00:16\ud800", INVALID),
    ("2024-05-07", INVALID),
    ("20240507T0016Z", INVALID),
    ("", MISSING),
    (None, MISSING),
    (0, INVALID),
    (1714000000.0, INVALID),
    (b"2024-05-07T00:16Z", INVALID),
    (["2024-05-07T00:16Z"], INVALID),
]


@pytest.mark.parametrize(("value", "expected"), CORPUS, ids=[repr(v)[:40] for v, _ in CORPUS])
def test_corpus(backend: str, value: object, expected: str | int) -> None:
    r = count_buckets([value], W0, W1, backend=backend)  # type: ignore[arg-type]
    got = {
        "processed": r.processed,
        "missing": r.missing,
        "invalid": r.invalid,
        "outside": r.outside_window,
    }
    key = "processed" if isinstance(expected, int) else expected
    assert got == {**dict.fromkeys(got, 0), key: 1}
    if isinstance(expected, int):
        assert r.counts[1][expected] == 1
    reference = reference_minute(value)
    if isinstance(expected, int):
        assert (
            reference == (W0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(minutes=1) + expected
        )
    elif expected == OUTSIDE:
        assert reference == FAR or isinstance(reference, int)
    else:
        assert reference == expected


# --- reference counting -----------------------------------------------------------------


def test_no_leak(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """Object and reference counts stay flat over repeated calls (cf. MarkupSafe's test_leak)."""
    caplog.set_level(logging.CRITICAL, logger="metrics_agg.counting")  # keep no log records
    label = "".join(["predic", "tion"])  # a fresh object we can count references to
    bad = "".join(["not a ", "timestamp"])
    texts: list[object] = ["2024-05-07T00:01Z", bad, None, 5, "2024-05-07T00:02Z\ud800"] * 50
    labels: list[object] = [label, None, label, label, 7] * 50
    records = [{"createdAt": t, "type": c} for t, c in zip(texts, labels, strict=True)]

    def run() -> None:
        count_buckets(texts, W0, W1, categories=labels, backend=backend)  # type: ignore[arg-type]
        count_records(records, W0, W1, category_field="type", backend=backend)  # type: ignore[arg-type]

    run()
    gc.collect()
    objects, label_refs, bad_refs = (
        len(gc.get_objects()),
        sys.getrefcount(label),
        sys.getrefcount(bad),
    )
    for _ in range(200):
        run()
    gc.collect()
    assert len(gc.get_objects()) - objects < 20
    assert sys.getrefcount(label) == label_refs
    assert sys.getrefcount(bad) == bad_refs


@pytest.mark.parametrize(
    ("start", "end", "sizes", "error", "message"),
    [
        (5, 65, [60], ValueError, "not aligned to the 60-minute"),
        (0, 0, [1], ValueError, "must be after its start"),
        (0, 60, [], ValueError, "at least one bucket size"),
        (0, 60, [0], ValueError, "positive minutes, got 0"),
        (0, 2**40, [1], MemoryError, "too large"),
        # Ends near the i64 limits: a span no i64 holds is a clear error, never wrapped.
        (-(2**62), 2**62, [1], ValueError, "longer than 9223372036854775807 minutes"),
        (-(2**63), 2**63 - 1, [1], ValueError, "longer than 9223372036854775807 minutes"),
    ],
)
def test_loops_reject_wrong_use_alike(
    start: int, end: int, sizes: list[int], error: type[Exception], message: str
) -> None:
    """The loops check their arguments too (same messages), for direct callers."""
    for loop in loops():
        with pytest.raises(error, match=message):
            loop.count_strings([], start_minute=start, end_minute=end, sizes=sizes)
        with pytest.raises(error, match=message):
            loop.count_records(
                [],
                fields=["a"],
                category_field=None,
                start_minute=start,
                end_minute=end,
                sizes=sizes,
            )
    for loop in loops():
        with pytest.raises(ValueError, match="categories has 1 items"):
            loop.count_strings([], ["x"], start_minute=0, end_minute=60, sizes=[60])
        with pytest.raises(ValueError, match="at least one timestamp field"):
            loop.count_records(
                [], fields=[], category_field=None, start_minute=0, end_minute=60, sizes=[60]
            )
