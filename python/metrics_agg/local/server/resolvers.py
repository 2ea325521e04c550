"""Resolvers with Amplify's semantics over the store (docs/design.md §2, §5).

Errors a resolver raises are `AppSyncError`s carrying AppSync's `errorType`, so one
failed alias of a batched mutation is `data.<alias>: null` plus one error, and the other
aliases still run.
"""

from __future__ import annotations

__all__ = [
    "CONDITIONAL_CHECK_FAILED",
    "AppSyncError",
    "Resolvers",
    "aws_now",
]

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import GraphQLResolveInfo

from metrics_agg.local.server._store_tables import INDEXES, TABLES, IndexSpec
from metrics_agg.local.server.conditions import KeyCondition, KeyConditionError, matches
from metrics_agg.local.server.faults import Fault
from metrics_agg.local.server.store import ConditionalCheckFailed, Store
from metrics_agg.models import SOURCE_MODELS

CONDITIONAL_CHECK_FAILED = "DynamoDB:ConditionalCheckFailedException"
# What AppSync answers for a nextToken it did not issue (or cannot decrypt).
INVALID_TOKEN_TYPE = "DynamoDB:UserIllegalArgumentException"
INVALID_TOKEN_MESSAGE = (
    "com.amazonaws.deepdish.common.pagination.InvalidPaginationTokenException: "
    "Invalid pagination token given."
)
DEFAULT_LIMIT = 100  # Amplify's list resolvers default
_MAC_BYTES = 16

# AggregatedMetrics list queries: (query field, index, partition arg, sort arg, sort fields).
_METRICS_QUERIES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("listAggregatedMetrics", "AggregatedMetrics", "accountId", "compositeKey", ()),
    (
        "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart",
        "byAccountRecordType",
        "accountId",
        "recordTypeTimeRangeStart",
        ("recordType", "timeRangeStart"),
    ),
    (
        "listAggregatedMetricsByAccountIdAndTimeRangeStartAndRecordType",
        "byAccountTimeRangeRecord",
        "accountId",
        "timeRangeStartRecordType",
        ("timeRangeStart", "recordType"),
    ),
    (
        "listAggregatedMetricsByScorecardIdAndTimeRangeStartAndRecordType",
        "byScorecardTimeRangeRecord",
        "scorecardId",
        "timeRangeStartRecordType",
        ("timeRangeStart", "recordType"),
    ),
    (
        "listAggregatedMetricsByScoreIdAndTimeRangeStartAndRecordType",
        "byScoreTimeRangeRecord",
        "scoreId",
        "timeRangeStartRecordType",
        ("timeRangeStart", "recordType"),
    ),
)
# Amplify's @index composite sort keys on AggregatedMetrics (all four use the same fields).
_COMPOSITE_SORT_KEYS = {
    "byAccountRecordType": ("recordType", "timeRangeStart"),
    "byAccountTimeRangeRecord": ("timeRangeStart", "recordType"),
    "byScorecardTimeRangeRecord": ("timeRangeStart", "recordType"),
    "byScoreTimeRangeRecord": ("timeRangeStart", "recordType"),
}

Resolver = Callable[..., Any]


class AppSyncError(Exception):
    """An error AppSync would return for one field, with its `errorType`."""

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


