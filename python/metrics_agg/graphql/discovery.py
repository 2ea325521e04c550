"""Which (account, recordType) scopes have recent buckets: input of the scheduled event.

The cost follows activity, not history (issue 15; docs/operations.md):

1. ``listAccounts``, paged: every account id. This is the one unkeyed list query any
   schedule or stream path sends; it scans the Account table, one row per account.
2. Per account, in parallel: a key-condition query on the ``byAccountTimeRangeRecord``
   index, ``timeRangeStart >= since``, selecting only ``recordType``. DynamoDB reads only
   the rows of that account whose bucket starts at or after ``since``: nothing for a quiet
   account (one request, an empty page), the recent buckets of a busy one.

The stream path always writes the buckets holding its records' timestamps (docs/design.md §4.5),
so every (model, account) with records in a bucket starting since ``since`` has such a
row. The queries share a part of the invocation's deadline (`DISCOVERY_SHARE`), so the
pass keeps time to recount what it found; an account whose query did not finish in it (or
failed) is returned in ``unfinished``, never silently dropped.

Before this, discovery paged ``listAggregatedMetrics`` with a filter: a full table Scan
every 5 minutes (43,709 rows read to find one active pair, three days of history).
"""

from __future__ import annotations

__all__ = [
    "DISCOVERY_PAGE_LIMIT",
    "DISCOVERY_SHARE",
    "ActiveScopes",
    "list_account_ids",
    "list_recent_metric_scopes",
]

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from metrics_agg.deadline import Deadline
from metrics_agg.errors import DeadlineExceeded, ReadError, TransportError
from metrics_agg.graphql._slices import query_document
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import MODEL_OF_RECORD_TYPE, SOURCE_MODELS
from metrics_agg.timestamps import format_bucket_time

logger = logging.getLogger("metrics_agg.graphql")

ACCOUNTS_QUERY = "listAccounts"
RECENT_QUERY = "listAggregatedMetricsByAccountIdAndTimeRangeStartAndRecordType"
# Rows per request of the per-account query. A quiet account answers with one empty page
# whatever the limit; a busy one holds ~155 rows per recordType in two hours (1-, 5-, 15-
# and 60-minute buckets). A small page keeps each request short, so the deadline is
# checked often and the early stop (every model seen) saves reads.
DISCOVERY_PAGE_LIMIT = 200
# Part of the remaining deadline discovery may use; the rest is for recounting the pairs.
DISCOVERY_SHARE = 0.5


class ActiveScopes(frozenset[tuple[str, str]]):
    """The set of (accountId, recordType) found, plus what discovery could not finish.

    ``accounts``: how many accounts were listed. ``unfinished``: (accountId, reason) of
    each account whose query did not complete (deadline share spent, or a failed read).
    """

    accounts: int
    unfinished: tuple[tuple[str, str], ...]

    def __new__(
        cls,
        scopes: Iterable[tuple[str, str]] = (),
        *,
        accounts: int = 0,
        unfinished: Iterable[tuple[str, str]] = (),
    ) -> ActiveScopes:
        self = super().__new__(cls, scopes)
        self.accounts = accounts
        self.unfinished = tuple(unfinished)
        return self


def _pages(
    client: GraphQLApi,
    field: str,
    variables: dict[str, Any],
    deadline: Deadline | None,
) -> Iterator[list[Any]]:
    """The ``items`` of each page, until ``nextToken`` is null (docs/design.md §2).

    Raises:
        ReadError: a page failed after retries, was malformed, or paging did not advance.
        DeadlineExceeded: the deadline ran out first.
    """
    document = query_document(field)
    token: str | None = None
    while True:
        data = (
            client.execute(
                document, {**variables, "nextToken": token}, kind="read", deadline=deadline
            ).data
            or {}
        )
        conn = data.get(field)
        if not isinstance(conn, dict) or not isinstance(conn.get("items"), list):
            raise ReadError(f"malformed {field} response: no connection with an items list")
        yield conn["items"]
        next_token = conn.get("nextToken")
        if next_token is None:
            return
        if not isinstance(next_token, str) or next_token == token:
            raise ReadError(f"{field} pagination did not advance")
        token = next_token


