"""`count_buckets` / `count_records` against the counting contract (docs/design.md §3)."""

from __future__ import annotations

import json
import logging
from collections import UserDict, defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest

from metrics_agg import count_buckets, count_records, counter_backend
from metrics_agg.counter import api as buckets
from metrics_agg.errors import BackendUnavailableError
from metrics_agg.models import CountResult

W0 = datetime(2024, 5, 7, 0, 0, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)


def check_sums(result: CountResult) -> None:
    span = (result.window_end - result.window_start) // timedelta(minutes=1)
    for size in result.sizes:
        assert len(result.counts[size]) == span // size
        assert sum(result.counts[size]) == result.processed


def test_every_bucket_reported_and_sums_match(backend: str) -> None:
    texts = [
        "2024-05-07T00:00:00Z",
        "2024-05-07T00:04:59.999Z",
        "2024-05-07T00:05:00.000+00:00",
        "2024-05-07T02:59:60.5+02:30",  # 00:29:60.5 UTC: second 60 stays in minute 29
        "2024-05-07T00:59:59.999999999Z",
    ]
    r = count_buckets(texts, W0, W1, backend=backend)
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (5, 0, 0, 0)
    assert r.sizes == (1, 5, 15, 60)
    assert [i for i, n in enumerate(r.counts[1]) if n] == [0, 4, 5, 29, 59]
    assert r.counts[5] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert r.counts[15] == [3, 1, 0, 1] and r.counts[60] == [5]
    check_sums(r)


def test_each_input_lands_in_exactly_one_tally(backend: str) -> None:
    values: list[object] = [
        None,
        "",
        "not a timestamp",
        12345,
        1.5,
        b"2024-05-07T00:00Z",
        {"a": 1},
        "2024-05-07T01:00:00Z",  # the window's end is excluded
        "2024-05-06T23:59:59.999Z",
        "2024-05-07T00:30Z",
        "2024-05-07T00:30\ud800",  # lone surrogate: a str with no UTF-8 form
    ]
    r = count_buckets(values, W0, W1, backend=backend)
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (1, 2, 6, 2)
    assert r.processed + r.missing + r.invalid + r.outside_window == len(values)
    assert r.invalid_examples[0] == "'not a timestamp'"
    assert len(r.invalid_examples) == 5


