"""Eventually consistent index reads for the local store (docs/design.md §4.8, issue 9).

AppSync reads a global secondary index eventually consistently: a query can miss a write
acknowledged a moment earlier. With ``index_lag`` seconds set (``serve --index-lag-ms``,
off by default), index queries show, for that long after each write, the item's previous
version (or nothing, for a new item) instead of the new one. Gets and the base table's own
list query stay consistent. Tests use it to show what the reconcile repairs.
"""

from __future__ import annotations

__all__ = ["IndexLag"]

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metrics_agg.local.server import conditions
from metrics_agg.local.server._store_tables import IndexSpec, TableSpec

Item = dict[str, Any]


class IndexLag:
    """Mixed into `Store`: remembers recent writes and rewrites index pages with them."""

    index_lag: float
    _recent: dict[str, deque[tuple[float, tuple[str, ...], Item | None]]]
    _lock: threading.Lock

    def _init_lag(self) -> None:
        self.index_lag = 0.0
        self._recent = {}

    def _remember(self, table: str, key: tuple[str, ...], old: Item | None) -> None:
        now = time.monotonic()
        with self._lock:
            log = self._recent.setdefault(table, deque())
            log.append((now, key, old))
            while log and log[0][0] <= now - self.index_lag:
                log.popleft()

    def _lagged(
        self,
        index: IndexSpec,
        partition: str,
        key_condition: conditions.KeyCondition | None,
        descending: bool,
        start_after: Sequence[str] | None,
        items: list[Item],
        last: list[str] | None,
        derived: Callable[[TableSpec, Mapping[str, Any]], dict[str, Any]],
    ) -> list[Item]:
        """The page as an index `index_lag` seconds behind would show it: items written
        since then appear in their previous version (or not at all, if new)."""
        t = index.table
        cutoff = time.monotonic() - self.index_lag
        with self._lock:
            entries = [e for e in self._recent.get(t.name, ()) if e[0] > cutoff]
        if not entries:
            return items
        visible: dict[tuple[str, ...], Item | None] = {}
        for _, key, old in entries:  # oldest first: the version before the first write
            visible.setdefault(key, old)

        def position(item: Item) -> tuple[str, ...] | None:
            columns = derived(t, item)
            values = tuple(
                columns.get(c) if c in columns else item.get(c) for c in index.position_columns
            )
            if columns.get(index.partition, item.get(index.partition)) != partition or any(
                not isinstance(v, str) for v in values
            ):
                return None
            return values  # type: ignore[return-value]

        lo, lo_inc, hi, hi_inc = (
            key_condition.bounds() if key_condition is not None else (None, False, None, False)
        )
        out = [it for it in items if tuple(str(it[c]) for c in t.key) not in visible]
        for old in visible.values():
            pos = None if old is None else position(old)
            if old is None or pos is None:
                continue
            sort = pos[0]
            if lo is not None and (sort < lo or (sort == lo and not lo_inc)):
                continue
            if hi is not None and (sort > hi or (sort == hi and not hi_inc)):
                continue
            if start_after is not None and (
                pos <= tuple(start_after) if not descending else pos >= tuple(start_after)
            ):
                continue
            if last is not None and (pos > tuple(last) if not descending else pos < tuple(last)):
                continue
            out.append(old)
        out.sort(key=lambda it: position(it) or (), reverse=descending)
        return out
