"""Documents shaped like the ones an existing Amplify aggregation Lambda sends run unchanged
against the local server (issue 3): inline `between: [$start, $end]` lists on sort keys,
paging by `nextToken`, the composite-key index query a dashboard uses, and
create-then-update of AggregatedMetrics with a full input. These documents are written as a
client would hand-write them, not generated from our operations, so a drift between the
schema and the Amplify-generated API shows up here.

Plexus's own AggregatedMetrics documents (its dashboard's query and its Python client's
queries and mutations), copied unchanged from AnthusAI/Plexus into tests/plexus_documents/
with their attribution, run here as Plexus sends them (issue 12, item 4).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.local.server import LocalClient, LocalStack, seed_records
from metrics_agg.local.server.client import LocalApiError

LIST_ITEMS = """
query ListItemsForWindow($accountId: String!, $startTime: String!, $endTime: String!,
                         $limit: Int, $nextToken: String) {
  listItemByAccountIdAndCreatedAt(
    accountId: $accountId
    createdAt: { between: [$startTime, $endTime] }
    sortDirection: ASC
    limit: $limit
    nextToken: $nextToken
  ) {
    items { id createdAt createdByType }
    nextToken
  }
}
"""

LIST_FEEDBACK = """
query ListFeedback($accountId: String!, $startTime: String!, $endTime: String!,
                   $nextToken: String) {
  listFeedbackItemByAccountIdAndEditedAt(
    accountId: $accountId
    editedAt: { between: [$startTime, $endTime] }
    limit: 1000
    nextToken: $nextToken
  ) {
    items { id scorecardId scoreId initialAnswerValue finalAnswerValue isInvalid editedAt }
    nextToken
  }
}
"""

CREATE_METRICS = """
mutation CreateAggregatedMetrics($input: CreateAggregatedMetricsInput!) {
  createAggregatedMetrics(input: $input) {
    accountId compositeKey recordType timeRangeStart timeRangeEnd numberOfMinutes count
    complete metadata createdAt updatedAt
  }
}
"""

UPDATE_METRICS = """
mutation UpdateAggregatedMetrics($input: UpdateAggregatedMetricsInput!) {
  updateAggregatedMetrics(input: $input) { compositeKey count complete updatedAt }
}
"""

DASHBOARD_QUERY = """
query Dashboard($accountId: String!, $recordType: String!, $start: String!, $end: String!) {
  listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart(
    accountId: $accountId
    recordTypeTimeRangeStart: {
      between: [
        { recordType: $recordType, timeRangeStart: $start }
        { recordType: $recordType, timeRangeStart: $end }
      ]
    }
  ) {
    items { compositeKey count numberOfMinutes timeRangeStart }
    nextToken
  }
}
"""


def _item(n: int, minute: int) -> dict[str, Any]:
    ts = f"2024-05-01T10:{minute:02d}:00.000Z"
    kind = "prediction" if n % 2 else "evaluation"
    return {
        "id": f"i{n:03d}",
        "accountId": "acme",
        "createdAt": ts,
        "updatedAt": ts,
        "createdByType": kind,
    }


def test_hand_written_list_query_pages_every_record_once(local_client: LocalClient) -> None:
    for n in range(25):
        local_client.create("Item", **_item(n, n % 60))
    local_client.create("Item", **{**_item(99, 0), "createdAt": "2024-05-01T11:30:00.000Z"})
    seen: list[str] = []
    token: str | None = None
    while True:
        data = local_client.execute(
            LIST_ITEMS,
            {
                "accountId": "acme",
                "startTime": "2024-05-01T10:00:00.000Z",
                "endTime": "2024-05-01T10:59:59.999Z",
                "limit": 7,
                "nextToken": token,
            },
        )
        page = data["listItemByAccountIdAndCreatedAt"]
        seen += [item["id"] for item in page["items"]]
        token = page["nextToken"]
        if token is None:
            break
    # Each record once, in createdAt order (minute n for item n); the 11:30 one is outside.
    assert seen == [f"i{n:03d}" for n in range(25)]


def test_feedback_list_by_edited_at(local_client: LocalClient) -> None:
    local_client.create(
        "FeedbackItem",
        id="f1",
        accountId="acme",
        scorecardId="sc",
        scoreId="s1",
        initialAnswerValue="yes",
        finalAnswerValue="no",
        editedAt="2024-05-01T10:05:00.000Z",
    )
    data = local_client.execute(
        LIST_FEEDBACK,
        {
            "accountId": "acme",
            "startTime": "2024-05-01T10:00:00.000Z",
            "endTime": "2024-05-01T11:00:00.000Z",
            "nextToken": None,
        },
    )
    [item] = data["listFeedbackItemByAccountIdAndEditedAt"]["items"]
    assert (item["id"], item["finalAnswerValue"], item["isInvalid"]) == ("f1", "no", None)


def test_create_then_update_metrics_and_read_them_like_a_dashboard(
    local_client: LocalClient,
) -> None:
    base = {
        "accountId": "acme",
        "recordType": "items",
        "numberOfMinutes": 5,
        "complete": False,
        "createdAt": "2024-05-01T10:06:00.000000Z",
        "updatedAt": "2024-05-01T10:06:00.000000Z",
    }
    for start, end, count in (("10:00", "10:05", 3), ("10:05", "10:10", 1)):
        local_client.execute(
            CREATE_METRICS,
            {
                "input": {
                    **base,
                    "compositeKey": f"items#2024-05-01T{start}:00Z#5",
                    "timeRangeStart": f"2024-05-01T{start}:00Z",
                    "timeRangeEnd": f"2024-05-01T{end}:00Z",
                    "count": count,
                    "metadata": None,
                }
            },
        )
    updated = local_client.execute(
        UPDATE_METRICS,
        {
            "input": {
                "accountId": "acme",
                "compositeKey": "items#2024-05-01T10:05:00Z#5",
                "recordType": "items",
                "timeRangeStart": "2024-05-01T10:05:00Z",
                "count": 2,
                "complete": True,
                "updatedAt": "2024-05-01T10:11:00.000000Z",
            }
        },
    )["updateAggregatedMetrics"]
    assert (updated["count"], updated["complete"]) == (2, True)
    data = local_client.execute(
        DASHBOARD_QUERY,
        {
            "accountId": "acme",
            "recordType": "items",
            "start": "2024-05-01T10:00:00Z",
            "end": "2024-05-01T10:59:59Z",
        },
    )
    items = data["listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"]["items"]
    assert [(i["timeRangeStart"], i["count"]) for i in items] == [
        ("2024-05-01T10:00:00Z", 3),
        ("2024-05-01T10:05:00Z", 2),
    ]


# -- Plexus's own documents, copied from upstream (tests/plexus_documents/), unchanged ------

PLEXUS_DOCUMENTS = Path(__file__).parent / "plexus_documents"


def _plexus_buckets(local_stack: LocalStack) -> None:
    """Buckets written by this system's recount: Items in 10:00-11:00 and 11:00-12:00."""
    start = datetime(2024, 5, 1, 10, tzinfo=UTC)
    seed_records(local_stack.store, "Item", "acme", 200, start, start + timedelta(hours=2), seed=3)
    outcome = pipeline.recount(
        config=local_stack.config(),
        account_id="acme",
        model="Item",
        start=start,
        end=start + timedelta(hours=2),
    )
    assert outcome.ok