def test_invalid_examples_are_truncated_and_logged(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    long = "2024-05-07T00:00Z" + "x" * 500
    with caplog.at_level(logging.WARNING, logger="metrics_agg.counting"):
        r = count_buckets([long, "2024-05-07T00:01Z"], W0, W1, backend=backend)
    assert r.invalid == 1 and r.processed == 1
    (example,) = r.invalid_examples
    assert example.startswith("'2024-05-07T00:00Zxxx") and len(example) <= 80
    assert "1 invalid timestamp" in caplog.text and example in caplog.text


def test_no_timestamps(backend: str) -> None:
    r = count_buckets([], W0, W1, sizes=(15,), backend=backend)
    assert r.counts == {15: [0, 0, 0, 0]}
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (0, 0, 0, 0)
    assert r.category_counts == {}


def test_categories(backend: str) -> None:
    texts = [
        "2024-05-07T00:01Z",
        "2024-05-07T00:02Z",
        "2024-05-07T00:16Z",
        "bad",
        "2024-05-07T02:00Z",
        "2024-05-07T00:20Z",
    ]
    labels: list[object] = ["prediction", None, "prediction", "evaluation", "outside", 7]
    r = count_buckets(texts, W0, W1, sizes=(15, 60), categories=labels, backend=backend)
    assert list(r.category_counts) == ["prediction", None]  # only labels of counted inputs
    assert r.category_counts["prediction"] == {15: [1, 1, 0, 0], 60: [2]}
    assert r.category_counts[None] == {15: [1, 1, 0, 0], 60: [2]}
    assert r.counts == {15: [2, 2, 0, 0], 60: [4]}


def test_categories_must_match_length(backend: str) -> None:
    with pytest.raises(ValueError, match="categories has 1 items but timestamps has 2"):
        count_buckets(["a", "b"], W0, W1, categories=["x"], backend=backend)


def test_sequences_other_than_lists(backend: str) -> None:
    texts = ("2024-05-07T00:01Z", "2024-05-07T00:02Z")
    r = count_buckets(texts, W0, W1, categories=("a", "b"), backend=backend)
    assert r.processed == 2 and set(r.category_counts) == {"a", "b"}


def test_str_subclass_counts_by_its_characters(backend: str) -> None:
    class Tagged(str):
        def __getitem__(self, key: object) -> str:  # type: ignore[override]
            return "garbage"

    r = count_buckets([Tagged("2024-05-07T00:01:02.345Z"), Tagged("")], W0, W1, backend=backend)
    assert (r.processed, r.missing) == (1, 1)


def test_window_as_strings_and_other_zones(backend: str) -> None:
    east = timezone(timedelta(hours=2))
    r = count_buckets(
        ["2024-05-07T00:01Z"], W0.astimezone(east), "2024-05-07T03:00+02:00", backend=backend
    )
    assert r.window_start == W0 and r.window_start.tzinfo == UTC
    assert r.window_end == W1 and r.counts[60] == [1]


@pytest.mark.parametrize(
    ("start", "end", "sizes", "message"),
    [
        (
            W0 + timedelta(minutes=5),
            W1 + timedelta(minutes=5),
            (1, 5, 15, 60),
            "not aligned to the 15-minute",
        ),
        (
            W0,
            W0 + timedelta(minutes=50),
            (1, 5, 15, 60),
            "window_end .* not aligned to the 15-minute",
        ),
        (W0, W1, (7,), "not aligned to the 7-minute"),
        (W0, W1, (0,), "positive whole minutes"),
        (W0, W1, (-5,), "positive whole minutes"),
        (W0, W1, (True,), "positive whole minutes"),
        (W0, W1, (1.5,), "positive whole minutes"),
        (W0, W1, (), "at least one bucket size"),
        (W1, W0, (60,), "must be after window_start"),
        (W0, W0, (60,), "must be after window_start"),
        (W0 + timedelta(seconds=30), W1, (1,), "whole minute"),
        (W0.replace(tzinfo=None), W1, (60,), "timezone-aware"),
        (W0, W1.replace(tzinfo=None), (60,), "timezone-aware"),
        ("yesterday", W1, (60,), "window_start: not an accepted timestamp"),
    ],
)
def test_wrong_use_is_a_value_error(
    backend: str, start: object, end: object, sizes: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        count_buckets(["2024-05-07T00:01Z"], start, end, sizes=sizes, backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        count_records([{}], start, end, sizes=sizes, backend=backend)  # type: ignore[arg-type]


def test_window_bound_of_wrong_type(backend: str) -> None:
    with pytest.raises(TypeError):
        count_buckets([], 1714000000, W1, backend=backend)  # type: ignore[arg-type]


def test_sizes_need_only_divide_the_window(backend: str) -> None:
    r = count_buckets(
        ["2024-05-07T00:01Z"], W0, W0 + timedelta(minutes=10), sizes=(2, 10), backend=backend
    )
    assert r.counts == {2: [1, 0, 0, 0, 0], 10: [1]}


# --- records --------------------------------------------------------------------------


class Record(Mapping[str, object]):
    """A read-only mapping that is not a dict."""

    def __init__(self, **fields: object) -> None:
        self._fields = fields

    def __getitem__(self, key: str) -> object:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def test_records_first_present_field_wins(backend: str) -> None:
    fields = ("editedAt", "updatedAt", "createdAt")
    records: list[object] = [
        {"editedAt": "2024-05-07T00:01Z", "updatedAt": "2024-05-07T00:30Z"},
        {"editedAt": None, "updatedAt": "2024-05-07T00:16Z"},
        {"editedAt": "", "createdAt": "2024-05-07T00:31Z"},
        {"id": "only-id"},
        {"editedAt": None, "updatedAt": ""},
        {"editedAt": 1714000000, "updatedAt": "2024-05-07T00:16Z"},  # present: decides
        {"editedAt": "garbage", "updatedAt": "2024-05-07T00:16Z"},
        Record(updatedAt="2024-05-07T00:46Z"),
        UserDict({"createdAt": "2024-05-07T00:47Z"}),
        "2024-05-07T00:01Z",  # not a record
        None,
        {"editedAt": "2024-05-07T03:00Z"},
    ]
    r = count_records(records, W0, W1, fields=fields, sizes=(15,), backend=backend)
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (5, 2, 4, 1)
    assert r.counts[15] == [1, 1, 1, 2]
    assert r.invalid_examples[:2] == ("1714000000", "'garbage'")
    assert r.category_counts == {}


def test_records_default_field_and_categories(backend: str) -> None:
    records = [
        {"createdAt": "2024-05-07T00:01Z", "createdByType": "prediction"},
        {"createdAt": "2024-05-07T00:02Z", "createdByType": "evaluation"},
        {"createdAt": "2024-05-07T00:03Z", "createdByType": None},
        {"createdAt": "2024-05-07T00:04Z"},
        {"createdAt": "2024-05-07T00:05Z", "createdByType": 3},
        {"createdAt": "2024-05-07T00:06Z", "createdByType": "prediction"},
        {"createdAt": "bad", "createdByType": "never"},
    ]
    r = count_records(
        records, W0, W1, category_field="createdByType", sizes=(5, 60), backend=backend
    )
    assert list(r.category_counts) == ["prediction", "evaluation", None]
    assert r.category_counts["prediction"][5][:2] == [1, 1]
    assert r.category_counts[None][60] == [3]
    assert r.counts[60] == [6] and r.invalid == 1


def test_dict_subclass_is_read_like_dict_get(backend: str) -> None:
    calls: list[str] = []

    class Loud(defaultdict[str, object]):
        def __missing__(self, key: str) -> object:
            calls.append(key)
            return "2024-05-07T00:59Z"

    record = Loud(None, {"updatedAt": "2024-05-07T00:01Z"})
    r = count_records(
        [record], W0, W1, fields=("createdAt", "updatedAt"), sizes=(60,), backend=backend
    )
    assert r.processed == 1 and calls == []


def test_record_get_errors_propagate(backend: str) -> None:
    class Broken(Record):
        def get(self, key: str, default: object = None) -> object:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        count_records([Broken()], W0, W1, backend=backend)


def test_record_fields_must_be_named(backend: str) -> None:
    with pytest.raises(ValueError, match="at least one timestamp field"):
        count_records([{}], W0, W1, fields=(), backend=backend)
    r = count_records(
        [{"updatedAt": "2024-05-07T00:01Z"}], W0, W1, fields="updatedAt", backend=backend
    )
    assert r.processed == 1


def test_records_of_mixed_dict_shapes(backend: str) -> None:
    """Dicts of one list need not share key order, key objects or storage: the compiled
    loop remembers where a field sat in the last dict, and must fall back when it moved."""

    class Obj:
        def __init__(self, stamp: object, kind: object) -> None:
            self.createdAt = stamp
            self.type = kind

    def stamp(i: int) -> str | None:
        return None if i % 17 == 0 else f"2024-05-07T00:{i % 70:02d}:00.{i:03d}Z"

    records: list[object] = []
    for i in range(600):
        kind = ("prediction", "evaluation", None, 7)[i % 4]
        shape = (i // 40) % 6  # runs of one shape, so positions are learned and then move
        if shape == 0:
            record = {"id": i, "createdAt": stamp(i), "type": kind}
        elif shape == 1:
            record = {"type": kind, "pad": 0, "createdAt": stamp(i)}
        elif shape == 2:  # keys and labels that are equal strings but not the same objects
            record = json.loads(json.dumps({"createdAt": stamp(i), "type": kind}))
        elif shape == 3:  # deleted entries before the fields
            record = {"a": 1, "b": 2, "createdAt": stamp(i), "type": kind}
            del record["a"], record["b"]
        elif shape == 4:  # a split-table instance dict
            record = vars(Obj(stamp(i), kind))
        else:
            record = {"createdAt": stamp(i)} if i % 2 else {"type": kind, "id": i}
        records.append(record)
    r = count_records(records, W0, W1, category_field="type", sizes=(1, 60), backend=backend)
    stamps = [rec.get("createdAt") for rec in records]  # type: ignore[attr-defined]
    kinds = [rec.get("type") for rec in records]  # type: ignore[attr-defined]
    flat = count_buckets(stamps, W0, W1, sizes=(1, 60), categories=kinds, backend="python")
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (
        flat.processed,
        flat.missing,
        flat.invalid,
        flat.outside_window,
    )
    assert r.counts == flat.counts
    assert r.category_counts == flat.category_counts
    assert list(r.category_counts) == list(flat.category_counts)


# --- backend selection ------------------------------------------------------------------


def test_backend_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_AGG_COUNTER", "python")
    assert counter_backend() == "python"
    monkeypatch.setenv("METRICS_AGG_COUNTER", "fortran")
    with pytest.raises(ValueError, match="METRICS_AGG_COUNTER"):
        counter_backend()
    monkeypatch.delenv("METRICS_AGG_COUNTER")
    expected = "rust" if buckets._rust_counter is not None else "python"
    assert counter_backend() == expected
    with pytest.raises(ValueError, match="backend must be"):
        count_buckets([], W0, W1, backend="cobol")  # type: ignore[arg-type]


def test_rust_requested_without_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buckets, "_rust_counter", None)
    monkeypatch.delenv("METRICS_AGG_COUNTER", raising=False)
    assert counter_backend() == "python"
    with pytest.raises(BackendUnavailableError, match="not installed"):
        count_buckets([], W0, W1, backend="rust")
    monkeypatch.setenv("METRICS_AGG_COUNTER", "rust")
    with pytest.raises(BackendUnavailableError):
        counter_backend()
    # An explicit argument wins over the environment.
    assert count_buckets(["2024-05-07T00:01Z"], W0, W1, backend="python").processed == 1


def test_environment_picks_auto_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("METRICS_AGG_COUNTER", backend)
    seen: list[str] = []
    module = buckets._rust_counter if backend == "rust" else buckets._pycounter
    original = module.count_strings

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(backend)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "count_strings", spy)
    count_buckets(["2024-05-07T00:01Z"], W0, W1)
    assert seen == [backend]


def test_list_subclass_is_read_through_its_iterator(backend: str) -> None:
    class FirstOnly(list[object]):
        def __iter__(self) -> Iterator[object]:
            return iter(list.__getitem__(self, slice(0, 1)))

    texts = FirstOnly(["2024-05-07T00:01Z", "2024-05-07T00:02Z", "bad"])
    r = count_buckets(texts, W0, W1, backend=backend)
    assert (r.processed, r.invalid) == (1, 0)


def test_seconds_without_zone_or_fraction(backend: str) -> None:
    texts = ["2024-05-07T00:01:02", "2024-05-07T00:01:02", "2024-05-07T00:01:60"]
    r = count_buckets(texts, W0, W1, sizes=(1,), backend=backend)
    assert r.counts[1][1] == 3