def list_account_ids(client: GraphQLApi, *, deadline: Deadline | None = None) -> list[str]:
    """Every Account id, in the order the API returns them.

    Raises:
        ReadError: a page failed after retries, or a response was malformed.
        DeadlineExceeded: the deadline ran out first.
    """
    ids: dict[str, None] = {}
    variables = {"limit": client.config.page_limit}
    for items in _pages(client, ACCOUNTS_QUERY, variables, deadline):
        for item in items:
            account = item.get("id") if isinstance(item, dict) else None
            if isinstance(account, str) and account:
                ids[account] = None
    return list(ids)


def _recent_record_types(
    client: GraphQLApi, account: str, since: datetime, deadline: Deadline
) -> set[str]:
    """recordTypes of the account's rows with ``timeRangeStart >= since`` (key condition)."""
    variables = {
        "accountId": account,
        "timeRangeStartRecordType": {"ge": {"timeRangeStart": format_bucket_time(since)}},
        "limit": DISCOVERY_PAGE_LIMIT,
    }
    found: set[str] = set()
    models: set[str] = set()
    for items in _pages(client, RECENT_QUERY, variables, deadline):
        for item in items:
            record_type = item.get("recordType") if isinstance(item, dict) else None
            if isinstance(record_type, str):
                found.add(record_type)
                if record_type in MODEL_OF_RECORD_TYPE:
                    models.add(MODEL_OF_RECORD_TYPE[record_type])
        if len(models) == len(SOURCE_MODELS):
            break  # every model of the account is active: nothing more to learn
    return found


def _share(deadline: Deadline | None) -> Deadline:
    remaining = (deadline or Deadline()).remaining()
    return Deadline.after(None if remaining == float("inf") else remaining * DISCOVERY_SHARE)


def list_recent_metric_scopes(
    client: GraphQLApi,
    *,
    since: datetime,
    deadline: Deadline | None = None,
    parallelism: int | None = None,
) -> ActiveScopes:
    """{(accountId, recordType)} of every AggregatedMetrics row starting at or after ``since``.

    Accounts come from ``listAccounts``; each account costs one key-condition query on
    ``byAccountTimeRangeRecord`` (more pages only for its recent rows). The queries run
    ``parallelism`` at a time (default: the config's read parallelism) within
    `DISCOVERY_SHARE` of the remaining deadline; the accounts left over are in
    ``unfinished``.

    Raises:
        ReadError: listing the accounts failed after retries, or a response was malformed.
        DeadlineExceeded: the deadline ran out before the accounts were listed.
    """
    budget = _share(deadline)
    accounts = list_account_ids(client, deadline=budget)
    workers = max(1, parallelism if parallelism is not None else client.config.read_parallelism)

    def query(account: str) -> tuple[str, set[str] | None, str]:
        if budget.expired:
            return account, None, "not queried: deadline"
        try:
            return account, _recent_record_types(client, account, since, budget), ""
        except DeadlineExceeded:
            return account, None, "not finished: deadline"
        except TransportError as exc:
            return account, None, f"{type(exc).__name__}: {exc}"

    scopes: set[tuple[str, str]] = set()
    unfinished: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics-agg-disc") as pool:
        for account, record_types, reason in pool.map(query, accounts):
            if record_types is None:
                unfinished.append((account, reason))
            else:
                scopes.update((account, rt) for rt in record_types)
    if unfinished:
        logger.warning(
            "discovery: %d of %d account(s) not finished (first: %s: %s)",
            len(unfinished),
            len(accounts),
            *unfinished[0],
        )
    return ActiveScopes(scopes, accounts=len(accounts), unfinished=unfinished)
