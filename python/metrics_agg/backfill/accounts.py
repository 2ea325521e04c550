"""Which accounts `metrics-agg backfill --all-accounts` covers: the one place that asks.

Plexus keeps an `Account` model with a `listAccounts` query; the backfill lists it through
the same discovery code as the scheduled pass (`graphql.discovery`), so this module is only
the boundary the CLI calls.
"""

from __future__ import annotations

__all__ = ["all_account_ids"]

from metrics_agg.deadline import Deadline
from metrics_agg.graphql.discovery import list_account_ids
from metrics_agg.graphql.transport import GraphQLApi


def all_account_ids(client: GraphQLApi, *, deadline: Deadline | None = None) -> list[str]:
    """Every account id the API lists, sorted.

    Raises:
        ReadError: a page failed after retries.
        DeadlineExceeded: the deadline ran out first.
    """
    return sorted(set(list_account_ids(client, deadline=deadline)))
