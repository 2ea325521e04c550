"""The local server's SQLite store: every SQL statement of the local stack lives here.

One SQLite table per DynamoDB table (`<Model>-local-NONE`), the item as JSON plus the
key and index attributes as columns, and one SQLite index behind every list query
(DESIGN §5). Source-model writes append their stream record in the same transaction,
so a committed write always has its stream record and a rolled-back one never does.
"""

from __future__ import annotations

__all__ = [
    "INDEXES",
    "METRICS_TABLE",
    "TABLES",
    "ConditionalCheckFailed",
    "IndexSpec",
    "Store",
    "TableSpec",
    "table_name",
]

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from metrics_agg.local_server import conditions, streams
from metrics_agg.models import SOURCE_MODELS

Item = dict[str, Any]
# DynamoDB stops a Query page at 1 MB of data read, whatever the limit.
_PAGE_BYTES = 1024 * 1024


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
    ("recordType", "timeRangeStart", "scorecardId", "scoreId", "skRecordTypeTime",
     "skTimeRecordType"),
    streamed=False,
)
TABLES: Mapping[str, TableSpec] = {
    **{m: _source_table(m) for m in SOURCE_MODELS},
    "AggregatedMetrics": METRICS_TABLE,
}

INDEXES: dict[str, IndexSpec] = {}
for _spec in SOURCE_MODELS.values():
    for _query, _sk in zip(_spec.list_queries, _spec.sort_keys, strict=True):
        INDEXES[_query] = IndexSpec(_query, TABLES[_spec.name], "accountId", _sk, ("id",))
for _name, _pk, _sk, _tie in (
    ("AggregatedMetrics", "accountId", "compositeKey", ()),
    ("byAccountRecordType", "accountId", "skRecordTypeTime", ("compositeKey",)),
    ("byAccountTimeRangeRecord", "accountId", "skTimeRecordType", ("compositeKey",)),
    ("byScorecardTimeRangeRecord", "scorecardId", "skTimeRecordType",
     ("accountId", "compositeKey")),
    ("byScoreTimeRangeRecord", "scoreId", "skTimeRecordType", ("accountId", "compositeKey")),
):
    INDEXES[_name] = IndexSpec(_name, METRICS_TABLE, _pk, _sk, _tie)


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


class Store:
    """SQLite (WAL) behind the local AppSync emulation. Thread-safe: one connection per thread.

    Raises (constructor):
        sqlite3.Error: the database file cannot be opened or created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._on_write: list[Callable[[], None]] = []
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
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def on_write(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every committed stream append (the mapping's wake-up)."""
        self._on_write.append(callback)

    def _notify(self) -> None:
        for cb in self._on_write:
            cb()

    def _init_schema(self) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
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
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stream (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "table_name TEXT NOT NULL, record TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS stream_by_table ON stream (table_name, seq)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS checkpoint (table_name TEXT PRIMARY KEY, "
                "seq INTEGER NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS on_failure (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "table_name TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT "
                "NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, records TEXT NOT NULL, "
                "created_at REAL NOT NULL)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('token_secret', ?), ('stream_label', ?)",
                (secrets.token_hex(32), time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime())),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
        self.token_secret: bytes = bytes.fromhex(meta["token_secret"])
        self.stream_label: str = meta["stream_label"]

    # -- single-item writes ----------------------------------------------------------------
    def _get(self, conn: sqlite3.Connection, t: TableSpec, key: Sequence[str]) -> Item | None:
        where = " AND ".join(f"{_q(c)} = ?" for c in t.key)
        row = conn.execute(f"SELECT data FROM {_q(t.name)} WHERE {where}", tuple(key)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def get(self, model: str, key: Sequence[str]) -> Item | None:
        return self._get(self._conn(), TABLES[model], key)

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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = self._get(conn, t, key)
            if (old is not None) != must_exist or not conditions.matches(condition, old):
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
                conn.execute(
                    "INSERT INTO stream (table_name, record) VALUES (?, ?)",
                    (t.name, orjson.dumps(record).decode()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if t.streamed:
            self._notify()
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
        `partition=None` scans the whole index (listAggregatedMetrics without accountId).
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
        for row in self._conn().execute(sql, params):
            items.append(orjson.loads(row[n]))
            size += len(row[n])
            last = list(row[:n])
            if size >= _PAGE_BYTES:
                return items, last
        return items, (last if len(items) == limit else None)

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
            rows.append(
                (*(item[c] for c in t.key), *(derived[c] for c in t.columns), _dumps(item))
            )
            if stream and t.streamed:
                keys = {c: item[c] for c in t.key}
                rec = streams.build_record(t.name, self.stream_label, keys, None, item)
                records.append((t.name, orjson.dumps(rec).decode()))
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, cols))}, data) "
                f"VALUES ({', '.join('?' * (len(cols) + 1))})",
                rows,
            )
            conn.executemany("INSERT INTO stream (table_name, record) VALUES (?, ?)", records)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if records:
            self._notify()
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

    # -- streams ---------------------------------------------------------------------------
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
        row = self._conn().execute(
            "SELECT MAX(seq) FROM stream WHERE table_name = ?", (name,)
        ).fetchone()
        return int(row[0] or 0)

    def checkpoint(self, table: str) -> int:
        row = self._conn().execute(
            "SELECT seq FROM checkpoint WHERE table_name = ?", (table,)
        ).fetchone()
        return int(row[0]) if row else 0

    def set_checkpoint(self, table: str, seq: int) -> None:
        self._conn().execute(
            "INSERT INTO checkpoint VALUES (?, ?) ON CONFLICT (table_name) "
            "DO UPDATE SET seq = MAX(seq, excluded.seq)",
            (table, seq),
        )

    def add_failure(
        self, table: str, records: Sequence[Mapping[str, Any]], attempts: int, error: str,
        *, checkpoint: int,
    ) -> None:
        """Park records on the on-failure list and move past them, in one transaction."""
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO on_failure (table_name, first_seq, last_seq, attempts, error, "
                "records, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (table, min(seqs), max(seqs), attempts, error, orjson.dumps(list(records)).decode(),
                 time.time()),
            )
            conn.execute(
                "INSERT INTO checkpoint VALUES (?, ?) ON CONFLICT (table_name) "
                "DO UPDATE SET seq = MAX(seq, excluded.seq)",
                (table, checkpoint),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def failures(self, table: str | None = None) -> list[dict[str, Any]]:
        """The on-failure list (like the SQS destination): what gave up, and why."""
        sql = "SELECT table_name, first_seq, last_seq, attempts, error, records FROM on_failure"
        args: tuple[str, ...] = ()
        if table is not None:
            sql += " WHERE table_name = ?"
            args = (table,)
        return [
            {"table": t, "firstSequence": f, "lastSequence": last, "attempts": a, "error": e,
             "records": orjson.loads(r)}
            for t, f, last, a, e, r in self._conn().execute(sql + " ORDER BY id", args)
        ]
