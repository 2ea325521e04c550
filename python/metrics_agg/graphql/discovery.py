"""Which (account, recordType) scopes were written recently: input of the scheduled event.

`list_recent_metric_scopes` pages ``listAggregatedMetrics`` with the filter
``updatedAt >= since``. The stream path always writes the buckets of its batch records
(DESIGN §4.5), so every (model, account) with stream activity since ``since`` has at
least one AggregatedMetrics row updated since then.

Cost: ``listAggregatedMetrics`` without a key is a DynamoDB Scan, filtered after the read,
so it reads the whole table each time. Fine for the local stack and small tables; in
production set ``METRICS_AGG_ACCOUNT_IDS`` (or ``accountIds`` in the schedule's input) and
the pipeline skips this scan.

The document is built once with sgqlc's ``Operation`` API (like ``api``'s aliased
mutations): no query string is formatted here.
"""

from __future__ import annotations

__all__ = ["list_recent_metric_scopes"]

import functools
from datetime import datetime
from typing import Any

from metrics_agg.deadline import Deadline
from metrics_agg.errors import ReadError
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.timestamps import format_write_time

_FIELD = "listAggregatedMetrics"


@functools.cache
def _document() -> str:
    from sgqlc.operation import Operation
    from sgqlc.types import Arg, Variable

    from metrics_agg.graphql import schema as s

    op = Operation(
        s.schema.query_type,
        name="ListRecentAggregatedMetricsScopes",
        variables={
            "filter": Arg(s.ModelAggregatedMetricsFilterInput),
            "limit": Arg(s.Int),
            "nextToken": Arg(s.String),
        },
    )
    conn = op.list_aggregated_metrics(
        filter=Variable("filter"), limit=Variable("limit"), next_token=Variable("nextToken")
    )
    conn.items().account_id()
    conn.items().record_type()
    conn.next_token()
    return str(op)


def list_recent_metric_scopes(
    client: GraphQLClient, *, since: datetime, deadline: Deadline | None = None
) -> set[tuple[str, str]]:
    """{(accountId, recordType)} of every AggregatedMetrics row updated at or after ``since``.

    Raises:
        ReadError: a page failed after retries, or a response was malformed.
        DeadlineExceeded: the deadline ran out first.
    """
    document = _document()
    variables: dict[str, Any] = {
        "filter": {"updatedAt": {"ge": format_write_time(since)}},
        "limit": client.config.page_limit,
    }
    scopes: set[tuple[str, str]] = set()
    token: str | None = None
    while True:
        data = (
            client.execute(
                document, {**variables, "nextToken": token}, kind="read", deadline=deadline
            ).data
            or {}
        )
        conn = data.get(_FIELD)
        if not isinstance(conn, dict) or not isinstance(conn.get("items"), list):
            raise ReadError(f"malformed {_FIELD} response: no connection with an items list")
        for item in conn["items"]:
            if isinstance(item, dict):
                account, record_type = item.get("accountId"), item.get("recordType")
                if isinstance(account, str) and isinstance(record_type, str):
                    scopes.add((account, record_type))
        next_token = conn.get("nextToken")
        if next_token is None:
            return scopes
        if not isinstance(next_token, str) or next_token == token:
            raise ReadError(f"{_FIELD} pagination did not advance")
        token = next_token
