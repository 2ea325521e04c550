"""The local server's SQLite store: every SQL statement of the local stack lives here
(and in `_store_streams`, the stream/checkpoint/on-failure side it mixes in).

One SQLite table per DynamoDB table (`<Model>-local-NONE`, laid out in `_store_tables`),
the item as JSON plus the key and index attributes as columns, and one SQLite index behind
every list query (docs/design.md §5). Source-model writes append their stream record in the same
transaction, so a committed write always has its stream record and a rolled-back one
never does.
"""

from __future__ import annotations

__all__ = ["ConditionalCheckFailed", "Store"]

import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from metrics_agg.local.server import conditions, streams
from metrics_agg.local.server._index_lag import IndexLag
from metrics_agg.local.server._store_activity import ACTIVITY_SCHEMA, ActivityRows
from metrics_agg.local.server._store_streams import (
    APPEND_STREAM_SQL,
    STREAM_SCHEMA,
    StreamTables,
    transaction,
)
from metrics_agg.local.server._store_tables import (
    INDEXES,
    METRICS_TABLE,
    TABLES,
    IndexSpec,
    TableSpec,
)
from metrics_agg.local.server.capacity import CapacityMeter, meter_for_tables

Item = dict[str, Any]
# DynamoDB stops a Query page at 1 MB of data read, whatever the limit.
_PAGE_BYTES = 1024 * 1024


