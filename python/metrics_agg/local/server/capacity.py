"""What the local store would have cost in DynamoDB capacity units: a meter for the cost model.

The store feeds it (`Store.capacity`, None unless a measurement asks), so the hot path pays
one `is None` test when nothing is measured. It applies DynamoDB's on-demand rules to the
items the store actually reads and writes:

- item size: attribute names plus values, as DynamoDB sizes them (`item_size`);
- a Query page costs its items' total size rounded up to 4 KB, an item read (GetItem) its
  own size rounded up to 4 KB; a read unit covers one strongly consistent or two eventually
  consistent reads of that much. AppSync's generated resolvers read eventually consistent
  (and global secondary indexes only can), so `read_units` halves;
- a write costs the larger of the old and new item, rounded up to 1 KB (a delete: the old
  item; a failed condition check still costs at least one unit);
- each global secondary index the old or new item belongs to costs its own write: a put
  when the item enters it, a delete when it leaves, both when its index key changes, one
  write when only other attributes change (every index projects ALL attributes, Amplify's
  default), none when the item is unchanged.
"""

from __future__ import annotations

__all__ = ["CapacityMeter", "IndexKey", "TableUsage", "item_size", "meter_for_tables"]

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from metrics_agg.local.server._store_tables import INDEXES, IndexSpec, TableSpec

# The store's derived index columns of an item (`store._derived`): strings or None.
Derived = Callable[[TableSpec, Mapping[str, Any]], Mapping[str, str | None]]

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024


def _value_size(value: Any) -> int:
    """DynamoDB's size of one attribute value (bytes)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, int | float | Decimal):
        # Up to 38 significant digits, about one byte per two digits plus one.
        digits = str(abs(value)).replace(".", "").lstrip("0") or "0"
        return (len(digits.rstrip("0") or "0") + 1) // 2 + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode()) + _value_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(_value_size(v) + 1 for v in value)
    return len(str(value).encode())


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB bills it: the sum of attribute-name and value sizes."""
    return sum(len(name.encode()) + _value_size(v) for name, v in item.items())


@dataclass(frozen=True, slots=True)
class IndexKey:
    """One global secondary index of a table: the function that gives an item's index key
    (None when the item is not in the index: a key attribute is absent, as in a sparse
    index)."""

    name: str
    key: Callable[[Mapping[str, Any]], tuple[str, ...] | None]


@dataclass(slots=True)
class TableUsage:
    """Capacity one table spent while the meter ran."""

    rows_read: int = 0
    read_bytes: int = 0
    # Strongly consistent read units; eventually consistent reads cost half (`read_units`).
    strong_read_units: int = 0
    reads: int = 0  # Query pages and item reads
    items_written: int = 0  # puts, updates and deletes of the base table
    write_units: int = 0
    failed_writes: int = 0  # condition checks that failed (still billed)
    gsi_writes: int = 0
    gsi_write_units: int = 0
    gsi_writes_by_index: dict[str, int] = field(default_factory=dict)

    def read_units(self, *, consistent: bool = False) -> float:
        return float(self.strong_read_units) if consistent else self.strong_read_units / 2

    @property
    def all_write_units(self) -> int:
        """Base table plus every index: what on-demand bills as write request units."""
        return self.write_units + self.gsi_write_units


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class CapacityMeter:
    """Counts read and write units per table (thread-safe)."""

    def __init__(self, indexes: Mapping[str, Sequence[IndexKey]]) -> None:
        self._indexes = indexes
        self._lock = threading.Lock()
        self._usage: dict[str, TableUsage] = {}

    def _table(self, table: str) -> TableUsage:
        usage = self._usage.get(table)
        if usage is None:
            usage = self._usage[table] = TableUsage()
        return usage

    def read_page(self, table: str, items: Sequence[Mapping[str, Any]]) -> None:
        """One Query page (before any filter): its total size, rounded up once."""
        size = sum(item_size(i) for i in items)
        with self._lock:
            u = self._table(table)
            u.reads += 1
            u.rows_read += len(items)
            u.read_bytes += size
            u.strong_read_units += _units(size, READ_UNIT_BYTES)

    def read_item(self, table: str, item: Mapping[str, Any] | None) -> None:
        """One GetItem (an absent item still costs one unit)."""
        size = 0 if item is None else item_size(item)
        with self._lock:
            u = self._table(table)
            u.reads += 1
            u.rows_read += item is not None
            u.read_bytes += size
            u.strong_read_units += _units(size, READ_UNIT_BYTES)

    def failed_write(self, table: str, old: Mapping[str, Any] | None) -> None:
        size = 0 if old is None else item_size(old)
        with self._lock:
            u = self._table(table)
            u.failed_writes += 1
            u.write_units += _units(size, WRITE_UNIT_BYTES)

    def wrote(
        self, table: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        """One put, update or delete of the base table and what it costs its indexes."""
        old_size = 0 if old is None else item_size(old)
        new_size = 0 if new is None else item_size(new)
        gsi: list[tuple[str, int]] = []  # (index, units) of each index write
        for index in self._indexes.get(table, ()):
            before = None if old is None else index.key(old)
            after = None if new is None else index.key(new)
            if before is not None and (after is None or after != before):
                gsi.append((index.name, _units(old_size, WRITE_UNIT_BYTES)))  # leaves
            if after is not None and (before is None or after != before or old != new):
                gsi.append((index.name, _units(new_size, WRITE_UNIT_BYTES)))  # enters/changes
        with self._lock:
            u = self._table(table)
            u.items_written += 1
            u.write_units += _units(max(old_size, new_size), WRITE_UNIT_BYTES)
            for name, units in gsi:
                u.gsi_writes += 1
                u.gsi_write_units += units
                u.gsi_writes_by_index[name] = u.gsi_writes_by_index.get(name, 0) + 1

    def usage(self) -> dict[str, TableUsage]:
        """A copy of the tallies so far, by table name."""
        with self._lock:
            return {
                t: replace(u, gsi_writes_by_index=dict(u.gsi_writes_by_index))
                for t, u in self._usage.items()
            }


def meter_for_tables(derived: Derived) -> CapacityMeter:
    """A meter for the local tables: each table's global secondary indexes are its
    non-base indexes in `_store_tables`, keyed by the columns the store derives."""
    indexes: dict[str, list[IndexKey]] = {}
    for ix in INDEXES.values():
        if ix.name != ix.table.model:
            indexes.setdefault(ix.table.name, []).append(IndexKey(ix.name, _index_key(ix, derived)))
    return CapacityMeter(indexes)


def _index_key(
    index: IndexSpec, derived: Derived
) -> Callable[[Mapping[str, Any]], tuple[str, ...] | None]:
    """An item's key in a global secondary index, or None when it is not in it."""

    def key(item: Mapping[str, Any]) -> tuple[str, ...] | None:
        columns = derived(index.table, item)
        pk, sk = (
            item.get(c) if c in index.table.key else columns.get(c)
            for c in (index.partition, index.sort)
        )
        return (pk, sk) if isinstance(pk, str) and isinstance(sk, str) else None

    return key
