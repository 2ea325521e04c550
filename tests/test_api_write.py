"""write_buckets: aliased conditional mutations, per-alias results in write order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fakes_graphql import AppSyncFake, FakeGraphQLServer, Reply
from metrics_agg.config import Config
from metrics_agg.errors import WriteError
from metrics_agg.graphql.api import bucket_input, write_buckets
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.graphql.writes import _padded
from metrics_agg.models import BucketKey, BucketValue, BucketWrite

T0 = datetime(2024, 5, 1, 13, tzinfo=UTC)
SNAP = datetime(2024, 5, 1, 14, 2, 3, 4000, tzinfo=UTC)


@pytest.fixture
def fake() -> AppSyncFake:
    return AppSyncFake()


@pytest.fixture
def server(fake: AppSyncFake) -> Iterator[FakeGraphQLServer]:
    with FakeGraphQLServer(fake) as srv:
        yield srv


@pytest.fixture
def client(server: FakeGraphQLServer) -> Iterator[GraphQLClient]:
    config = Config(
        endpoint=server.endpoint,
        api_key="k",
        write_parallelism=2,
        mutations_per_request=3,
        max_attempts=3,
    )
    with GraphQLClient(config, sleep=lambda s: None) as c:
        yield c


def write(
    minute: int,
    count: int,
    *,
    create: bool,
    record_type: str = "items",
    snapshot: datetime = SNAP,
    **key: str,
) -> BucketWrite:
    meta = (
        {"changedCount": count, "unchangedCount": 0, "invalidCount": 0}
        if record_type.startswith("feedback")
        else None
    )
    return BucketWrite(
        BucketKey(
            "acct",
            record_type,
            T0 + timedelta(minutes=minute),
            1,
            key.get("scorecard_id"),
            key.get("score_id"),
        ),
        BucketValue(count, True, meta),
        snapshot,
        create,
    )


def test_create_input_has_every_set_field_in_fixed_widths_and_no_nulls() -> None:
    w = write(
        5, 4, create=True, record_type="feedbackItemsByScore", scorecard_id="sc", score_id="s1"
    )
    assert bucket_input(w) == {
        "accountId": "acct",
        "compositeKey": "feedbackItemsByScore#s1#2024-05-01T13:05:00Z#1",
        "recordType": "feedbackItemsByScore",
        "scorecardId": "sc",
        "scoreId": "s1",
        "timeRangeStart": "2024-05-01T13:05:00Z",
        "timeRangeEnd": "2024-05-01T13:06:00Z",
        "numberOfMinutes": 1,
        "count": 4,
        "complete": True,
        "metadata": '{"changedCount":4,"unchangedCount":0,"invalidCount":0}',
        "createdAt": "2024-05-01T14:02:03.004000Z",
        "updatedAt": "2024-05-01T14:02:03.004000Z",
    }
    # errorCount: only for models with error rules, then on creates and updates alike.
    for create in (True, False):
        w = write(5, 4, create=create)
        errored = BucketWrite(w.key, BucketValue(4, True, None, 3), SNAP, create)
        assert bucket_input(errored)["errorCount"] == 3
        assert "errorCount" not in bucket_input(w)


def test_update_input_resends_sort_key_fields_and_keeps_created_at() -> None:
    got = bucket_input(write(5, 4, create=False))
    assert got["recordType"] == "items" and got["timeRangeStart"] == "2024-05-01T13:05:00Z"
    assert not {"scorecardId", "scoreId", "metadata", "createdAt", "cost"} & got.keys()
    created = datetime(2024, 5, 1, 13, 5, tzinfo=UTC)
    w = BucketWrite(write(5, 4, create=False).key, BucketValue(4, True), SNAP, False, created)
    assert bucket_input(w)["createdAt"] == "2024-05-01T13:05:00.000000Z"


def test_batched_writes_report_per_alias_results_in_order(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    existing = [write(m, 1, create=True, snapshot=SNAP - timedelta(minutes=1)) for m in (1, 2)]
    newer = write(3, 1, create=True, snapshot=SNAP + timedelta(minutes=1))
    assert all(r.ok for r in write_buckets(client, [*existing, newer]))
    server.requests.clear()

    writes = [
        write(10, 5, create=True),
        write(1, 6, create=False),  # stored older: applied
        write(1, 0, create=True),  # key exists: conflict
        write(3, 9, create=False),  # stored newer snapshot: conflict
        write(11, 2, create=True, record_type="feedbackItemsByScorecard", scorecard_id="sc"),
        write(12, 3, create=False),  # missing key: conflict (no upsert)
        write(2, 7, create=False),
    ]
    results = write_buckets(client, writes)
    assert [r.write for r in results] == writes
    assert [(r.ok, r.conflict) for r in results] == [
        (True, False),
        (True, False),
        (False, True),
        (False, True),
        (True, False),
        (False, True),
        (True, False),
    ]
    assert all(r.error is None for r in results if r.ok)
    assert results[2].error is not None and results[2].error.is_conditional_check_failed
    assert len(server.requests) == 3  # 3 mutations per request
    assert fake.metrics[("acct", "items#2024-05-01T13:01:00Z#1")]["count"] == 6
    assert fake.metrics[("acct", "items#2024-05-01T13:03:00Z#1")]["count"] == 1
    stored = fake.metrics[("acct", "feedbackItemsByScorecard#sc#2024-05-01T13:11:00Z#1")]
    assert stored["metadata"] == '{"changedCount":2,"unchangedCount":0,"invalidCount":0}'
    # Updates carry the snapshot condition; creates carry none.
    for seen in server.requests:
        assert seen.variables["w0"] == {"updatedAt": {"le": "2024-05-01T14:02:03.004000Z"}}
        assert "updateAggregatedMetrics(input: $u0, condition: $w0)" in seen.payload["query"]
        if "c0" in seen.variables:
            assert "createAggregatedMetrics(input: $c0) @skip(if: $sc0) {" in seen.payload["query"]


def test_alias_error_that_is_not_a_conflict(
    server: FakeGraphQLServer, client: GraphQLClient
) -> None:
    server.script = [
        Reply(
            200,
            {
                "data": {"c0": None, "c1": {"compositeKey": "x"}},
                "errors": [
                    {"errorType": "DynamoDB:DynamoDbException", "message": "boom", "path": ["c0"]}
                ],
            },
        )
    ]
    results = write_buckets(client, [write(1, 1, create=True), write(2, 1, create=True)])
    assert [(r.ok, r.conflict) for r in results] == [(False, False), (True, False)]
    assert (
        results[0].error is not None and results[0].error.error_type == "DynamoDB:DynamoDbException"
    )


def test_whole_request_failure_raises(server: FakeGraphQLServer, client: GraphQLClient) -> None:
    server.script = [Reply(500, {})] * 3
    with pytest.raises(WriteError) as info:
        write_buckets(client, [write(1, 1, create=True)], parallelism=1)
    assert info.value.status == 500 and info.value.attempts == 3


def test_throttled_request_is_retried(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    server.script = [
        Reply(
            200,
            {
                "data": {"c0": None},
                "errors": [
                    {
                        "errorType": "DynamoDB:ProvisionedThroughputExceededException",
                        "message": "slow",
                        "path": ["c0"],
                    }
                ],
            },
        )
    ]
    (result,) = write_buckets(client, [write(1, 1, create=True)])
    assert result.ok and len(server.requests) == 2


def test_throttled_aliases_alone_are_re_sent(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    throttled = {
        "errorType": "DynamoDB:ProvisionedThroughputExceededException",
        "message": "slow",
        "path": ["c1"],
    }
    server.script = [
        Reply(200, {"data": {"c0": {"compositeKey": "a"}, "c1": None}, "errors": [throttled]})
    ]
    writes = [write(1, 1, create=True), write(2, 2, create=True)]
    results = write_buckets(client, writes, parallelism=1)
    assert [r.ok for r in results] == [True, True] and [r.write for r in results] == writes
    assert len(server.requests) == 2
    assert server.requests[1].variables["c0"]["compositeKey"] == "items#2024-05-01T13:02:00Z#1"
    assert "c1" not in server.requests[1].variables


def test_isolated_re_send_failure_fails_only_the_writes_it_carried(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    """Writes of two units share a request: the first lands, the second is throttled and
    its re-send fails as a whole. Only the second gets the request error."""
    throttled = {
        "errorType": "DynamoDB:ProvisionedThroughputExceededException",
        "message": "slow",
        "path": ["c1"],
    }
    server.script = [
        Reply(200, {"data": {"c0": {"compositeKey": "a"}, "c1": None}, "errors": [throttled]}),
        *[Reply(500, {})] * 3,
    ]
    first = write(1, 1, create=True)
    second = write(2, 2, create=True)
    second = BucketWrite(
        BucketKey("acct-2", "items", second.key.start, 1),
        second.value,
        second.snapshot_time,
        second.create,
    )
    landed, failed = write_buckets(client, [first, second], parallelism=1, isolate=True)
    assert landed.write == first and landed.ok and landed.request_error is None
    assert failed.write == second and not failed.ok
    assert isinstance(failed.request_error, WriteError) and failed.request_error.status == 500
    assert len(server.requests) == 4


def test_isolated_first_request_failure_fails_every_write_of_it(
    server: FakeGraphQLServer, client: GraphQLClient
) -> None:
    server.script = [Reply(500, {})] * 3
    writes = [write(1, 1, create=True), write(2, 2, create=True)]
    results = write_buckets(client, writes, parallelism=1, isolate=True)
    assert [r.write for r in results] == writes
    assert all(isinstance(r.request_error, WriteError) and not r.ok for r in results)


def test_no_writes_no_requests(server: FakeGraphQLServer, client: GraphQLClient) -> None:
    assert write_buckets(client, []) == []
    assert client.request_count == 0


def test_padded_aliases_are_skipped_and_shapes_are_few(
    server: FakeGraphQLServer, client: GraphQLClient, fake: AppSyncFake
) -> None:
    """3 creates and 3 updates go as 4 + 4 aliases, the padding skipped: it never runs."""
    for minute in (1, 2, 3):  # stored rows for the updates
        write_buckets(client, [write(minute, 1, create=True)])
    server.requests.clear()
    ran: list[str] = []
    fake.fail = lambda name, _args: ran.append(name)  # type: ignore[func-returns-value]
    writes = [write(m, 5, create=False) for m in (1, 2, 3)]
    writes += [write(m, 7, create=True) for m in (11, 12, 13)]
    results = write_buckets(client, writes, per_request=6)
    assert [(r.ok, r.conflict) for r in results] == [(True, False)] * 6
    assert len(server.requests) == 1
    query = server.requests[0].payload["query"]
    assert query.startswith("mutation WriteAggregatedMetrics_4c_4u(")
    assert server.requests[0].variables["sc3"] is True
    assert server.requests[0].variables["su3"] is True
    assert sorted(ran) == ["createAggregatedMetrics"] * 3 + ["updateAggregatedMetrics"] * 3
    assert fake.metrics[("acct", "items#2024-05-01T13:01:00Z#1")]["count"] == 5
    # Requests of up to 25 writes come in 46 documents, not one per (creates, updates): 351.
    shapes = {(_padded(c), _padded(u)) for c in range(26) for u in range(26 - c)}
    assert len(shapes) == 46
