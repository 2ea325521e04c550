"""list_source_records / list_stored_buckets against the in-process AppSync fake."""

from __future__ import annotations

import itertools
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
    list_source_records,
    list_stored_buckets,
    sort_key_ranges,
)
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.models import SOURCE_MODELS, BucketKey, BucketValue

T0 = datetime(2024, 5, 1, 13, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
ITEM = SOURCE_MODELS["Item"]
FEEDBACK = SOURCE_MODELS["FeedbackItem"]


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
    got = list_source_records(client, ITEM, 0, "acct", T0, T1)
    assert sorted(r["createdAt"] for r in got) == sorted(INSIDE)
    assert len({r["id"] for r in got}) == len(got)
    assert set(got[0]) == {"id", "accountId", "createdAt", "updatedAt", "createdByType"}
    calls = [json.loads(s.raw)["variables"] for s in server.requests]
    ranges = {tuple(v["createdAt"]["between"]) for v in calls}
    assert ranges == set(sort_key_ranges(T0, T1, 4))
    assert all(v["limit"] == 3 and v["accountId"] == "acct" for v in calls)
    # Empty pages with a nextToken were followed, not taken for the end.
    assert sum(1 for v in calls if v["nextToken"] is None) == 4


@pytest.mark.parametrize(
    ("start", "end", "parts"),
    [
        (T0, T1, 8),
        (T0, T0 + timedelta(minutes=1), 8),
        (T0 + timedelta(seconds=30), T1, 3),
        (T0, T0 + timedelta(days=7), 16),
        (T0, T1 + timedelta(microseconds=1), 1),
    ],
)
def test_sort_key_ranges_partition_the_margin(start: datetime, end: datetime, parts: int) -> None:
    ranges = sort_key_ranges(start, end, parts)
    assert 1 <= len(ranges) <= parts
    lo = (start.replace(second=0, microsecond=0) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert ranges[0][0] == lo
    last_minute = end - timedelta(microseconds=1)
    hi = last_minute.replace(second=0, microsecond=0) + timedelta(minutes=2)
    assert ranges[-1][1] == hi.strftime("%Y-%m-%dT%H:%M")
    for (a, b), (c, _) in itertools.pairwise(ranges):
        assert a < b == c  # contiguous: no gap, shared bound only (not an AWSDateTime)


def test_sort_key_ranges_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="naive"):
        sort_key_ranges(datetime(2024, 5, 1), T1, 2)
    with pytest.raises(ValueError, match="empty"):
        sort_key_ranges(T1, T0, 2)


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
    assert list_source_records(client, FEEDBACK, 1, "acct", T0, T1) == [row]
    assert list_source_records(client, FEEDBACK, 0, "acct", T0, T1) == []
    with pytest.raises(ValueError, match="index 2"):
        list_source_records(client, FEEDBACK, 2, "acct", T0, T1)
    variables = [s.variables for s in server.requests]
    assert any("updatedAt" in v for v in variables) and any("editedAt" in v for v in variables)


def test_duplicate_ids_keep_the_newest_sort_key(client: GraphQLClient, fake: AppSyncFake) -> None:
    older, newer = items("2024-05-01T13:01:00Z", "2024-05-01T13:50:00Z")
    newer["id"] = older["id"]  # moved by an update between two sub-range reads
    fake.records["listItemByAccountIdAndCreatedAt"] = [older, newer]
    assert list_source_records(client, ITEM, 0, "acct", T0, T1) == [newer]


def test_transient_page_failure_is_retried(client: GraphQLClient, fake: AppSyncFake) -> None:
    fake.records["listItemByAccountIdAndCreatedAt"] = items(*INSIDE)
    calls = iter(range(1000))
    fake.fail = lambda field, args: Reply(503, {}) if next(calls) == 5 else None
    got = list_source_records(client, ITEM, 0, "acct", T0, T1, parallelism=2, page_limit=2)
    assert len(got) == len(INSIDE)


def test_any_failed_page_fails_the_whole_read(client: GraphQLClient, fake: AppSyncFake) -> None:
    fake.records["listItemByAccountIdAndCreatedAt"] = items(*INSIDE)
    fake.fail = lambda field, args: (
        Reply(400, {"errors": [{"errorType": "BadRequestException", "message": "no"}]})
        if args.get("nextToken") == "o:2" and args["createdAt"]["between"][0].endswith("13:14")
        else None
    )
    with pytest.raises(ReadError) as info:
        list_source_records(client, ITEM, 0, "acct", T0, T1, parallelism=4, page_limit=2)
    assert info.value.error_types == ("BadRequestException",)
    # Workers stopped: none left behind.
    assert not [t for t in threading.enumerate() if t.name.startswith("metrics-agg-io")]


def test_malformed_connection_and_stuck_token_are_read_errors(
    client: GraphQLClient, fake: AppSyncFake
) -> None:
    fake.fail = lambda field, args: Reply(200, {"data": {field: None}})
    with pytest.raises(ReadError, match="malformed"):
        list_source_records(client, ITEM, 0, "acct", T0, T1, parallelism=1)
    fake.fail = lambda field, args: Reply(
        200, {"data": {field: {"items": [], "nextToken": "same"}}}
    )
    with pytest.raises(ReadError, match="did not advance"):
        list_source_records(client, ITEM, 0, "acct", T0, T1, parallelism=1)


def test_deadline_propagates(client: GraphQLClient) -> None:
    with pytest.raises(DeadlineExceeded):
        list_source_records(client, ITEM, 0, "acct", T0, T1, deadline=Deadline.after(0))


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
