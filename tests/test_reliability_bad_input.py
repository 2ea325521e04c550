"""Bad input (issue 6): hostile stream events never crash the handler nor write wrong counts;
the compiled parser never panics nor disagrees with the Python loop; values travel only as
GraphQL variables.

`METRICS_AGG_FUZZ_EXAMPLES=N` raises the example counts (each parser example is a list of
200 strings, so N=10000 checks two million inputs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_counter import require_rust
from metrics_agg.aggregator import pipeline
from metrics_agg.counter import _pycounter
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack
from reliability_harness import Direct, compare
from test_parity import ANCHORS, near_misses
from truth_helpers import Stream, iso, recent_now

FUZZ = int(os.environ.get("METRICS_AGG_FUZZ_EXAMPLES", "0"))
ACCOUNT = "acct-bad"
REGION_ACCT = "arn:aws:dynamodb:us-east-1:123456789012"
MODELS = ("Item", "ScoreResult", "Task", "Evaluation", "Procedure", "ChatSession", "FeedbackItem")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    db: Path = tmp_path_factory.mktemp("bad") / "bad.sqlite3"
    with LocalStack(db, mapping=False) as s:
        direct, now = Direct(s.store), recent_now()
        for i, model in enumerate(MODELS * 2):
            field = "createdAt" if model == "Item" else "updatedAt"
            direct.create(model, accountId=ACCOUNT, **{field: iso(now - timedelta(minutes=i))})
        for response in Stream(s).deliver():
            assert response == {"batchItemFailures": []}
        assert compare(s.store, ACCOUNT) == []
        yield s


# --- hostile events ------------------------------------------------------------------------

# Never a valid timestamp: whatever the parser makes of these, nothing may be counted.
bad_times = st.one_of(
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": b}, st.sampled_from(["", "MjAyNC0wNS0wMVQxMDowMDowMFo="])),
    st.builds(
        lambda t: {"S": t},
        st.sampled_from(
            [
                "",
                "not a date",
                "2024-02-30T10:00:00Z",
                "2024-05-01T24:00:00Z",
                " 2024-05-01T10:00Z",
                "2024-05-01T10:00:00.1234567890Z",
                "٢٠٢٤-05-01T10:00Z",
                "x" * 300_000,
            ]
        ),
    ),
    st.just({"NULL": True}),
    st.just({"BOOL": True}),
    st.just({"M": {}}),
    st.just({"L": []}),
    st.just({"SS": ["2024-05-01T10:00:00Z"]}),
    st.just({"S": 17}),
    st.just("2024-05-01T10:00Z"),
)
accounts = st.one_of(
    st.just({"S": ACCOUNT}),
    st.just({"N": "42"}),
    st.just({"B": "YWNjdC1iYWQ="}),
    st.just({"S": ""}),
    st.just({"S": 'acct-"}{\n\\$x'}),
    st.just({"NULL": True}),
    st.just({"S": "a" * 200_000}),
    st.just(ACCOUNT),
)
images = st.one_of(
    st.none(),
    st.just("garbage"),
    st.just([]),
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(
                st.builds(lambda n: {"S": f"fuzz-{n}"}, st.integers(0, 50)),
                st.just({"N": "1"}),
                st.just({"S": ""}),
            ),
            "accountId": accounts,
            "createdAt": bad_times,
            "updatedAt": bad_times,
            "editedAt": bad_times,
            "createdByType": st.one_of(st.just({"S": "prediction"}), st.just({"N": "1"})),
            "blob": st.just({"B": "AAEC"}),
            "weird": st.just({"Q": "?"}),
        },
    ),
)
arns = st.one_of(
    st.builds(
        lambda m: f"{REGION_ACCT}:table/{m}-abc123-NONE/stream/2024-01-01T00:00:00.000",
        st.sampled_from([*MODELS, "Taskforce", "item", "AggregatedMetrics", ""]),
    ),
    st.sampled_from(["", "arn:aws:s3:::bucket", f"{REGION_ACCT}:table/", "table/Item-x"]),
    st.none(),
    st.integers(),
)
records = st.one_of(
    st.fixed_dictionaries(
        {"eventSourceARN": arns},
        optional={
            "eventName": st.sampled_from(["INSERT", "MODIFY", "REMOVE", "BOGUS", None, 3]),
            "eventID": st.text(max_size=5),
            "dynamodb": st.one_of(
                st.none(),
                st.just("x"),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "SequenceNumber": st.one_of(
                            st.integers(1, 10**20).map(lambda n: f"{n:021d}"),
                            st.just("12a"),
                            st.integers(),
                            st.just("٣"),
                        ),
                        "Keys": images,
                        "NewImage": images,
                        "OldImage": images,
                    },
                ),
            ),
        },
    ),
    st.none(),
    st.integers(),
    st.text(max_size=3),
    st.lists(st.none(), max_size=2),
)


@settings(
    max_examples=max(25, FUZZ // 100),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(st.lists(records, max_size=12))
def test_hostile_events_never_crash_nor_miscount(
    stack: LocalStack, event_records: list[Any]
) -> None:
    response = pipeline.handle_event({"Records": event_records}, config=stack.config())
    assert isinstance(response["batchItemFailures"], list)
    assert compare(stack.store, ACCOUNT) == []
    strangers = {m["accountId"] for m in stack.store.all_metrics()} - {ACCOUNT}
    assert not strangers, "buckets were written for an account with no valid record"


def test_huge_batch_of_junk_and_oversized_strings(stack: LocalStack) -> None:
    template = {
        "eventName": "INSERT",
        "eventSourceARN": f"{REGION_ACCT}:table/Item-abc123-NONE/stream/2024-01-01T00:00:00.000",
        "dynamodb": {
            "SequenceNumber": "",
            "NewImage": {
                "id": {"S": ""},
                "accountId": {"S": ACCOUNT},
                "createdAt": {"S": "x" * 1000},
            },
        },
    }
    junk = []
    for i in range(10_000):
        rec: dict[str, Any] = {**template, "dynamodb": {**template["dynamodb"]}}
        rec["dynamodb"]["SequenceNumber"] = f"{i + 1:021d}"
        rec["dynamodb"]["NewImage"] = {**template["dynamodb"]["NewImage"], "id": {"S": f"junk-{i}"}}
        junk.append(rec)
    response = pipeline.handle_event({"Records": junk}, config=stack.config())
    assert response == {"batchItemFailures": []}
    assert compare(stack.store, ACCOUNT) == []


def test_values_travel_only_as_graphql_variables(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = 'acct-"quoted"} { query x }\n\\ $accountId ) #'
    direct, now = Direct(stack.store), recent_now()
    for i in range(3):
        direct.create(
            "Item",
            accountId=account,
            createdAt=iso(now - timedelta(minutes=i)),
            createdByType="prediction",
        )
        direct.create(
            "FeedbackItem",
            accountId=account,
            updatedAt=iso(now),
            scorecardId='sc"}{\n',
            scoreId="s\\$",
            initialAnswerValue='"',
            finalAnswerValue="}",
        )
    documents: list[str] = []
    real = GraphQLClient.execute

    def spy(self: GraphQLClient, document: str, *args: Any, **kwargs: Any) -> Any:
        documents.append(document)
        return real(self, document, *args, **kwargs)

    monkeypatch.setattr(GraphQLClient, "execute", spy)
    stream = Stream(stack)
    stream.cursor = {}  # deliver everything (the earlier records are idempotent recounts)
    for response in stream.deliver():
        assert response == {"batchItemFailures": []}
    assert documents
    for doc in documents:
        assert "quoted" not in doc and 'sc"' not in doc and "s\\$" not in doc
    assert compare(stack.store, account) == []
    stored = stack.store.all_metrics(account)
    assert {m["accountId"] for m in stored} == {account}
    assert any(m.get("scorecardId") == 'sc"}{\n' for m in stored)


# --- the parser: Rust against Python ---------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    near_misses(ANCHORS[0]),
    near_misses(ANCHORS[7]),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,10})?)?"
        r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?",
        fullmatch=True,
    ),
)


@settings(
    max_examples=max(60, FUZZ),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(texts, min_size=1, max_size=200), st.sampled_from([0, 7]))
def test_parser_never_disagrees_on_arbitrary_text(values: list[str], anchor: int) -> None:
    rust = require_rust()
    # Two days around the anchor the near misses are built on, so valid ones get placed.
    at = ANCHORS[anchor] - datetime(1970, 1, 1)
    base = int(at.total_seconds() // 3600) * 60
    kwargs: dict[str, Any] = {
        "start_minute": base - 1440,
        "end_minute": base + 1440,
        "sizes": [1, 60],
        "max_examples": 1000,
    }
    py = _pycounter.count_strings(values, **kwargs)
    rs = rust.count_strings(values, **kwargs)
    assert tuple(py[:4]) == tuple(rs[:4])
    assert list(py[4]) == list(rs[4])
    assert list(py[6]) == list(rs[6])  # the same inputs are the invalid ones


EXTREMES = [
    (-(2**63), 2**63 - 1),
    (0, 2**63 - 1),
    (-(2**63), 0),
    (-(2**63), -(2**63) + 60),
    (2**63 - 61, 2**63 - 1),
]


@pytest.mark.parametrize(("start", "end"), EXTREMES)
def test_extreme_arguments_raise_python_errors_not_panics(start: int, end: int) -> None:
    """No input we found makes the release build panic (no unwrap/expect/indexing on input;
    overflow wraps in release). Extreme windows must come back as ordinary Python errors
    (a pyo3 PanicException derives from BaseException, not Exception, so this would fail)."""
    rust = require_rust()
    for call in (
        lambda: rust.count_strings(
            ["2024-05-01T10:00Z", "9999-12-31T23:59:60.999999999-23:59"],
            start_minute=start,
            end_minute=end,
            sizes=[1],
        ),
        lambda: rust.count_records(
            [{"a": "0001-01-01T00:00+23:59", "c": "x"}],
            fields=["a"],
            category_field="c",
            start_minute=start,
            end_minute=end,
            sizes=[1],
        ),
    ):
        try:
            out = call()
        except (ValueError, MemoryError, OverflowError):
            continue
        assert out[0] + out[1] + out[2] + out[3] >= 1


def test_window_at_the_end_of_time_is_counted_like_python() -> None:
    rust = require_rust()
    last = datetime(9999, 12, 31, 23, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    start = int(last.total_seconds() // 60)
    values = ["9999-12-31T23:59:60.999999999Z", "9999-12-31T23:00Z", "0001-01-01T00:00+23:59"]
    kwargs: dict[str, Any] = {"start_minute": start, "end_minute": start + 60, "sizes": [1, 60]}
    assert tuple(rust.count_strings(values, **kwargs)[:5]) == tuple(
        _pycounter.count_strings(values, **kwargs)[:5]
    )
