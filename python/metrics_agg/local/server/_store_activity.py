"""The activity table's rows in the local store (`dynamodb` speaks its protocol).

One SQLite table keyed like the stack's DynamoDB table (partition ``hour``, sort ``pair``),
the item as DynamoDB JSON. TTL is emulated loosely, as DynamoDB does it: an expired item
may still be read; each write removes the items whose ``expiresAt`` has passed.
"""

from __future__ import annotations

__all__ = ["ACTIVITY_SCHEMA", "ActivityRows"]

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

ACTIVITY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS activity_items (hour TEXT NOT NULL, pair TEXT NOT NULL, "
    "expires INTEGER, item TEXT NOT NULL, PRIMARY KEY (hour, pair))",
)


class ActivityRows:
    """Puts and per-hour pages of the activity table."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # supplied by Store

    def put_activity(self, items: Sequence[tuple[str, str, int | None, dict[str, Any]]]) -> None:
        """Insert or replace (hour, pair, expires, DynamoDB JSON item) rows in one transaction."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM activity_items WHERE expires IS NOT NULL AND expires < ?",
                (int(time.time()),),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO activity_items VALUES (?, ?, ?, ?)",
                [(h, p, e, orjson.dumps(item).decode()) for h, p, e, item in items],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def activity_page(self, hour: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Items of ``hour`` in ``pair`` order, after ``after`` (exclusive), at most ``limit``."""
        rows = self._conn().execute(
            "SELECT item FROM activity_items WHERE hour = ? AND pair > ? ORDER BY pair LIMIT ?",
            (hour, after or "", limit),
        )
        return [dict(orjson.loads(r[0])) for r in rows]

    def activity_pairs(self) -> list[tuple[str, str]]:
        """Every (hour, pair) stored (tests)."""
        rows = self._conn().execute("SELECT hour, pair FROM activity_items ORDER BY hour, pair")
        return [(str(h), str(p)) for h, p in rows]
