"""Local AppSync-compatible GraphQL server over SQLite, with DynamoDB stream emulation.

`LocalStack` runs it (endpoint, store, mapping); `Store` holds every SQL statement;
`FaultPlan` fails requests on purpose for tests; `seeding` writes realistic data fast.
"""

from __future__ import annotations

__all__ = [
    "EventSourceMapping",
    "FaultPlan",
    "LocalApiError",
    "LocalClient",
    "LocalStack",
    "Store",
    "seed_accounts",
    "seed_records",
]

from metrics_agg.local.server.client import LocalApiError, LocalClient
from metrics_agg.local.server.faults import FaultPlan
from metrics_agg.local.server.mapping import EventSourceMapping
from metrics_agg.local.server.seeding import seed_accounts, seed_records
from metrics_agg.local.server.stack import LocalStack
from metrics_agg.local.server.store import Store
