"""The local AppSync server over real HTTP: auth, Amplify mutation semantics, conditions,
scalars, and the FaultPlan switches other workstreams' tests rely on."""

from __future__ import annotations

import re
import socket
from typing import Any

import orjson
import pytest
import urllib3

from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server.conditions import matches

ACCOUNT = "acct-1"
CCF = "DynamoDB:ConditionalCheckFailedException"
AWS_NOW = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

CREATE_METRICS = """
mutation W($a: CreateAggregatedMetricsInput!, $b: CreateAggregatedMetricsInput!) {
  a: createAggregatedMetrics(input: $a) { accountId compositeKey count metadata }
  b: createAggregatedMetrics(input: $b) { accountId compositeKey count }
}"""
UPDATE_METRICS = """
mutation U($a: UpdateAggregatedMetricsInput!, $c: ModelAggregatedMetricsConditionInput) {
  a: updateAggregatedMetrics(input: $a, condition: $c) { compositeKey count updatedAt }
}"""


def bucket(
    key: str = "items#2024-05-01T10:00:00Z#1", count: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "compositeKey": key,
        "recordType": "items",
        "timeRangeStart": "2024-05-01T10:00:00Z",
        "timeRangeEnd": "2024-05-01T10:01:00Z",
        "numberOfMinutes": 1,
        "count": count,
        "complete": False,
        "createdAt": "2024-05-01T10:02:00.000000Z",
        "updatedAt": "2024-05-01T10:02:00.000000Z",
        **extra,
    }


def raw_post(stack: LocalStack, body: bytes, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
    with urllib3.PoolManager(retries=False) as http:
        return http.request("POST", stack.endpoint, body=body, headers=headers)


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}])
def test_missing_or_wrong_api_key_is_401_unauthorized(
    local_stack: LocalStack, headers: dict[str, str]
) -> None:
    resp = raw_post(local_stack, b'{"query": "{ __typename }"}', headers)
    assert resp.status == 401
    assert orjson.loads(resp.data) == {
        "errors": [
            {
                "errorType": "UnauthorizedException",
                "message": "You are not authorized to make this call.",
            }
        ]
    }
    assert local_stack.faults.requests == 0


def test_malformed_body_is_400(local_stack: LocalStack) -> None:
    resp = raw_post(local_stack, b"{not json", {"x-api-key": local_stack.api_key})
    assert resp.status == 400
    assert "query" in orjson.loads(resp.data)["errors"][0]["message"]


def test_create_fills_id_and_timestamps_and_update_delete(local_client: LocalClient) -> None:
    item = local_client.create("Item", accountId=ACCOUNT, createdByType="prediction")
    assert item["id"] and AWS_NOW.fullmatch(item["createdAt"])
    assert item["updatedAt"] == item["createdAt"]
    given = local_client.create(
        "Item", id="fixed", accountId=ACCOUNT, createdAt="2024-05-01T10:00:00.123Z"
    )
    assert given["createdAt"] == "2024-05-01T10:00:00.123Z" and given["id"] == "fixed"
    upd = local_client.update("Item", "fixed", description="d", createdByType=None)
    assert upd["description"] == "d" and upd["createdByType"] is None
    assert upd["createdAt"] == "2024-05-01T10:00:00.123Z" and upd["updatedAt"] >= item["createdAt"]
    assert local_client.delete("Item", "fixed")["description"] == "d"
    assert local_client.get("Item", "fixed") is None