def aws_now() -> str:
    """AppSync's `$util.time.nowISO8601()`: fixed-width UTC with milliseconds."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _conditional_failed() -> AppSyncError:
    return AppSyncError(
        "The conditional request failed (Service: DynamoDb, Status Code: 400, Request ID: "
        f"{uuid.uuid4().hex.upper()[:32]})",
        CONDITIONAL_CHECK_FAILED,
    )


def _mutation(apply: Callable[[dict[str, Any], dict[str, Any] | None], Any]) -> Resolver:
    """A create/update/delete resolver: `input` and an optional `condition` go to `apply`;
    a failed condition becomes AppSync's ConditionalCheckFailedException error."""

    def resolve(
        _obj: Any,
        _info: GraphQLResolveInfo,
        input: dict[str, Any],
        condition: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return apply(input, condition)
        except ConditionalCheckFailed:
            raise _conditional_failed() from None

    return resolve


def _composite(value: Any, fields: tuple[str, ...]) -> Any:
    """A composite key condition value -> the '#'-joined string Amplify compares."""
    if not fields or value is None:
        return value
    if isinstance(value, list):
        return [_composite(v, fields) for v in value]
    parts: list[str] = []
    for f in fields:
        part = value.get(f)
        if part is None:
            break
        parts.append(str(part))
    return "#".join(parts)


class Resolvers:
    """Binds every Query/Mutation field of schema.graphql to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._secret = store.token_secret

    def fields(self) -> tuple[dict[str, Resolver], dict[str, Resolver]]:
        """(query resolvers, mutation resolvers) by field name."""
        query: dict[str, Resolver] = {}
        mutation: dict[str, Resolver] = {}
        for model in (*SOURCE_MODELS, "AggregatedMetrics", "Account"):
            query[f"get{model}"] = self._get(model)
            for op in ("create", "update", "delete"):
                mutation[f"{op}{model}"] = getattr(self, f"_{op}")(model)
        for spec in SOURCE_MODELS.values():
            for name, sk in zip(spec.list_queries, spec.sort_keys, strict=True):
                query[name] = self._list(name, INDEXES[name], "accountId", sk, ())
        for name, index, pk_arg, sk_arg, fields in _METRICS_QUERIES:
            query[name] = self._list(name, INDEXES[index], pk_arg, sk_arg, fields)
        # listAccounts takes no key: a Scan of the Account table, as on AWS.
        query["listAccounts"] = self._list("listAccounts", INDEXES["Account"], "id", "", ())
        wrapped = ({k: _with_alias_faults(v) for k, v in d.items()} for d in (query, mutation))
        return next(wrapped), next(wrapped)

    # -- tokens ----------------------------------------------------------------------------
    def _encode_token(self, fingerprint: str, position: list[str]) -> str:
        payload = orjson.dumps([fingerprint, position])
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.b64encode(payload + mac).decode()

    def _decode_token(self, fingerprint: str, token: str) -> list[str]:
        try:
            raw = base64.b64decode(token.encode(), validate=True)
            payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
            good = hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
            if not hmac.compare_digest(mac, good):
                raise ValueError("bad mac")
            fp, position = orjson.loads(payload)
            if fp != fingerprint or not isinstance(position, list):
                raise ValueError("token of another query")
            return [str(p) for p in position]
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise AppSyncError(INVALID_TOKEN_MESSAGE, INVALID_TOKEN_TYPE) from None

    # -- queries ---------------------------------------------------------------------------
    def _get(self, model: str) -> Resolver:
        key_fields = TABLES[model].key

        def resolve(_obj: Any, _info: GraphQLResolveInfo, **args: Any) -> Any:
            return self.store.get(model, [args[k] for k in key_fields])

        return resolve

    def _list(
        self, field: str, index: IndexSpec, pk_arg: str, sk_arg: str, fields: tuple[str, ...]
    ) -> Resolver:
        def resolve(_obj: Any, _info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
            partition = args.get(pk_arg)
            raw_cond = args.get(sk_arg)
            try:
                cond = None
                if raw_cond:
                    cond = KeyCondition.from_input(
                        {k: _composite(v, fields) for k, v in raw_cond.items()}
                    )
            except KeyConditionError as exc:
                raise AppSyncError(str(exc), "DynamoDB:DynamoDbException") from None
            if partition is None and cond is not None:
                raise AppSyncError(
                    f"When providing argument 'compositeKey' you must also provide '{pk_arg}'.",
                    "InvalidArgumentsError",
                )
            descending = str(args.get("sortDirection") or "ASC") == "DESC"
            limit = args.get("limit")
            limit = DEFAULT_LIMIT if limit is None else int(limit)
            if limit < 1:
                raise AppSyncError(
                    f"1 validation error detected: Value '{limit}' at 'limit' failed to "
                    "satisfy constraint: Member must have value greater than or equal to 1",
                    "DynamoDB:DynamoDbException",
                )
            fingerprint = hashlib.sha256(
                orjson.dumps([field, partition, cond and [cond.op, cond.values], descending])
            ).hexdigest()[:16]
            token = args.get("nextToken")
            start = self._decode_token(fingerprint, token) if token else None
            items, last = self.store.query(
                index, partition, cond, descending=descending, limit=limit, start_after=start
            )
            flt = args.get("filter")
            if flt:
                try:
                    items = [it for it in items if matches(flt, it)]
                except ValueError as exc:
                    raise AppSyncError(str(exc), "DynamoDB:DynamoDbException") from None
            return {
                "items": items,
                "nextToken": None if last is None else self._encode_token(fingerprint, last),
            }

        return resolve

    # -- mutations -------------------------------------------------------------------------
    def _create(self, model: str) -> Resolver:
        def apply(input: dict[str, Any], condition: dict[str, Any] | None) -> Any:
            item = dict(input)
            if "id" in TABLES[model].key and not item.get("id"):
                item["id"] = str(uuid.uuid4())
            now = aws_now()
            item["createdAt"] = item.get("createdAt") or now
            item["updatedAt"] = item.get("updatedAt") or now
            return self.store.create(model, item, condition)

        return _mutation(apply)

    def _update(self, model: str) -> Resolver:
        key_fields = TABLES[model].key

        def apply(input: dict[str, Any], condition: dict[str, Any] | None) -> Any:
            if model == "AggregatedMetrics":
                for index, parts in _COMPOSITE_SORT_KEYS.items():
                    if any(p in input for p in parts):
                        for p in parts:
                            if p not in input:
                                raise AppSyncError(
                                    "When updating any part of the composite sort key for "
                                    f"@index '{index}', you must provide all fields for the "
                                    f"key. Missing key: '{p}'."
                                )
            changes = {k: v for k, v in input.items() if k not in key_fields}
            changes["updatedAt"] = input.get("updatedAt") or aws_now()
            return self.store.update(model, [input[k] for k in key_fields], changes, condition)

        return _mutation(apply)

    def _delete(self, model: str) -> Resolver:
        key_fields = TABLES[model].key

        def apply(input: dict[str, Any], condition: dict[str, Any] | None) -> Any:
            return self.store.delete(model, [input[k] for k in key_fields], condition)

        return _mutation(apply)


def _with_alias_faults(fn: Resolver) -> Resolver:
    """FaultPlan `alias_errors`: fail the chosen aliases of this request, run the others."""

    def resolve(obj: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        context: Mapping[str, Any] = info.context or {}
        fault: Fault | None = context.get("fault")
        if fault is not None and fault.action == "alias_errors":
            alias = str(info.path.key)
            if fault.aliases is None or alias in fault.aliases:
                raise AppSyncError(
                    fault.message
                    or "Throughput exceeds the current capacity for one or more "
                    "global secondary indexes. DynamoDB is automatically scaling your index "
                    "so please try again shortly.",
                    fault.error_type or "DynamoDB:ProvisionedThroughputExceededException",
                )
        return fn(obj, info, **args)

    return resolve
