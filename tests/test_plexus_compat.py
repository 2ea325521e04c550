"""Documents shaped like the ones an existing Amplify aggregation Lambda sends run unchanged
against the local server (issue 3): inline `between: [$start, $end]` lists on sort keys,
paging by `nextToken`, the composite-key index query a dashboard uses, and
create-then-update of AggregatedMetrics with a full input. These documents are written as a
client would hand-write them, not generated from our operations, so a drift between the
schema and the Amplify-generated API shows up here.
"""

from __future__ import annotations

from typing import Any

from metrics_agg.local_server import LocalClient

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