class ConditionalCheckFailed(Exception):
    """The write's key or `condition` check failed; nothing was written."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _derived(table: TableSpec, item: Mapping[str, Any]) -> dict[str, Any]:
    """Column values: only strings, like a GSI key of type S (absent or NULL: not indexed)."""
    values = {c: item.get(c) for c in table.columns}
    if table is METRICS_TABLE:
        rt, ts = item.get("recordType"), item.get("timeRangeStart")
        both = isinstance(rt, str) and isinstance(ts, str)
        # Amplify stores a composite sort key as its fields joined with '#'.
        values["skRecordTypeTime"] = f"{rt}#{ts}" if both else None
        values["skTimeRecordType"] = f"{ts}#{rt}" if both else None
    return {c: (v if isinstance(v, str) else None) for c, v in values.items()}


def _dumps(item: Mapping[str, Any]) -> str:
    return orjson.dumps(item).decode()


class Store(StreamTables, ActivityRows, IndexLag):
    """SQLite (WAL) behind the local AppSync emulation. Thread-safe: one connection per thread.

    Raises (constructor):
        sqlite3.Error: the database file cannot be opened or created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._local = threading.local()
        # Each connection with the thread that opened it (see `close`).
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._on_write: list[Callable[[str], None]] = []
        # Rows each index's Query/Scan pages read (before any filter), for measurements:
        # what DynamoDB would charge read capacity for.
        self.rows_read: Counter[str] = Counter()
        # DynamoDB capacity units of every read and write (`meter_capacity`); None: not metered.
        self.capacity: CapacityMeter | None = None
        self._init_lag()
        self._init_schema()

    # -- connections -----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append((threading.current_thread(), conn))
        return conn

    def close(self) -> None:
        """Close the connections of this thread and of threads that have ended.

        A connection whose thread is still running (a server or mapping thread that did
        not stop in time) is left to that thread: closing a SQLite connection while
        another thread executes on it can crash the interpreter. It is closed when it is
        garbage-collected.
        """
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        me = threading.current_thread()
        for owner, conn in conns:
            if owner is me or not owner.is_alive():
                conn.close()

    def on_write(self, callback: Callable[[str], None]) -> None:
        """Call `callback(table name)` after every committed stream append (the mapping's
        wake-up, and the arrival time its batching window counts from)."""
        self._on_write.append(callback)

    def _notify(self, table: str) -> None:
        for cb in self._on_write:
            cb(table)

    def _init_schema(self) -> None:
        with transaction(self._conn()) as conn:
            for t in TABLES.values():
                cols = ", ".join(f"{_q(c)} TEXT" for c in (*t.key, *t.columns))
                pk = ", ".join(_q(c) for c in t.key)
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_q(t.name)} ({cols}, data TEXT NOT NULL, "
                    f"PRIMARY KEY ({pk}))"
                )
            for ix in INDEXES.values():
                if ix.name == ix.table.model:
                    continue  # the base table's primary key
                cols = ", ".join(_q(c) for c in (ix.partition, ix.sort, *ix.tie))
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {_q(ix.name)} ON {_q(ix.table.name)} ({cols})"
                )
            for statement in (*STREAM_SCHEMA, *ACTIVITY_SCHEMA):
                conn.execute(statement)
            conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('token_secret', ?), ('stream_label', ?)",
                (secrets.token_hex(32), time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime())),
            )
        meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
        self.token_secret: bytes = bytes.fromhex(meta["token_secret"])
        self.stream_label: str = meta["stream_label"]

    # -- single-item writes ----------------------------------------------------------------
    def _get(self, conn: sqlite3.Connection, t: TableSpec, key: Sequence[str]) -> Item | None:
        where = " AND ".join(f"{_q(c)} = ?" for c in t.key)
        row = conn.execute(f"SELECT data FROM {_q(t.name)} WHERE {where}", tuple(key)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def get(self, model: str, key: Sequence[str]) -> Item | None:
        t = TABLES[model]
        item = self._get(self._conn(), t, key)
        if self.capacity is not None:
            self.capacity.read_item(t.name, item)
        return item

    def meter_capacity(self) -> CapacityMeter:
        """Start counting DynamoDB read and write units (a fresh meter, returned)."""
        self.capacity = meter_for_tables(_derived)
        return self.capacity

    def _write(
        self,
        model: str,
        key: Sequence[str],
        change: Callable[[Item | None], Item | None],
        condition: Mapping[str, Any] | None,
        must_exist: bool,
    ) -> tuple[Item | None, Item | None]:
        """Read-check-write in one transaction; returns (old, new).

        Raises:
            ConditionalCheckFailed: key existence or `condition` does not hold.
        """
        t = TABLES[model]
        with transaction(self._conn()) as conn:
            old = self._get(conn, t, key)
            if (old is not None) != must_exist or not conditions.matches(condition, old):
                if self.capacity is not None:
                    self.capacity.failed_write(t.name, old)
                raise ConditionalCheckFailed(model)
            new = change(old)
            where = " AND ".join(f"{_q(c)} = ?" for c in t.key)
            if new is None:
                conn.execute(f"DELETE FROM {_q(t.name)} WHERE {where}", tuple(key))
            else:
                cols = (*t.key, *t.columns)
                derived = _derived(t, new)
                values = [new[c] for c in t.key] + [derived[c] for c in t.columns]
                conn.execute(
                    f"INSERT OR REPLACE INTO {_q(t.name)} ({', '.join(map(_q, cols))}, data) "
                    f"VALUES ({', '.join('?' * (len(cols) + 1))})",
                    (*values, _dumps(new)),
                )
            if t.streamed:
                record = streams.build_record(
                    t.name, self.stream_label, {c: key[i] for i, c in enumerate(t.key)}, old, new
                )
                conn.execute(APPEND_STREAM_SQL, (t.name, orjson.dumps(record).decode()))
        if self.capacity is not None:
            self.capacity.wrote(t.name, old, new)
        if self.index_lag > 0:
            self._remember(t.name, tuple(key), old)
        if t.streamed:
            self._notify(t.name)
        return old, new

    def create(self, model: str, item: Item, condition: Mapping[str, Any] | None = None) -> Item:
        """Put a new item; fails if the key exists or the condition is false on no item."""
        key = [item[c] for c in TABLES[model].key]
        _, new = self._write(model, key, lambda _old: item, condition, must_exist=False)
        assert new is not None
        return new

    def update(
        self,
        model: str,
        key: Sequence[str],
        changes: Mapping[str, Any],
        condition: Mapping[str, Any] | None = None,
    ) -> Item:
        """Merge `changes` into an existing item; a None value removes the attribute."""

        def merge(old: Item | None) -> Item:
            new = dict(old or {})
            for k, v in changes.items():
                if v is None:
                    new.pop(k, None)  # Amplify's update REMOVEs attributes set to null
                else:
                    new[k] = v
            return new

        _, new = self._write(model, key, merge, condition, must_exist=True)
        assert new is not None
        return new

    def delete(
        self, model: str, key: Sequence[str], condition: Mapping[str, Any] | None = None
    ) -> Item:
        old, _ = self._write(model, key, lambda _old: None, condition, must_exist=True)
        assert old is not None
        return old

    # -- queries ---------------------------------------------------------------------------
    def query(
        self,
        index: IndexSpec,
        partition: str | None,
        key_condition: conditions.KeyCondition | None,
        *,
        descending: bool = False,
        limit: int = 100,
        start_after: Sequence[str] | None = None,
    ) -> tuple[list[Item], list[str] | None]:
        """One Query page: up to `limit` items in index order (before any filter).

        Returns the items and the position of the last item read when the page stopped at
        `limit` or at 1 MB (DynamoDB's LastEvaluatedKey: set even if nothing follows).
        `partition=None` scans the whole index (listAggregatedMetrics without accountId,
        listAccounts).
        """
        t = index.table
        pos_cols = index.position_columns
        where: list[str] = [f"{_q(index.sort)} IS NOT NULL"]
        params: list[Any] = []
        order_cols = pos_cols
        if partition is not None:
            where.append(f"{_q(index.partition)} = ?")
            params.append(partition)
        else:
            where.append(f"{_q(index.partition)} IS NOT NULL")
            order_cols = (index.partition, *pos_cols)
        lo, lo_inc, hi, hi_inc = (
            key_condition.bounds() if key_condition is not None else (None, False, None, False)
        )
        if start_after is not None and partition is not None:
            # Seek straight to the position: a bound on the sort column alone is what the
            # index range uses (the row-value term below only breaks ties).
            pos = str(start_after[0])
            if descending and (hi is None or pos < hi):
                hi, hi_inc = pos, True
            elif not descending and (lo is None or pos > lo):
                lo, lo_inc = pos, True
        if lo is not None:
            where.append(f"{_q(index.sort)} {'>=' if lo_inc else '>'} ?")
            params.append(lo)
        if hi is not None:
            where.append(f"{_q(index.sort)} {'<=' if hi_inc else '<'} ?")
            params.append(hi)
        if start_after is not None:
            cols = ", ".join(_q(c) for c in order_cols)
            marks = ", ".join("?" * len(order_cols))
            where.append(f"({cols}) {'<' if descending else '>'} ({marks})")
            params.extend(start_after)
        direction = " DESC" if descending else ""
        order = ", ".join(_q(c) + direction for c in order_cols)
        sql = (
            f"SELECT {', '.join(_q(c) for c in order_cols)}, data FROM {_q(t.name)} "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        )
        params.append(limit)
        items: list[Item] = []
        size = 0
        last: list[str] | None = None
        n = len(order_cols)
        full = False
        for row in self._conn().execute(sql, params):
            items.append(orjson.loads(row[n]))
            size += len(row[n])
            last = list(row[:n])
            if size >= _PAGE_BYTES:
                full = True
                break
        with self._lock:
            self.rows_read[index.name] += len(items)
        if self.capacity is not None:
            self.capacity.read_page(t.name, items)
        last = last if full or len(items) == limit else None
        # The base table (`AggregatedMetrics`) is read consistently; its indexes may lag.
        if self.index_lag > 0 and partition is not None and index.name != "AggregatedMetrics":
            items = self._lagged(
                index, partition, key_condition, descending, start_after, items, last, _derived
            )
        return items, last

    # -- bulk writes (seeding) ---------------------------------------------------------------
    def bulk_insert(self, model: str, items: Iterable[Item], *, stream: bool = True) -> int:
        """Insert new items in one transaction (and their INSERT stream records).

        Raises:
            sqlite3.IntegrityError: an item's key already exists; nothing is written.
        """
        t = TABLES[model]
        cols = (*t.key, *t.columns)
        rows: list[tuple[Any, ...]] = []
        records: list[tuple[str, str]] = []
        for item in items:
            derived = _derived(t, item)
            rows.append((*(item[c] for c in t.key), *(derived[c] for c in t.columns), _dumps(item)))
            if stream and t.streamed:
                keys = {c: item[c] for c in t.key}
                rec = streams.build_record(t.name, self.stream_label, keys, None, item)
                records.append((t.name, orjson.dumps(rec).decode()))
        with transaction(self._conn()) as conn:
            conn.executemany(
                f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, cols))}, data) "
                f"VALUES ({', '.join('?' * (len(cols) + 1))})",
                rows,
            )
            conn.executemany(APPEND_STREAM_SQL, records)
        if records:
            self._notify(t.name)
        return len(rows)

    # -- the truth, for tests and verification -----------------------------------------------
    def all_records(self, model: str, account_id: str | None = None) -> list[Item]:
        """Every item of a table (plain fields), optionally of one account; key order."""
        t = TABLES[model]
        order = ", ".join(_q(c) for c in t.key)
        if account_id is None:
            rows = self._conn().execute(f"SELECT data FROM {_q(t.name)} ORDER BY {order}")
        else:
            rows = self._conn().execute(
                f"SELECT data FROM {_q(t.name)} WHERE accountId = ? ORDER BY {order}",
                (account_id,),
            )
        return [orjson.loads(r[0]) for r in rows]

    def all_metrics(self, account_id: str | None = None) -> list[Item]:
        return self.all_records("AggregatedMetrics", account_id)

    def bucket_extents(self) -> dict[str, tuple[str, str]]:
        """accountId -> (earliest bucket start, latest bucket end) of every account with
        buckets: the dashboard's account list, its "since first record", and its fit when the
        last day holds nothing."""
        t = TABLES["AggregatedMetrics"]
        rows = self._conn().execute(
            f"SELECT accountId, MIN(timeRangeStart), MAX(json_extract(data, '$.timeRangeEnd')) "
            f"FROM {_q(t.name)} GROUP BY accountId"
        )
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows if r[1] is not None}
