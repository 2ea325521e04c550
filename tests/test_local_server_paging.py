"""List queries over real HTTP: every record exactly once, key conditions in DynamoDB's
string order, limit-before-filter, sort direction, and nextToken forgery."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.models import SOURCE_MODELS

ACCOUNT = "acct-p"
LIST_QUERIES = [
    (spec.name, q, sk)
    for spec in SOURCE_MODELS.values()
    for q, sk in zip(spec.list_queries, spec.sort_keys, strict=True)
]


def list_doc(model: str, query: str, sk: str) -> str:
    return (
        f"query L($a: String!, $k: ModelStringKeyConditionInput, $d: ModelSortDirection, "
        f"$f: Model{model}FilterInput, $l: Int, $t: String) {{ r: {query}(accountId: $a, "
        f"{sk}: $k, sortDirection: $d, filter: $f, limit: $l, nextToken: $t) "
        f"{{ items {{ id {sk} }} nextToken }} }}"
    )


def page_all(
    client: LocalClient,
    doc: str,
    variables: dict[str, Any],
    between_pages: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    token, pages = None, 0
    while True:
        data = client.execute(doc, {**variables, "t": token})["r"]
        items.extend(data["items"])
        pages += 1
        token = data["nextToken"]
        if token is None:
            return items, pages
        if between_pages is not None:
            between_pages(pages)


def ts(i: int) -> str:
    return f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"


@pytest.mark.parametrize(("model", "query", "sk"), LIST_QUERIES)
def test_every_list_query_pages_each_record_once_with_inserts_between_pages(
    local_stack: LocalStack, local_client: LocalClient, model: str, query: str, sk: str
) -> None:
    base = [{"id": f"r{i:03d}", "accountId": ACCOUNT, sk: ts(i % 40)} for i in range(120)]
    # FeedbackItem without editedAt is not in the editedAt index (a sparse GSI).
    base.append({"id": "no-sk", "accountId": ACCOUNT, "createdAt": ts(1), "updatedAt": ts(1)})
    base.append({"id": "other", "accountId": "someone-else", sk: ts(5)})
    for rec in base:
        rec.setdefault("createdAt", ts(0))
        rec.setdefault("updatedAt", ts(0))
    local_stack.store.bulk_insert(model, base)
    added: list[str] = []

    def insert(page: int) -> None:
        rec = {
            "id": f"new{page:03d}",
            "accountId": ACCOUNT,
            "createdAt": ts(59),
            "updatedAt": ts(59),
            sk: ts(59),
        }
        local_client.create(model, **rec)
        added.append(rec["id"])

    items, pages = page_all(
        local_client, list_doc(model, query, sk), {"a": ACCOUNT, "l": 7}, insert
    )
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids))
    expected = {f"r{i:03d}" for i in range(120)} | set(added)
    if sk in ("createdAt", "updatedAt"):
        expected.add("no-sk")
    assert set(ids) == expected
    assert [it[sk] for it in items] == sorted(it[sk] for it in items)
    assert pages > 120 // 7


def test_key_conditions_compare_strings_like_dynamodb(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    stamps = [
        "2024-05-01T13:00:00Z",
        "2024-05-01T13:00:00.123Z",
        "2024-05-01T13:00:00.5Z",
        "2024-05-01T13:59:59.999Z",
        "2024-05-01T14:00:00Z",
        "2024-05-01T12:59:59Z",
    ]
    local_stack.store.bulk_insert(
        "Item",
        [
            {"id": f"i{n}", "accountId": ACCOUNT, "createdAt": s, "updatedAt": s}
            for n, s in enumerate(stamps)
        ],
    )
    doc = list_doc("Item", "listItemByAccountIdAndCreatedAt", "createdAt")

    def got(cond: dict[str, Any], **extra: Any) -> list[str]:
        items, _ = page_all(local_client, doc, {"a": ACCOUNT, "k": cond, **extra})
        return [it["createdAt"] for it in items]

    # "13:00:00.123Z" < "13:00:00Z" as strings ('.' < 'Z'): DynamoDB order, not time order.
    assert got({"between": ["2024-05-01T13:00:00Z", "2024-05-01T14:00:00Z"]}) == [
        "2024-05-01T13:00:00Z",
        "2024-05-01T13:59:59.999Z",
        "2024-05-01T14:00:00Z",
    ]
    assert got({"beginsWith": "2024-05-01T13"}) == [
        "2024-05-01T13:00:00.123Z",
        "2024-05-01T13:00:00.5Z",
        "2024-05-01T13:00:00Z",
        "2024-05-01T13:59:59.999Z",
    ]
    assert got({"lt": "2024-05-01T13:00:00.5Z"}) == [
        "2024-05-01T12:59:59Z",
        "2024-05-01T13:00:00.123Z",
    ]
    assert got({"gt": "2024-05-01T13:59:59.999Z"}) == ["2024-05-01T14:00:00Z"]
    assert got({"eq": "2024-05-01T14:00:00Z"}) == ["2024-05-01T14:00:00Z"]
    assert got({"ge": "2024-05-01T13:59:59.999Z"}, d="DESC", l=1) == [
        "2024-05-01T14:00:00Z",
        "2024-05-01T13:59:59.999Z",
    ]


def test_limit_applies_before_filter_so_pages_can_be_empty(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    local_stack.store.bulk_insert(
        "Item",
        [
            {
                "id": f"i{n:02d}",
                "accountId": ACCOUNT,
                "createdAt": ts(n),
                "updatedAt": ts(n),
                "createdByType": "prediction" if n >= 15 else "other",
            }
            for n in range(20)
        ],
    )
    doc = list_doc("Item", "listItemByAccountIdAndCreatedAt", "createdAt")
    first = local_client.execute(
        doc, {"a": ACCOUNT, "l": 5, "f": {"createdByType": {"eq": "prediction"}}}
    )["r"]
    assert first["items"] == [] and first["nextToken"]
    items, pages = page_all(
        local_client, doc, {"a": ACCOUNT, "l": 5, "f": {"createdByType": {"eq": "prediction"}}}
    )
    assert [it["id"] for it in items] == [f"i{n}" for n in range(15, 20)]
    assert pages == 5  # 4 full pages, then an empty last page: limit reached on page 4


def test_aggregated_metrics_composite_key_queries(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    rows = []
    for rt in ("items", "predictionItems", "feedbackItemsByScore"):
        for minute in range(3):
            start = f"2024-05-01T10:0{minute}:00Z"
            rows.append(
                {
                    "accountId": ACCOUNT,
                    "compositeKey": f"{rt}#{start}#1",
                    "recordType": rt,
                    "timeRangeStart": start,
                    "timeRangeEnd": start,
                    "numberOfMinutes": 1,
                    "count": minute,
                    "complete": True,
                    "scorecardId": "sc1",
                    "scoreId": "s1",
                    "createdAt": start,
                    "updatedAt": start,
                }
            )
    local_stack.store.bulk_insert("AggregatedMetrics", rows)
    by_type = (
        "query Q($a: String!, $t: String, "
        "$k: ModelAggregatedMetricsByAccountRecordTypeCompositeKeyConditionInput) "
        "{ r: listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart("
        "accountId: $a, recordTypeTimeRangeStart: $k, limit: 2, nextToken: $t) "
        "{ items { compositeKey } nextToken } }"
    )
    cond = {
        "between": [
            {"recordType": "items", "timeRangeStart": "2024-05-01T10:01:00Z"},
            {"recordType": "items", "timeRangeStart": "2024-05-01T10:59:00Z"},
        ]
    }
    items, _ = page_all(local_client, by_type, {"a": ACCOUNT, "k": cond})
    assert [it["compositeKey"] for it in items] == [
        "items#2024-05-01T10:01:00Z#1",
        "items#2024-05-01T10:02:00Z#1",
    ]
    items, _ = page_all(
        local_client, by_type, {"a": ACCOUNT, "k": {"beginsWith": {"recordType": "prediction"}}}
    )
    assert len(items) == 3
    by_score = (
        "query Q($s: String!, $t: String, "
        "$k: ModelAggregatedMetricsByScoreTimeRangeRecordCompositeKeyConditionInput) "
        "{ r: listAggregatedMetricsByScoreIdAndTimeRangeStartAndRecordType("
        "scoreId: $s, timeRangeStartRecordType: $k, nextToken: $t) "
        "{ items { compositeKey } nextToken } }"
    )
    items, _ = page_all(
        local_client,
        by_score,
        {"s": "s1", "k": {"eq": {"timeRangeStart": "2024-05-01T10:02:00Z", "recordType": "items"}}},
    )
    assert [it["compositeKey"] for it in items] == ["items#2024-05-01T10:02:00Z#1"]


def test_forged_or_foreign_next_token_is_a_clear_error(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    local_stack.store.bulk_insert(
        "Task",
        [
            {"id": f"t{n}", "accountId": ACCOUNT, "createdAt": ts(n), "updatedAt": ts(n)}
            for n in range(5)
        ],
    )
    doc = list_doc("Task", "listTaskByAccountIdAndUpdatedAt", "updatedAt")
    token = local_client.execute(doc, {"a": ACCOUNT, "l": 2})["r"]["nextToken"]
    raw = bytearray(base64.b64decode(token))
    raw[3] ^= 1
    forged = base64.b64encode(bytes(raw)).decode()
    for bad, variables in (
        (forged, {"a": ACCOUNT}),
        ("not a token", {"a": ACCOUNT}),
        (token, {"a": "another-account"}),
        (token, {"a": ACCOUNT, "d": "DESC"}),
    ):
        status, body = local_client.post(doc, {**variables, "l": 2, "t": bad})
        assert status == 200 and body["data"]["r"] is None
        [err] = body["errors"]
        assert err["errorType"] == "DynamoDB:UserIllegalArgumentException"
        assert "Invalid pagination token given" in err["message"]
