"""The local stack's emulated DynamoDB tables: their keys, the attributes kept as columns,
and the indexes behind every list query (docs/design.md §5). Layout only; the SQL that uses it
lives in `store` (and `_store_streams`).
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_TABLE",
    "INDEXES",
    "METRICS_TABLE",
    "TABLES",
    "IndexSpec",
    "TableSpec",
    "table_name",
]

from collections.abc import Mapping
from dataclasses import dataclass

from metrics_agg.models import SOURCE_MODELS


def table_name(model: str) -> str:
    return f"{model}-local-NONE"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One emulated DynamoDB table: key attributes and the attributes indexes read."""

    model: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # index attributes kept as columns (strings only, like a GSI)
    streamed: bool

    @property
    def name(self) -> str:
        return table_name(self.model)


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """A queryable key: partition column, sort column, tie-break columns (base-table key)."""

    name: str
    table: TableSpec
    partition: str
    sort: str
    tie: tuple[str, ...]

    @property
    def position_columns(self) -> tuple[str, ...]:
        return (self.sort, *self.tie)


def _source_table(model: str) -> TableSpec:
    sort_keys = {"createdAt", "updatedAt", *SOURCE_MODELS[model].sort_keys}
    return TableSpec(model, ("id",), ("accountId", *sorted(sort_keys)), streamed=True)


METRICS_TABLE = TableSpec(
    "AggregatedMetrics",
    ("accountId", "compositeKey"),
    (
        "recordType",
        "timeRangeStart",
        "scorecardId",
        "scoreId",
        "skRecordTypeTime",
        "skTimeRecordType",
    ),
    streamed=False,
)
# Plexus's Account (keyed by id): what the scheduled pass lists to find active pairs. Not
# streamed: no event source mapping reads it.
ACCOUNT_TABLE = TableSpec("Account", ("id",), (), streamed=False)
TABLES: Mapping[str, TableSpec] = {
    **{m: _source_table(m) for m in SOURCE_MODELS},
    "AggregatedMetrics": METRICS_TABLE,
    "Account": ACCOUNT_TABLE,
}

INDEXES: dict[str, IndexSpec] = {}
for _spec in SOURCE_MODELS.values():
    for _query, _sk in zip(_spec.list_queries, _spec.sort_keys, strict=True):
        INDEXES[_query] = IndexSpec(_query, TABLES[_spec.name], "accountId", _sk, ("id",))
for _name, _pk, _sk, _tie in (
    ("AggregatedMetrics", "accountId", "compositeKey", ()),
    ("byAccountRecordType", "accountId", "skRecordTypeTime", ("compositeKey",)),
    ("byAccountTimeRangeRecord", "accountId", "skTimeRecordType", ("compositeKey",)),
    (
        "byScorecardTimeRangeRecord",
        "scorecardId",
        "skTimeRecordType",
        ("accountId", "compositeKey"),
    ),
    ("byScoreTimeRangeRecord", "scoreId", "skTimeRecordType", ("accountId", "compositeKey")),
):
    INDEXES[_name] = IndexSpec(_name, METRICS_TABLE, _pk, _sk, _tie)
# listAccounts: a Scan of the (small) Account table, in id order.
INDEXES["Account"] = IndexSpec("Account", ACCOUNT_TABLE, "id", "id", ())
