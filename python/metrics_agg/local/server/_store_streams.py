"""The store's stream side: the stream, checkpoint and on-failure tables and their SQL.

`StreamTables` is mixed into `store.Store`, which supplies the connection; together they
hold every SQL statement of the local stack.
"""

from __future__ import annotations

__all__ = [
    "APPEND_STREAM_SQL",
    "STREAM_SCHEMA",
    "StreamTables",
    "TableActivity",
    "transaction",
]

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from metrics_agg.local.server import streams
from metrics_agg.local.server._store_tables import table_name

STREAM_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS stream (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "table_name TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS stream_by_table ON stream (table_name, seq)",
    "CREATE TABLE IF NOT EXISTS checkpoint (table_name TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS on_failure (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "table_name TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT "
    "NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, records TEXT NOT NULL, "
    "created_at REAL NOT NULL)",
    # The mapping's activity, kept in the database (not in the mapping object) so that a
    # `serve` on the same file shows what another process's mapping (`demo --keep`) did.
    "CREATE TABLE IF NOT EXISTS mapping_activity (table_name TEXT PRIMARY KEY, "
    "invocations INTEGER NOT NULL, records INTEGER NOT NULL, failed INTEGER NOT NULL, "
    "last_at REAL NOT NULL, last_lag REAL, last_error TEXT)",
)
APPEND_STREAM_SQL = "INSERT INTO stream (table_name, record) VALUES (?, ?)"
# A checkpoint only moves forward.
_SET_CHECKPOINT_SQL = (
    "INSERT INTO checkpoint VALUES (?, ?) ON CONFLICT (table_name) "
    "DO UPDATE SET seq = MAX(seq, excluded.seq)"
)


_RECORD_DELIVERY_SQL = (
    "INSERT INTO mapping_activity VALUES (?, 1, ?, ?, ?, ?, ?) ON CONFLICT (table_name) DO "
    "UPDATE SET invocations = invocations + 1, records = records + excluded.records, "
    "failed = failed + excluded.failed, last_at = excluded.last_at, "
    "last_lag = excluded.last_lag, last_error = COALESCE(excluded.last_error, last_error)"
)
# Per table: the mapping's tallies, what waits (count and the oldest record's write time,
# from the record itself) and what was given up on.
_ACTIVITY_SQL = """
SELECT t.table_name, a.invocations, a.records, a.failed, a.last_at, a.last_lag, a.last_error,
       (SELECT COUNT(*) FROM stream s WHERE s.table_name = t.table_name AND s.seq > t.done),
       (SELECT json_extract(s.record, '$.dynamodb.ApproximateCreationDateTime') FROM stream s
         WHERE s.table_name = t.table_name AND s.seq > t.done ORDER BY s.seq LIMIT 1),
       (SELECT COUNT(*) FROM on_failure f WHERE f.table_name = t.table_name)
FROM (SELECT ? AS table_name,
             COALESCE((SELECT seq FROM checkpoint c WHERE c.table_name = ?), 0) AS done) t
LEFT JOIN mapping_activity a ON a.table_name = t.table_name
"""


@dataclass(frozen=True, slots=True)
class TableActivity:
    """What the event source mapping did for one table, read back from the database."""

    table: str
    invocations: int
    records: int  # stream records delivered (a retried record counts again)
    failed: int  # deliveries that raised or reported batchItemFailures
    last_at: float | None  # epoch seconds of the last delivery's end
    last_lag: float | None  # seconds from the oldest record's write to that delivery's end
    last_error: str | None
    pending: int  # stream records not yet checkpointed
    oldest_pending: float | None  # epoch seconds the oldest waiting record was written
    parked: int  # on-failure entries (records given up on)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (then re-raised)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class StreamTables:
    """Reads and writes of the stream, checkpoint and on-failure tables."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # supplied by Store

    def read_stream(
        self, table: str, after_sequence: str | int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stream records of `table` (model or table name) after a sequence number, in order."""
        name = table if "-" in table else table_name(table)
        after = int(after_sequence) if after_sequence not in (None, "") else 0
        rows = self._conn().execute(
            "SELECT seq, record FROM stream WHERE table_name = ? AND seq > ? ORDER BY seq LIMIT ?",
            (name, after, limit),
        )
        return [streams.with_sequence(orjson.loads(rec), seq) for seq, rec in rows]

    def stream_end(self, table: str) -> int:
        """Sequence number of the table's newest stream record (0 when empty)."""
        name = table if "-" in table else table_name(table)
        row = (
            self._conn()
            .execute("SELECT MAX(seq) FROM stream WHERE table_name = ?", (name,))
            .fetchone()
        )
        return int(row[0] or 0)

    def checkpoint(self, table: str) -> int:
        row = (
            self._conn()
            .execute("SELECT seq FROM checkpoint WHERE table_name = ?", (table,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def set_checkpoint(self, table: str, seq: int) -> None:
        self._conn().execute(_SET_CHECKPOINT_SQL, (table, seq))

    def add_failure(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        attempts: int,
        error: str,
        *,
        checkpoint: int,
    ) -> None:
        """Park records on the on-failure list and move past them, in one transaction."""
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        with transaction(self._conn()) as conn:
            conn.execute(
                "INSERT INTO on_failure (table_name, first_seq, last_seq, attempts, error, "
                "records, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    table,
                    min(seqs),
                    max(seqs),
                    attempts,
                    error,
                    orjson.dumps(list(records)).decode(),
                    time.time(),
                ),
            )
            conn.execute(_SET_CHECKPOINT_SQL, (table, checkpoint))

    def failures(self, table: str | None = None) -> list[dict[str, Any]]:
        """The on-failure list (like the SQS destination): what gave up, and why."""
        sql = "SELECT table_name, first_seq, last_seq, attempts, error, records FROM on_failure"
        args: tuple[str, ...] = ()
        if table is not None:
            sql += " WHERE table_name = ?"
            args = (table,)
        return [
            {
                "table": t,
                "firstSequence": f,
                "lastSequence": last,
                "attempts": a,
                "error": e,
                "records": orjson.loads(r),
            }
            for t, f, last, a, e, r in self._conn().execute(sql + " ORDER BY id", args)
        ]

    def record_delivery(
        self, table: str, records: int, *, failed: bool, lag: float | None, error: str | None
    ) -> None:
        """Tally one delivery of the mapping (`activity` reads it back)."""
        self._conn().execute(
            _RECORD_DELIVERY_SQL,
            (table, records, int(failed), time.time(), lag, error[:300] if error else None),
        )

    def activity(self, tables: Sequence[str]) -> list[TableActivity]:
        """The mapping's activity per table (model or table name), in the given order."""
        out = []
        for table in tables:
            name = table if "-" in table else table_name(table)
            row = self._conn().execute(_ACTIVITY_SQL, (name, name)).fetchone()
            _, inv, recs, failed, last_at, lag, err, pending, oldest, parked = row
            out.append(
                TableActivity(
                    name,
                    int(inv or 0),
                    int(recs or 0),
                    int(failed or 0),
                    last_at,
                    lag,
                    err,
                    int(pending),
                    None if oldest is None else float(oldest),
                    int(parked),
                )
            )
        return out
