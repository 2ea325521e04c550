"""Local DynamoDB for the activity table: BatchWriteItem and Query over DynamoDB's JSON
protocol (``X-Amz-Target: DynamoDB_20120810.<Operation>``) on the server's own port, so
the aggregator's botocore client talks to it exactly as to AWS (`aggregator.activity`).

Kept from DynamoDB: one table, partition key ``hour`` and sort key ``pair`` (both S), a
put replaces the item with the same key, at most 25 requests per BatchWriteItem, a Query
takes one equality key condition (names and values through placeholders or literal
names), pages in sort-key order with ``Limit`` and ``ExclusiveStartKey`` /
``LastEvaluatedKey``. Not kept: other tables and operations, filter and projection
expressions (whole items come back), capacity figures, eventual consistency.
"""

from __future__ import annotations

__all__ = ["PAGE_ITEMS", "DynamoProtocolError", "handle_dynamodb_request"]

import re
from collections.abc import Mapping
from typing import Any

from metrics_agg.local.server.store import Store

TARGET_PREFIX = b"DynamoDB_20120810."
# DynamoDB stops a page at 1 MB; the local table stops at this many items, so paging is
# exercised with a few hundred pairs.
PAGE_ITEMS = 500
_MAX_BATCH = 25
_KEY_CONDITION = re.compile(r"^\s*(#?[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)\s*$")


class DynamoProtocolError(Exception):
    """A DynamoDB error answer: ``code`` becomes the JSON ``__type`` (botocore's error code)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _invalid(message: str) -> DynamoProtocolError:
    return DynamoProtocolError("ValidationException", message)


def _string(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, dict) or not isinstance(value.get("S"), str) or not value["S"]:
        raise _invalid(f"One or more parameter values were invalid: key {name} must be a string")
    return str(value["S"])


def _expires(item: Mapping[str, Any]) -> int | None:
    value = item.get("expiresAt")
    if isinstance(value, dict) and isinstance(value.get("N"), str):
        try:
            return int(float(value["N"]))
        except ValueError:
            return None
    return None


def handle_dynamodb_request(
    store: Store, table: str, operation: str, req: Mapping[str, Any]
) -> dict[str, Any]:
    """Answer one request against the table named ``table``.

    Raises:
        DynamoProtocolError: an unknown table or operation, or a malformed request.
    """
    if operation == "BatchWriteItem":
        items = req.get("RequestItems")
        if not isinstance(items, dict) or not items:
            raise _invalid("RequestItems must name at least one table")
        puts: list[tuple[str, str, int | None, dict[str, Any]]] = []
        for name, requests in items.items():
            if name != table:
                raise DynamoProtocolError(
                    "ResourceNotFoundException", f"Requested resource not found: {name}"
                )
            if not isinstance(requests, list) or not 0 < len(requests) <= _MAX_BATCH:
                raise _invalid(f"1 to {_MAX_BATCH} write requests per BatchWriteItem")
            for r in requests:
                item = r.get("PutRequest", {}).get("Item") if isinstance(r, dict) else None
                if not isinstance(item, dict):
                    raise _invalid("only PutRequest entries are supported locally")
                puts.append((_string(item, "hour"), _string(item, "pair"), _expires(item), item))
        keys = [(h, p) for h, p, _, _ in puts]
        if len(set(keys)) != len(keys):
            raise _invalid("Provided list of item keys contains duplicates")
        store.put_activity(puts)
        return {"UnprocessedItems": {}}
    if operation == "Query":
        if req.get("TableName") != table:
            raise DynamoProtocolError(
                "ResourceNotFoundException", f"Requested resource not found: {req.get('TableName')}"
            )
        m = _KEY_CONDITION.match(str(req.get("KeyConditionExpression") or ""))
        if m is None:
            raise _invalid("KeyConditionExpression: only `<partition key> = :value` is supported")
        name, placeholder = m.groups()
        names = req.get("ExpressionAttributeNames") or {}
        if name.startswith("#"):
            name = names.get(name, "")
        if name != "hour":
            raise _invalid("Query condition parameter does not match the table's key: hour")
        values = req.get("ExpressionAttributeValues") or {}
        hour = _string({"hour": values.get(placeholder)}, "hour")
        start = req.get("ExclusiveStartKey")
        after = _string(start, "pair") if isinstance(start, dict) else None
        limit = int(req.get("Limit") or PAGE_ITEMS)
        page = store.activity_page(hour, after, min(limit, PAGE_ITEMS) + 1)
        out: dict[str, Any] = {"Items": page[: min(limit, PAGE_ITEMS)]}
        out["Count"] = out["ScannedCount"] = len(out["Items"])
        if len(page) > len(out["Items"]):
            last = out["Items"][-1]
            out["LastEvaluatedKey"] = {"hour": last["hour"], "pair": last["pair"]}
        return out
    raise DynamoProtocolError("UnknownOperationException", f"{operation} is not supported locally")
