"""In-memory stand-in for `metrics_agg.graphql.api` (the functions the pipeline calls).

`FakeApi` holds source records and AggregatedMetrics with Amplify's write semantics
(create fails on an existing key, update fails on a missing key or a failed condition on
`updatedAt`), so the pure stages and the pipeline can be tested without a server. Tests
install it with `install(monkeypatch, fake)`, which swaps the `api` attribute that
`reading`, `writing` (and discovery in `pipeline`) use.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from metrics_agg.errors import GraphQLErrorInfo, ReadError, TransportError, WriteError
from metrics_agg.graphql.api import UnitReads, UnitRows, WriteResult
from metrics_agg.graphql.shared_reads import PROBE_ROWS
from metrics_agg.models import (
    BucketKey,
    BucketValue,
    BucketWrite,
    ModelSpec,
    SourceRead,
    StoredBucket,
)
from metrics_agg.timestamps import format_write_time, parse_instant_or_none

CCF = "DynamoDB:ConditionalCheckFailedException"


@dataclass
class FakeClient:
    """What the pipeline asks of a client besides the api calls."""

    request_count: int = 0
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeApi:
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> rows
    stored: dict[tuple[str, str], StoredBucket] = field(default_factory=dict)
    # Fault injection: raise ReadError on the n-th list read (1-based).
    fail_read_call: int | None = None
    fail_write_call: int | None = None
    alias_error: str | None = None  # composite key whose write fails with a non-conflict error
    # Shared reads (`read_units`): accounts whose aliases fail (a per-alias error).
    alias_error_accounts: set[str] = field(default_factory=set)
    shared_reads: int = 0  # read_units calls (one request each here)
    # Called before each write batch is applied (to simulate a racing writer).
    before_write: Callable[[FakeApi], None] | None = None
    # Rows the "index" does not show yet (GSI lag): ids hidden from the list reads.
    hidden_ids: set[str] = field(default_factory=set)
    read_calls: int = 0
    write_calls: int = 0
    stored_reads: int = 0
    writes: list[BucketWrite] = field(default_factory=list)

    # -- setup helpers ------------------------------------------------------------------
    def add(self, model: str, **row: Any) -> dict[str, Any]:
        self.records.setdefault(model, []).append(row)
        return row

    def remove(self, model: str, record_id: str) -> None:
        self.records[model] = [r for r in self.records.get(model, []) if r.get("id") != record_id]

    def put_stored(self, key: BucketKey, value: BucketValue, updated_at: str) -> None:
        self.stored[(key.account_id, key.composite_key)] = StoredBucket(key, value, updated_at)

    def bucket(self, account: str, composite_key: str) -> StoredBucket | None:
        return self.stored.get((account, composite_key))

    def counts(self, account: str, record_type: str, minutes: int) -> dict[datetime, int]:
        return {
            sb.key.start: sb.value.count
            for (acct, _), sb in self.stored.items()
            if acct == account and sb.key.record_type == record_type and sb.key.minutes == minutes
        }

    # -- the api surface ----------------------------------------------------------------
    def _list_rows(
        self,
        client: Any,
        spec: ModelSpec,
        query_index: int,
        account_id: str,
        start: datetime,
        end: datetime,
        *,
        deadline: Any = None,
        parallelism: int | None = None,
        page_limit: int | None = None,
    ) -> list[dict[str, Any]]:
        self.read_calls += 1
        if self.fail_read_call == self.read_calls:
            raise ReadError("injected read failure", status=500)
        sort_key = spec.sort_keys[query_index]
        lo, hi = start - timedelta(minutes=1), end + timedelta(minutes=1)
        out = []
        for row in self.records.get(spec.name, []):
            when = parse_instant_or_none(row.get(sort_key))
            if (
                row.get("accountId") == account_id
                and row.get("id") not in self.hidden_ids
                and when is not None
                and lo <= when < hi
            ):
                out.append(copy.deepcopy(row))
        return out

    def list_stored_buckets(
        self,
        client: Any,
        account_id: str,
        record_types: Sequence[str],
        start: datetime,
        end: datetime,
        *,
        deadline: Any = None,
    ) -> list[StoredBucket]:
        self.stored_reads += 1
        return [
            sb
            for (acct, _), sb in self.stored.items()
            if acct == account_id
            and sb.key.record_type in record_types
            and start <= sb.key.start < end
        ]

    def list_source_reads(
        self,
        client: Any,
        spec: ModelSpec,
        account_id: str,
        reads: Sequence[SourceRead],
        *,
        deadline: Any = None,
        parallelism: int | None = None,
        page_limit: int | None = None,
        zone_margin_minutes: int | None = None,
        sort_key_margin_minutes: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        return [
            self._list_rows(client, spec, r.query_index, account_id, r.start, r.end) for r in reads
        ]

    def list_stored_buckets_over(
        self,
        client: Any,
        account_id: str,
        record_types: Sequence[str],
        windows: Sequence[tuple[datetime, datetime]],
        *,
        deadline: Any = None,
    ) -> list[StoredBucket]:
        self.stored_reads += 1
        return [
            sb
            for (acct, _), sb in self.stored.items()
            if acct == account_id
            and sb.key.record_type in record_types
            and any(start <= sb.key.start < end for start, end in windows)
        ]

    def read_units(
        self,
        client: Any,
        units: Sequence[UnitReads],
        *,
        deadline: Any = None,
        sort_key_margin_minutes: int | None = None,
    ) -> list[UnitRows | TransportError]:
        """Every unit's reads as one request; ``fail_read_call`` fails it as a whole."""
        self.shared_reads += 1
        self.read_calls += 1
        if self.fail_read_call == self.read_calls:
            return [ReadError("injected read failure", status=500) for _ in units]
        out: list[UnitRows | TransportError] = []
        for u in units:
            if u.account_id in self.alias_error_accounts:
                out.append(ReadError("injected alias error"))
                continue
            stored = [
                sb
                for (acct, _), sb in self.stored.items()
                if acct == u.account_id
                and sb.key.record_type in u.record_types
                and any(start <= sb.key.start < end for start, end in u.stored_windows)
            ]
            source = []
            if u.spec is not None:
                for r in u.source:
                    self.read_calls -= 1  # one request for all of them
                    source.append(
                        self._list_rows(client, u.spec, r.query_index, u.account_id, r.start, r.end)
                    )
            probes = []
            if u.spec is not None:
                for r in u.probes:
                    self.read_calls -= 1
                    rows = self._list_rows(
                        client, u.spec, r.query_index, u.account_id, r.start, r.end
                    )
                    key = u.spec.sort_keys[r.query_index]
                    inside = [
                        x for x in rows if r.start <= parse_instant_or_none(x.get(key)) < r.end
                    ]
                    probes.append(inside if len(inside) <= PROBE_ROWS else None)
            out.append(UnitRows(stored, source, 1, tuple(probes)))
        return out

    def write_buckets(
        self,
        client: Any,
        writes: Sequence[BucketWrite],
        *,
        deadline: Any = None,
        per_request: int | None = None,
        parallelism: int | None = None,
        isolate: bool = False,
    ) -> list[WriteResult]:
        self.write_calls += 1
        if self.fail_write_call == self.write_calls:
            failure = WriteError("injected write failure", status=500)
            if not isolate:
                raise failure
            info = GraphQLErrorInfo("injected", "WriteError")
            return [WriteResult(w, False, False, info, failure) for w in writes]
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(self)
        results = []
        for w in writes:
            self.writes.append(w)
            ident = (w.key.account_id, w.key.composite_key)
            if self.alias_error in (w.key.composite_key, w.key.account_id):
                results.append(
                    WriteResult(
                        w, ok=False, conflict=False, error=GraphQLErrorInfo("boom", "Unauthorized")
                    )
                )
                continue
            existing = self.stored.get(ident)
            stamp = format_write_time(w.snapshot_time)
            if w.create:
                if existing is not None:
                    results.append(
                        WriteResult(
                            w, ok=False, conflict=True, error=GraphQLErrorInfo("exists", CCF)
                        )
                    )
                    continue
                self.stored[ident] = StoredBucket(w.key, w.value, stamp, stamp)
            else:
                held = (
                    existing is not None and existing.updated_at == w.expected_updated_at
                    if w.expected_updated_at is not None
                    else existing is not None and existing.updated_at <= stamp
                )
                if not held:
                    results.append(
                        WriteResult(
                            w, ok=False, conflict=True, error=GraphQLErrorInfo("condition", CCF)
                        )
                    )
                    continue
                self.stored[ident] = StoredBucket(w.key, w.value, stamp, existing.created_at)
            results.append(WriteResult(w, ok=True, conflict=False))
        return results


def install(monkeypatch: Any, fake: FakeApi) -> FakeApi:
    """Point the pipeline's I/O stages at ``fake``."""
    import metrics_agg.aggregator.read
    import metrics_agg.aggregator.shared
    import metrics_agg.aggregator.write

    monkeypatch.setattr(metrics_agg.aggregator.read, "api", fake)
    monkeypatch.setattr(metrics_agg.aggregator.shared, "api", fake)
    monkeypatch.setattr(metrics_agg.aggregator.write, "api", fake)
    return fake


def values(stored: Mapping[tuple[str, str], StoredBucket]) -> dict[str, int]:
    return {ck: sb.value.count for (_, ck), sb in stored.items()}