def test_batched_create_conflict_is_per_alias(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    status, body = local_client.post(CREATE_METRICS, {"a": bucket(), "b": bucket("items#x#5")})
    assert status == 200 and "errors" not in body
    status, body = local_client.post(
        CREATE_METRICS, {"a": bucket(count=9), "b": bucket("items#y#5", metadata='{"k": 1}')}
    )
    assert body["data"]["a"] is None
    assert body["data"]["b"]["compositeKey"] == "items#y#5"
    [err] = body["errors"]
    assert err["errorType"] == CCF and err["path"] == ["a"] and err["data"] is None
    assert err["message"].startswith("The conditional request failed")
    stored = {m["compositeKey"]: m for m in local_stack.store.all_metrics(ACCOUNT)}
    assert stored["items#2024-05-01T10:00:00Z#1"]["count"] == 1  # the failed create wrote nothing
    assert stored["items#y#5"]["metadata"] == {"k": 1}


def test_update_missing_key_and_conditions(local_client: LocalClient) -> None:
    update = bucket(count=2, updatedAt="2024-05-01T10:03:00.000000Z")
    _, body = local_client.post(UPDATE_METRICS, {"a": update})
    assert body["data"]["a"] is None and body["errors"][0]["errorType"] == CCF
    local_client.post(CREATE_METRICS, {"a": bucket(), "b": bucket("items#z#1")})
    newer = {"updatedAt": {"le": "2024-05-01T10:01:00.000000Z"}}
    _, body = local_client.post(UPDATE_METRICS, {"a": update, "c": newer})
    assert body["errors"][0]["errorType"] == CCF
    ok = {"updatedAt": {"le": "2024-05-01T10:03:00.000000Z"}}
    _, body = local_client.post(UPDATE_METRICS, {"a": update, "c": ok})
    assert "errors" not in body and body["data"]["a"]["count"] == 2


def test_update_must_resend_whole_composite_sort_key(local_client: LocalClient) -> None:
    local_client.post(CREATE_METRICS, {"a": bucket(), "b": bucket("items#z#1")})
    partial = {
        "accountId": ACCOUNT,
        "compositeKey": "items#2024-05-01T10:00:00Z#1",
        "recordType": "items",
        "count": 5,
    }
    _, body = local_client.post(UPDATE_METRICS, {"a": partial})
    assert body["data"]["a"] is None
    assert "Missing key: 'timeRangeStart'" in body["errors"][0]["message"]
    no_key_fields = {
        "accountId": ACCOUNT,
        "compositeKey": "items#2024-05-01T10:00:00Z#1",
        "count": 5,
    }
    _, body = local_client.post(UPDATE_METRICS, {"a": no_key_fields})
    assert body["data"]["a"]["count"] == 5


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024-05-01T10:00:00.123Z", True),
        ("2024-05-01T10:00Z", True),
        ("2024-05-01T10:00:00+05:30", True),
        ("2024-05-01T10:00:00-07:00:30", True),
        ("2024-05-01T10:00:00", False),
        ("2024-05-01T10:00:00+0530", False),
        ("2024-02-30T10:00:00Z", False),
        ("2024-05-01 10:00:00Z", False),
        ("soon", False),
    ],
)
def test_awsdatetime_is_validated_like_appsync(
    local_client: LocalClient, value: str, ok: bool
) -> None:
    status, body = local_client.post(
        "mutation C($i: CreateItemInput!) { createItem(input: $i) { id } }",
        {"i": {"accountId": ACCOUNT, "createdAt": value}},
    )
    assert status == 200
    if ok:
        assert "errors" not in body
    else:
        assert body["data"] is None
        assert body["errors"][0]["message"] == (
            f"Variable 'createdAt' has an invalid value. Unable to parse `{value}` as a valid "
            "DateTime Object."
        )


def test_awsjson_must_be_a_json_string(local_client: LocalClient) -> None:
    _, body = local_client.post(
        CREATE_METRICS, {"a": bucket(metadata={"k": 1}), "b": bucket("items#q#1")}
    )
    assert body["data"] is None and "valid JSON" in body["errors"][0]["message"]
    _, body = local_client.post(
        CREATE_METRICS, {"a": bucket(metadata='{"k": 1}'), "b": bucket("items#q#1")}
    )
    assert orjson.loads(body["data"]["a"]["metadata"]) == {"k": 1}


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"a": {"eq": "x"}}, True),
        ({"a": {"ne": "x"}}, False),
        ({"zz": {"ne": "x"}}, True),
        ({"zz": {"eq": None}}, True),
        ({"zz": {"attributeExists": False}}, True),
        ({"n": {"attributeExists": True}}, True),
        ({"n": {"attributeType": "_null"}}, True),
        ({"a": {"attributeType": "string"}}, True),
        ({"i": {"between": [1, 3]}}, True),
        ({"i": {"gt": "1"}}, False),
        ({"a": {"beginsWith": "x"}}, True),
        ({"s": {"contains": "ell"}}, True),
        ({"zz": {"notContains": "e"}}, True),
        ({"b": {"eq": True}}, True),
        ({"b": {"eq": 1}}, False),
        ({"or": [{"a": {"eq": "y"}}, {"i": {"ge": 2}}]}, True),
        ({"and": [{"a": {"eq": "x"}}, {"not": {"i": {"eq": 2}}}]}, False),
        ({"s": {"size": {"eq": 5}}}, True),
        ({"s": {"lt": "hellp"}}, True),
        ({"u": {"gt": "\uffff"}}, True),  # code-point (UTF-8 byte) order, not UTF-16
    ],
)
def test_condition_semantics(cond: dict[str, Any], expected: bool) -> None:
    item = {"a": "x", "i": 2, "b": True, "n": None, "s": "hello", "u": "\U0001f600"}
    assert matches(cond, item) is expected


