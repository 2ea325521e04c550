"""Error rules in the counters (issue 13): evaluated in count_records' single pass, the
same in the Rust and the Python loop (rule semantics table, categories, Python code a
record runs, and a hypothesis parity check). Memory-checked with the other counter tests
(.ci/counter_checks.sh)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_counter import require_rust
from metrics_agg import count_records
from metrics_agg.models import ErrorRule

W0, W1 = "2024-05-01T10:00Z", "2024-05-01T11:00Z"
CODE = (ErrorRule("code", at_least=400), ErrorRule("status", ("error",)))


class StrSub(str):
    pass


class IntSub(int):
    pass


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"code": "500"}, True),
        ({"code": "400"}, True),
        ({"code": "0400"}, True),
        ({"code": "399"}, False),
        ({"code": "99999999999999999999999"}, True),  # beyond 64 bits: still >= 400
        ({"code": "9" * 4301}, True),  # beyond int()'s 4300-digit limit: no ValueError
        ({"code": "0" * 4400 + "500"}, True),
        ({"code": "0" * 4400 + "399"}, False),
        ({"code": "5xx"}, False),
        ({"code": " 500"}, False),
        ({"code": "500 "}, False),
        ({"code": "-500"}, False),
        ({"code": "+500"}, False),
        ({"code": "５００"}, False),  # non-ASCII digits
        ({"code": ""}, False),
        ({"code": None}, False),
        ({"code": 500}, True),
        ({"code": 399}, False),
        ({"code": IntSub(404)}, True),
        ({"code": True}, False),
        ({"code": 500.0}, False),
        ({"code": StrSub("503")}, True),
        ({"status": "error"}, True),
        ({"status": "ERROR"}, False),  # exact, case included
        ({"status": StrSub("error")}, True),
        ({"status": "error\udc80"}, False),
        ({"code": "200", "status": "error"}, True),
        ({"code": "200", "status": "synced"}, False),
        ({}, False),
    ],
)
def test_error_rule_semantics(backend: str, fields: dict[str, Any], error: bool) -> None:
    records = [{"updatedAt": "2024-05-01T10:07:00Z", **fields}]
    r = count_records(
        records, W0, W1, fields=("updatedAt",), errors=CODE, sizes=(1, 60), backend=backend
    )  # type: ignore[arg-type]
    assert r.processed == 1
    assert r.error_counts is not None and r.error_counts[60] == [int(error)]
    assert r.error_counts[1][7] == int(error) and sum(r.error_counts[1]) == int(error)


def test_errors_split_by_category_in_the_same_pass(backend: str) -> None:
    records: list[Any] = [
        {"updatedAt": "2024-05-01T10:01:00Z", "type": "prediction", "code": "500"},
        {"updatedAt": "2024-05-01T10:01:30Z", "type": "prediction", "code": "200"},
        {"updatedAt": "2024-05-01T10:02:00Z", "type": "evaluation", "status": "error"},
        {"updatedAt": "2024-05-01T10:20:00Z", "code": "404"},  # no category
        {"updatedAt": "2024-05-01T12:00:00Z", "code": "500"},  # outside: not an error here
        {"updatedAt": "bad", "code": "500"},  # invalid: not counted at all
        {"code": "500"},  # missing
        "not a record",
    ]
    r = count_records(
        records,
        W0,
        W1,
        fields=("updatedAt",),
        category_field="type",
        errors=CODE,
        sizes=(5, 60),
        backend=backend,  # type: ignore[arg-type]
    )
    assert (r.processed, r.invalid, r.missing, r.outside_window) == (4, 2, 1, 1)
    assert r.error_counts is not None
    assert r.error_counts[60] == [3] and r.counts[60] == [4]
    assert r.error_counts[5][:5] == [2, 0, 0, 0, 1]
    assert r.category_error_counts["prediction"][60] == [1]
    assert r.category_error_counts["evaluation"][60] == [1]
    assert r.category_error_counts[None][60] == [1]
    assert set(r.category_error_counts) == set(r.category_counts)


def test_no_rules_means_no_error_counts(backend: str) -> None:
    records = [{"updatedAt": "2024-05-01T10:01:00Z", "code": "500"}]
    r = count_records(records, W0, W1, fields=("updatedAt",), backend=backend)  # type: ignore[arg-type]
    assert r.error_counts is None and r.category_error_counts == {}
    r = count_records(records, W0, W1, fields=("updatedAt",), errors=(), backend=backend)  # type: ignore[arg-type]
    assert r.error_counts is not None and r.error_counts[60] == [0]


def test_a_raising_get_propagates_from_the_rule_lookup(backend: str) -> None:
    class Record:
        def get(self, name: str) -> object:
            if name == "code":
                raise KeyError("boom")
            return "2024-05-01T10:01:00Z"

    with pytest.raises(KeyError):
        count_records([Record()], W0, W1, fields=("updatedAt",), errors=CODE, backend=backend)  # type: ignore[arg-type]


_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["500", "400", "399", "0400", "5xx", " 500", "error", "FAILED", "", "٥٠٠"]),
    st.text(alphabet="0123456789 +-error", max_size=25),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False),
)
_RECORDS = st.lists(
    st.fixed_dictionaries(
        {"updatedAt": st.sampled_from(["2024-05-01T10:03:00Z", "2024-05-01T10:41:59Z", "x"])},
        optional={"code": _VALUES, "status": _VALUES, "type": st.sampled_from(["a", "b", 1])},
    ),
    max_size=40,
)
_RULES = st.lists(
    st.builds(
        ErrorRule,
        st.sampled_from(["code", "status"]),
        st.lists(st.sampled_from(["error", "FAILED", "500", ""]), max_size=2).map(tuple),
        st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_RECORDS, rules=_RULES, category=st.sampled_from([None, "type"]))
def test_both_backends_count_the_same_errors(
    records: list[dict[str, Any]], rules: list[ErrorRule], category: str | None
) -> None:
    require_rust()
    results = [
        count_records(
            records,
            W0,
            W1,
            fields=("updatedAt",),
            category_field=category,
            errors=rules,
            sizes=(1, 15, 60),
            backend=backend,  # type: ignore[arg-type]
        )
        for backend in ("python", "rust")
    ]
    assert results[0] == results[1]
    py = results[0]
    assert py.error_counts is not None
    for size in (1, 15, 60):
        assert sum(py.error_counts[size]) <= py.processed
        assert all(e <= c for e, c in zip(py.error_counts[size], py.counts[size], strict=True))


class LyingStr(str):
    """Text whose Python methods say something else than its characters."""

    def __str__(self) -> str:
        return "status"

    def __hash__(self) -> int:
        return hash("oops")

    def __eq__(self, other: object) -> bool:
        return True


def test_rule_fields_and_values_are_read_by_their_characters(backend: str) -> None:
    """A str subclass in a rule runs none of its methods in either backend."""
    records = [{"updatedAt": "2024-05-01T10:07:00Z", "status": "oops", "zzz": "x"}]
    rules = (ErrorRule(LyingStr("zzz"), ("y",)), ErrorRule("status", (LyingStr("error"),)))
    r = count_records(
        records, W0, W1, fields=("updatedAt",), errors=rules, sizes=(60,), backend=backend
    )  # type: ignore[arg-type]
    assert r.error_counts is not None and r.error_counts[60] == [0]
