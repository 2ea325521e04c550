"""list_source_reads / list_stored_buckets against the in-process AppSync fake."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes_graphql import AppSyncFake, FakeGraphQLServer, Reply
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import DeadlineExceeded, ReadError
from metrics_agg.graphql.api import (
    STORED_BUCKETS_QUERY,
    decode_stored_bucket,
    list_source_reads,
    list_stored_buckets,
)
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.models import SOURCE_MODELS, BucketKey, BucketValue, ModelSpec, SourceRead

T0 = datetime(2024, 5, 1, 13, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
ITEM = SOURCE_MODELS["Item"]
FEEDBACK = SOURCE_MODELS["FeedbackItem"]


def read_one(
    client: GraphQLClient,
    spec: ModelSpec,
    query_index: int,
    account_id: str,
    start: datetime,
    end: datetime,
    **options: Any,
) -> list[dict[str, Any]]:
    """The records of one list query over [start, end), through the production read."""
    (rows,) = list_source_reads(
        client, spec, account_id, [SourceRead(query_index, start, end)], **options
    )
    return rows


@pytest.fixture
def fake() -> AppSyncFake:
    return AppSyncFake(empty_pages=True)


@pytest.fixture
def server(fake: AppSyncFake) -> Iterator[FakeGraphQLServer]:
    with FakeGraphQLServer(fake) as srv:
        yield srv


@pytest.fixture
def client(server: FakeGraphQLServer) -> Iterator[GraphQLClient]:
    config = Config(
        endpoint=server.endpoint, api_key="k", read_parallelism=4, page_limit=3, max_attempts=3
    )
    with GraphQLClient(config, sleep=lambda s: None) as c:
        yield c


def items(*stamps: str, account: str = "acct") -> list[dict[str, Any]]:
    return [
        {
            "id": f"i{n}",
            "accountId": account,
            "createdAt": ts,
            "updatedAt": ts,
            "createdByType": "prediction",
        }
        for n, ts in enumerate(stamps)
    ]


# Inside the margin: every string form of minutes 12:59 .. 14:00 (the caller filters).
INSIDE = [
    "2024-05-01T12:59:00Z",
    "2024-05-01T12:59:59.999Z",
    "2024-05-01T13:00Z",
    "2024-05-01T13:00:00Z",
    "2024-05-01T13:00:00.123Z",
    "2024-05-01T13:00:00.123456789Z",
    "2024-05-01T13:14:59Z",
    "2024-05-01T13:15:00.5Z",
    "2024-05-01T13:29:60Z",
    "2024-05-01T13:59:59.999999Z",
    "2024-05-01T14:00:00Z",
    "2024-05-01T14:00:59.9Z",
] + [f"2024-05-01T13:{m:02d}:{s:02d}.{m}Z" for m in range(0, 60, 7) for s in (1, 31)]
OUTSIDE = ["2024-05-01T12:58:59.999Z", "2024-05-01T14:01:00Z", "2024-05-02T13:30:00Z"]


def test_pages_every_sub_range_to_the_end(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    fake.records["listItemByAccountIdAndCreatedAt"] = items(*INSIDE, *OUTSIDE) + items(
        "2024-05-01T13:30:00Z", account="other"
    )
    got = read_one(client, ITEM, 0, "acct", T0, T1)
    assert sorted(r["createdAt"] for r in got) == sorted(INSIDE)
    assert len({r["id"] for r in got}) == len(got)
    assert set(got[0]) == {"id", "accountId", "createdAt", "updatedAt", "createdByType"}
    calls = [json.loads(s.raw)["variables"] for s in server.requests]
    assert all(v["limit"] == 3 and v["accountId"] == "acct" for v in calls)
    # More rows than a page: paged (empty pages with a nextToken followed, not taken for
    # the end), and split into at most read_parallelism ranges after the first page.
    assert len(calls) > len(INSIDE) // 3


def test_feedback_query_index_picks_query_and_sort_key(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    row = {
        "id": "f1",
        "accountId": "acct",
        "scorecardId": "sc",
        "scoreId": "s",
        "initialAnswerValue": "yes",
        "finalAnswerValue": "no",
        "isInvalid": None,
        "editedAt": None,
        "createdAt": "2024-05-01T13:05:00Z",
        "updatedAt": "2024-05-01T13:06:00Z",
    }
    fake.records["listFeedbackItemByAccountIdAndUpdatedAt"] = [row]
    assert read_one(client, FEEDBACK, 1, "acct", T0, T1) == [row]
    assert read_one(client, FEEDBACK, 0, "acct", T0, T1) == []
    with pytest.raises(ValueError, match="index 2"):
        read_one(client, FEEDBACK, 2, "acct", T0, T1)
    documents = [s.payload["query"] for s in server.requests]
    for field in FEEDBACK.list_queries:
        assert any(field in d for d in documents)


def test_ranges_widen_by_the_sort_key_and_zone_margins(
    server: FakeGraphQLServer, client: GraphQLClient
) -> None:
    start = datetime(2026, 11, 26, 3, tzinfo=UTC)
    end = start + timedelta(hours=1)
    read_one(client, ITEM, 0, "acct", start, end)
    read_one(client, ITEM, 0, "acct", start, end, zone_margin_minutes=120)
    bounds = [tuple(s.variables["k0"]["between"]) for s in server.requests]
    assert list(dict.fromkeys(bounds)) == [  # (empty pages with a nextToken repeat a range)
        ("2026-11-26T02:59", "2026-11-26T04:01"),  # one minute each side
        ("2026-11-26T00:59", "2026-11-26T06:01"),  # plus two hours of zone offsets
    ]


def test_duplicate_ids_keep_the_newest_sort_key(client: GraphQLClient, fake: AppSyncFake) -> None:
    older, newer = items("2024-05-01T13:01:00Z", "2024-05-01T13:50:00Z")
    newer["id"] = older["id"]  # moved by an update between two sub-range reads
    fake.records["listItemByAccountIdAndCreatedAt"] = [older, newer]
    assert read_one(client, ITEM, 0, "acct", T0, T1) == [newer]


def test_transient_page_failure_is_retried(client: GraphQLClient, fake: AppSyncFake) -> None:
    fake.records["listItemByAccountIdAndCreatedAt"] = items(*INSIDE)
    calls = iter(range(1000))
    fake.fail = lambda field, args: Reply(503, {}) if next(calls) == 5 else None
    got = read_one(client, ITEM, 0, "acct", T0, T1, parallelism=2, page_limit=2)
    assert len(got) == len(INSIDE)


def test_any_failed_page_fails_the_whole_read(client: GraphQLClient, fake: AppSyncFake) -> None:
    fake.records["listItemByAccountIdAndCreatedAt"] = items(*INSIDE)
    fake.fail = lambda field, args: (
        Reply(400, {"errors": [{"errorType": "BadRequestException", "message": "no"}]})
        if args.get("nextToken") == "o:2"
        else None
    )
    with pytest.raises(ReadError) as info:
        read_one(client, ITEM, 0, "acct", T0, T1, parallelism=4, page_limit=2)
    assert info.value.error_types == ("BadRequestException",)
    # Workers stopped: none left behind.
    assert not [t for t in threading.enumerate() if t.name.startswith("metrics-agg-io")]


def test_malformed_connection_and_stuck_token_are_read_errors(
    client: GraphQLClient, fake: AppSyncFake
) -> None:
    fake.fail = lambda field, args: Reply(200, {"data": {field: None}})
    with pytest.raises(ReadError, match="malformed"):
        read_one(client, ITEM, 0, "acct", T0, T1, parallelism=1)
    fake.fail = lambda field, args: Reply(200, {"data": {"q0": {"items": [], "nextToken": "same"}}})
    with pytest.raises(ReadError, match="did not advance"):
        read_one(client, ITEM, 0, "acct", T0, T1, parallelism=1)


def test_deadline_propagates(client: GraphQLClient) -> None:
    with pytest.raises(DeadlineExceeded):
        read_one(client, ITEM, 0, "acct", T0, T1, deadline=Deadline.after(0))


# -- stored buckets ------------------------------------------------------------------------


def metric(record_type: str, start: str, minutes: int, count: int, **extra: Any) -> dict[str, Any]:
    scope = {
        "feedbackItemsByScore": extra.get("scoreId"),
        "feedbackItemsByScorecard": extra.get("scorecardId"),
    }.get(record_type)
    key = f"{record_type}#{scope + '#' if scope else ''}{start}#{minutes}"
    return {
        "accountId": "acct",
        "compositeKey": key,
        "recordType": record_type,
        "timeRangeStart": start,
        "timeRangeEnd": start,
        "numberOfMinutes": minutes,
        "count": count,
        "complete": True,
        "createdAt": "2024-05-01T14:00:00.000000Z",
        "updatedAt": "2024-05-01T14:00:00.000000Z",
        **extra,
    }


def test_list_stored_buckets_decodes_rows(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    meta = json.dumps({"changedCount": 1, "unchangedCount": 2, "invalidCount": 0})
    rows = [
        metric("items", "2024-05-01T13:00:00Z", 60, 7),
        metric("items", "2024-05-01T13:59:00Z", 1, 1),
        metric("items", "2024-05-01T14:00:00Z", 1, 9),  # outside [T0, T1)
        metric("items", "2024-05-01T12:59:00Z", 1, 9),  # outside
        metric("predictionItems", "2024-05-01T13:05:00Z", 5, 2, scorecardId="stray"),
        metric("feedbackItems", "2024-05-01T13:00:00Z", 15, 3, metadata=meta),
        metric(
            "feedbackItemsByScorecard",
            "2024-05-01T13:00:00Z",
            15,
            3,
            scorecardId="sc",
            scoreId=None,
            metadata=None,
        ),
        metric(
            "feedbackItemsByScore",
            "2024-05-01T13:00:00Z",
            15,
            3,
            scorecardId="sc",
            scoreId="s1",
            metadata={"changedCount": 3},
        ),
        metric("tasks", "2024-05-01T13:00:00Z", 60, 1),  # not asked for
    ]
    bad = metric("items", "2024-05-01T13:30:00Z", 1, 1)
    bad["count"] = None
    for row in [*rows, bad]:
        fake.metrics[(row["accountId"], row["compositeKey"])] = row
    types = [
        "items",
        "predictionItems",
        "feedbackItems",
        "feedbackItemsByScorecard",
        "feedbackItemsByScore",
    ]
    got = {b.key: b for b in list_stored_buckets(client, "acct", types, T0, T1)}
    t = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    assert set(got) == {
        BucketKey("acct", "items", t(0), 60),
        BucketKey("acct", "items", t(59), 1),
        BucketKey("acct", "predictionItems", t(5), 5),
        BucketKey("acct", "feedbackItems", t(0), 15),
        BucketKey("acct", "feedbackItemsByScorecard", t(0), 15, "sc"),
        BucketKey("acct", "feedbackItemsByScore", t(0), 15, "sc", "s1"),
    }
    assert got[BucketKey("acct", "feedbackItems", t(0), 15)].value == BucketValue(
        3, True, {"changedCount": 1, "unchangedCount": 2, "invalidCount": 0}
    )
    assert got[BucketKey("acct", "feedbackItemsByScorecard", t(0), 15, "sc")].value.metadata is None
    assert got[BucketKey("acct", "items", t(0), 60)].updated_at == "2024-05-01T14:00:00.000000Z"
    for key, bucket in got.items():
        assert bucket.key.composite_key == fake.metrics[("acct", key.composite_key)]["compositeKey"]
    # Aliased queries (k<i> conditions), each a `between` on the composite key.
    conditions = [v for s in server.requests for k, v in s.variables.items() if k.startswith("k")]
    assert all(set(c) == {"between"} for c in conditions)
    assert {c["between"][0]["recordType"] for c in conditions} == set(types)


def test_stored_bucket_metadata_tolerance() -> None:
    row = metric("feedbackItems", "2024-05-01T13:00:00Z", 1, 0)
    assert decode_stored_bucket(row) is not None
    assert decode_stored_bucket(row).value.metadata is None  # type: ignore[union-attr]
    for raw, expected in [
        (None, None),
        ("not json", None),
        ('"text"', None),
        ('{"changedCount": 2, "note": "x"}', {"changedCount": 2}),
    ]:
        decoded = decode_stored_bucket({**row, "metadata": raw})
        assert decoded is not None and decoded.value.metadata == expected
    assert decode_stored_bucket({**row, "timeRangeStart": "garbage"}) is None


def test_stored_buckets_query_name() -> None:
    assert STORED_BUCKETS_QUERY == "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"


def test_run_all_keeps_order_and_raises_the_real_failure() -> None:
    from metrics_agg.graphql._parallel import Cancelled, run_all

    assert run_all([lambda stop, n=n: n for n in range(7)], 3) == list(range(7))
    started = threading.Event()

    def fail(stop: threading.Event) -> int:
        started.wait(5)
        raise ReadError("page 3 failed")

    def slow(stop: threading.Event) -> int:
        started.set()
        stop.wait(5)  # a running task stops at its next check
        raise Cancelled

    with pytest.raises(ReadError, match="page 3"):
        run_all([fail, slow, *[lambda stop: 0] * 5], 2)