def _truth(local_stack: LocalStack, record_type: str, minutes: int) -> dict[str, int]:
    return {
        r["timeRangeStart"]: r["count"]
        for r in local_stack.store.all_metrics("acme")
        if r["recordType"] == record_type and r["numberOfMinutes"] == minutes
    }


def test_plexus_dashboard_query_runs_unchanged(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    _plexus_buckets(local_stack)
    query = (PLEXUS_DOCUMENTS / "dashboard_useUnifiedMetrics.graphql").read_text()
    # The dashboard's variables: JavaScript's toISOString() (milliseconds).
    data = local_client.execute(
        query,
        {
            "accountId": "acme",
            "recordType": "predictionItems",
            "startTime": "2024-05-01T10:00:00.000Z",
            "endTime": "2024-05-01T11:00:00.000Z",
        },
    )
    page = data["listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"]
    items = page["items"]
    assert page["nextToken"] is None
    starts = [i["timeRangeStart"] for i in items]
    assert starts == sorted(starts, reverse=True)  # sortDirection: DESC
    # "…T11:00:00Z" sorts after the bound "…T11:00:00.000Z": the 11:00 buckets are out,
    # exactly as DynamoDB compares the composite key strings.
    assert {(i["timeRangeStart"], i["count"]) for i in items if i["numberOfMinutes"] == 60} == {
        ("2024-05-01T10:00:00Z", _truth(local_stack, "predictionItems", 60)["2024-05-01T10:00:00Z"])
    }
    assert sum(i["count"] for i in items if i["numberOfMinutes"] == 1) == sum(
        n for ts, n in _truth(local_stack, "predictionItems", 1).items() if ts < "2024-05-01T11"
    )
    # Never set by this system: null in the dashboard's read.
    assert {(i["cost"], i["errorCount"]) for i in items} == {(None, None)}


def test_plexus_python_client_queries_run_unchanged(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    from plexus_documents import aggregated_metrics_client as plexus

    _plexus_buckets(local_stack)
    # Variables as the client builds them: isoformat().replace('+00:00', 'Z').
    start = datetime(2024, 5, 1, 10, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    end = datetime(2024, 5, 1, 12, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    by_type = local_client.execute(
        plexus.LIST_BY_RECORD_TYPE,
        {"accountId": "acme", "recordType": "items", "startTime": start, "endTime": end},
    )["listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"]
    assert {i["recordType"] for i in by_type["items"]} == {"items"}
    hours = {
        i["timeRangeStart"]: i["count"] for i in by_type["items"] if i["numberOfMinutes"] == 60
    }
    assert hours == _truth(local_stack, "items", 60)
    # `$startTime: AWSDateTime!` inside the byAccountTimeRangeRecord key: valid upstream,
    # rejected by this schema before timeRangeStart was AWSDateTime there (issue 12).
    by_time = local_client.execute(
        plexus.LIST_BY_TIME_RANGE, {"accountId": "acme", "startTime": "2024-05-01T11:00:00Z"}
    )["listAggregatedMetricsByAccountIdAndTimeRangeStartAndRecordType"]
    got = by_time["items"]
    assert got and min(i["timeRangeStart"] for i in got) == "2024-05-01T11:00:00Z"
    assert len(got) == sum(
        1 for r in local_stack.store.all_metrics("acme") if r["timeRangeStart"] >= "2024-05-01T11"
    )
    # ...and a value AppSync's AWSDateTime rejects is rejected here too.
    with pytest.raises(LocalApiError, match="DateTime"):
        local_client.execute(
            plexus.LIST_BY_TIME_RANGE, {"accountId": "acme", "startTime": "2024-05-01"}
        )


def test_plexus_python_client_create_or_update_runs_unchanged(local_client: LocalClient) -> None:
    from plexus_documents import aggregated_metrics_client as plexus

    base = {
        "accountId": "acme",
        "compositeKey": "scoreResults#2024-05-01T10:00:00Z#60",
        "recordType": "scoreResults",
        "timeRangeStart": "2024-05-01T10:00:00Z",
        "timeRangeEnd": "2024-05-01T11:00:00Z",
        "numberOfMinutes": 60,
        "count": 3,
        "complete": False,
        "updatedAt": "2024-05-01T10:30:00.123456Z",
        "cost": 12,  # Int upstream (a.integer())
    }
    # create_or_update tries the update first: no such key, a conditional failure...
    with pytest.raises(LocalApiError, match="ConditionalCheckFailed"):
        local_client.execute(plexus.UPDATE_MUTATION, {"input": base})
    # ...and falls back to the create.
    created = local_client.execute(
        plexus.CREATE_MUTATION, {"input": {**base, "createdAt": base["updatedAt"]}}
    )["createAggregatedMetrics"]
    assert (created["count"], created["cost"], created["metadata"]) == (3, 12, None)
    updated = local_client.execute(
        plexus.UPDATE_MUTATION, {"input": {**base, "count": 4, "complete": True}}
    )["updateAggregatedMetrics"]
    assert (updated["count"], updated["complete"]) == (4, True)
    # cost is Int, not Float.
    with pytest.raises(LocalApiError, match="cost"):
        local_client.execute(plexus.UPDATE_MUTATION, {"input": {**base, "cost": 1.5}})


def test_condition_input_has_no_primary_key_fields(local_client: LocalClient) -> None:
    # Amplify's ModelAggregatedMetricsConditionInput leaves out accountId and compositeKey:
    # AppSync rejects a condition naming them, and so does the local server.
    for name in ("accountId", "compositeKey"):
        with pytest.raises(LocalApiError, match=name):
            local_client.execute(
                "mutation U($input: UpdateAggregatedMetricsInput!, "
                "$condition: ModelAggregatedMetricsConditionInput) {"
                " updateAggregatedMetrics(input: $input, condition: $condition) { count } }",
                {
                    "input": {"accountId": "acme", "compositeKey": "k", "count": 1},
                    "condition": {name: {"eq": "x"}},
                },
            )