def test_faults_http_status_retry_after_and_counts(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    fault = local_stack.faults.add(field="getItem", nth=2, action="http_429", retry_after=1)
    q = 'query G { a: getItem(id: "x") { id } b: getItem(id: "y") { id } }'
    assert local_client.post(q)[0] == 200
    with urllib3.PoolManager(retries=False) as http:
        resp = http.request(
            "POST",
            local_stack.endpoint,
            body=orjson.dumps({"query": q}),
            headers={"x-api-key": local_stack.api_key},
        )
    assert resp.status == 429 and resp.headers["retry-after"] == "1"
    assert orjson.loads(resp.data)["errors"][0]["errorType"] == "TooManyRequestsException"
    assert local_client.post(q)[0] == 200
    assert (fault.seen, fault.fired) == (3, 1)
    assert local_stack.faults.requests == 3
    assert local_stack.faults.field_requests["getItem"] == 3
    assert local_stack.faults.field_calls["getItem"] == 6


@pytest.mark.parametrize("action", ["reset", "malformed_json", "graphql_error", "http_503"])
def test_faults_break_the_response(
    local_stack: LocalStack, local_client: LocalClient, action: str
) -> None:
    local_stack.faults.add(field="getItem", action=action)
    q = '{ getItem(id: "x") { id } }'
    if action == "reset":
        with pytest.raises(urllib3.exceptions.ProtocolError):
            local_client.post(q)
    elif action == "malformed_json":
        with pytest.raises(orjson.JSONDecodeError):
            local_client.post(q)
    else:
        status, body = local_client.post(q)
        assert status == (200 if action == "graphql_error" else 503)
        assert body["errors"][0]["errorType"]
    assert local_client.post(q) == (200, {"data": {"getItem": None}})  # times=1


def test_fault_alias_errors_fail_only_chosen_aliases(
    local_stack: LocalStack, local_client: LocalClient
) -> None:
    local_stack.faults.add(field="createAggregatedMetrics", action="alias_errors", aliases=["b"])
    _, body = local_client.post(CREATE_METRICS, {"a": bucket(), "b": bucket("items#b#1")})
    assert body["data"]["a"]["count"] == 1 and body["data"]["b"] is None
    assert body["errors"][0]["errorType"] == "DynamoDB:ProvisionedThroughputExceededException"
    assert [m["compositeKey"] for m in local_stack.store.all_metrics()] == [
        "items#2024-05-01T10:00:00Z#1"
    ]


def test_stack_binds_loopback_and_reports_endpoint(local_stack: LocalStack) -> None:
    assert local_stack.endpoint == f"http://127.0.0.1:{local_stack.port}/graphql"
    assert local_stack.config().api_key == local_stack.api_key
    with socket.create_connection(("127.0.0.1", local_stack.port), timeout=5):
        pass


def test_fast_list_projection_matches_graphql_core(local_stack: LocalStack) -> None:
    from graphql import execute, parse

    from metrics_agg.local.server._fastlist import FastListExecutionContext
    from metrics_agg.local.server.app import build_schema

    local_stack.store.bulk_insert(
        "AggregatedMetrics",
        [
            bucket(f"items#k{n}#1", count=n, metadata='{"a": 1}' if n % 2 else None)
            for n in range(5)
        ],
    )
    local_stack.store.bulk_insert(
        "Task", [{"id": "no-created", "accountId": ACCOUNT, "updatedAt": "2024-05-01T10:00:00Z"}]
    )
    schema = build_schema(local_stack.store)
    for query in (
        '{ listAggregatedMetrics(accountId: "acct-1") { items { __typename k: compositeKey '
        "count metadata complete cost } nextToken } }",
        # a null non-null field: the fast path steps aside and graphql-core reports it
        '{ listTaskByAccountIdAndUpdatedAt(accountId: "acct-1") { items { id createdAt } } }',
    ):
        doc = parse(query)
        slow = execute(schema, doc)
        fast = execute(schema, doc, execution_context_class=FastListExecutionContext)
        assert fast.data == slow.data  # type: ignore[union-attr]
        assert str(fast.errors) == str(slow.errors)  # type: ignore[union-attr]
