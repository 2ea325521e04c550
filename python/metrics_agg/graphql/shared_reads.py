"""The reads of many work units in shared HTTP requests (docs/incremental.md "Shared requests").

A stream invocation touches many (model, account) units. Each needs its stored rows and,
for the incremental path, the source records of its touched minutes. `read_units` sends
the first page of every unit's reads as aliases of as few query documents as the alias
cap allows (`MAX_SHARED_ALIASES`): each alias names its own account (``$a<i>``), so units
of different accounts share a request. An alias whose page has a ``nextToken`` continues
on its own, as in `_slices`. A *probe* (`UnitReads.probes`) reads at most `PROBE_ROWS`
records and never continues: it says whether a range holds anything beyond what the
caller expects (docs/incremental.md "Which hours fall back").

Failure stays per unit: an error that names an alias fails only the unit that alias
belongs to; a request that fails as a whole fails the units with an alias in it. A unit
with any failed alias gets its error instead of rows, never part of its rows.

The slices are the ones the one-unit reads build (`stored.stored_slices`,
`reads.source_slices`), so each alias reads exactly what the per-unit path reads.
"""

from __future__ import annotations

__all__ = [
    "MAX_SHARED_ALIASES",
    "PROBE_ROWS",
    "UnitReads",
    "UnitRows",
    "read_units",
    "shared_list_document",
]

import functools
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metrics_agg.deadline import Deadline
from metrics_agg.errors import GraphQLErrorInfo, ReadError, TransportError
from metrics_agg.graphql._parallel import run_all
from metrics_agg.graphql._slices import Slice, aliased_list_document
from metrics_agg.graphql.reads import dedupe_reads, source_slices
from metrics_agg.graphql.stored import decode_stored_rows, stored_slices
from metrics_agg.graphql.transport import GraphQLApi, is_throttling_error_type
from metrics_agg.models import ModelSpec, SourceRead, StoredBucket

# Aliases per request. Each alias returns at most one page, so the cap bounds the response
# to this many pages; 256 holds the first pages of 50 units of any model.
MAX_SHARED_ALIASES = 256
PROBE_ROWS = 4

_Rows = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class UnitReads:
    """One unit's part of a shared read: its stored rows over ``stored_windows`` and, with
    ``spec``, the source reads ``source`` (each with the key margin the caller passes)."""

    account_id: str
    record_types: tuple[str, ...]
    stored_windows: tuple[tuple[datetime, datetime], ...]
    spec: ModelSpec | None = None
    source: tuple[SourceRead, ...] = ()
    probes: tuple[SourceRead, ...] = ()  # read with `PROBE_ROWS` as limit, one page


@dataclass(frozen=True, slots=True)
class UnitRows:
    """A unit's rows: stored buckets (one per composite key), and each source read's
    records de-duplicated by id; ``requests``: the HTTP requests its aliases were in.
    ``probes``: each probe's rows, or None when it had more than one page."""

    stored: list[StoredBucket]
    source: list[_Rows]
    requests: int
    probes: tuple[_Rows | None, ...] = ()


@dataclass(frozen=True, slots=True)
class _Alias:
    owner: int
    account_id: str
    slice: Slice
    probe: bool = False


@dataclass
class _Owner:
    groups: list[_Rows]
    cut: set[int] = field(default_factory=set)  # probe groups that had a next page
    requests: int = 0
    error: TransportError | None = None


_INDEXED = re.compile(r"\$([alkns])0\b")


@functools.lru_cache(maxsize=64)
def _one_alias(field: str) -> tuple[str, str]:
    """(variable lines, selection) of the sgqlc-built one-alias document of ``field``."""
    document = aliased_list_document((field,), True)
    head, _, body = document.partition("\n) {\n")
    return head.partition("(\n")[2], body.rpartition("\n}")[0]


def _slots(fields: Sequence[str]) -> list[tuple[str, int | None]]:
    """The aliases of one request by field, each field's count padded to a power of two
    with skipped aliases (None): (field, page index). A server parses and validates each
    new document (graphql-core: 0.2-0.6 s for 100-250 aliases); padded, the shapes of an
    invocation's reads repeat, so the documents are cached."""
    by_field: dict[str, list[int]] = {}
    for i, f in enumerate(fields):
        by_field.setdefault(f, []).append(i)
    slots: list[tuple[str, int | None]] = []
    for f in sorted(by_field):
        real = by_field[f]
        padded = 1 << (len(real) - 1).bit_length()
        slots += [(f, i) for i in real] + [(f, None)] * (padded - len(real))
    return slots


@functools.lru_cache(maxsize=256)
def shared_list_document(fields: tuple[str, ...], skippable: bool = False) -> str:
    """`aliased_list_document(fields, per_alias_account=True)`, composed from the sgqlc
    output of each field's one-alias document with its index renamed. Same text (a test
    compares them); building it with sgqlc takes 0.1-0.2 s of CPU for a hundred aliases,
    and shared shapes seldom repeat, so each invocation would pay that under the GIL.
    ``skippable``: every alias also gets ``@skip(if: $s<i>)`` (`_slots`' padding)."""
    variables, selections = [], []
    for i, name in enumerate(fields):
        head, body = _one_alias(name)
        if skippable:
            head += "\n  $s0: Boolean!"
            body = body.replace("\n    ) {", "\n    ) @skip(if: $s0) {", 1)
        renamed = rf"$\g<1>{i}"  # $a0 -> $a<i>, and so on
        variables.append(_INDEXED.sub(renamed, head))
        body = _INDEXED.sub(renamed, body)
        selections.append(body.replace("  q0: ", f"  q{i}: ", 1))
    return (
        f"query SharedLists{len(fields)}(\n"
        + "\n".join(variables)
        + "\n) {\n"
        + "\n".join(selections)
        + "\n}"
    )


def _alias_error(field: str, err: GraphQLErrorInfo) -> ReadError:
    return ReadError(
        f"GraphQL read of {field} failed for this unit: {err.error_type or 'error'}: "
        f"{err.message[:120]}",
        errors=(err,),
    )


class _Shared:
    def __init__(
        self, client: GraphQLApi, owners: list[_Owner], limit: int, deadline: Deadline | None
    ) -> None:
        self.client = client
        self.owners = owners
        self.limit = limit
        self.deadline = deadline
        self.lock = threading.Lock()

    def _fail(self, owner: int, error: TransportError) -> None:
        with self.lock:
            if self.owners[owner].error is None:
                self.owners[owner].error = error

    def _send(self, pages: Sequence[tuple[_Alias, str | None]]) -> list[Any]:
        """One request; per alias its (rows, token), or the error that failed it."""
        slots = _slots([a.slice.field for a, _ in pages])
        variables: dict[str, Any] = {}
        name_of: dict[int, str] = {}
        for j, (_, i) in enumerate(slots):
            if i is None:  # padding: skipped, its resolver never runs
                variables |= {f"a{j}": "", f"l{j}": 1, f"k{j}": None, f"n{j}": None}
                variables[f"s{j}"] = True
                continue
            alias, token = pages[i]
            name_of[i] = f"q{j}"
            variables[f"a{j}"] = alias.account_id
            variables[f"l{j}"] = PROBE_ROWS if alias.probe else self.limit
            variables[f"k{j}"] = alias.slice.condition()
            variables[f"n{j}"] = token
            variables[f"s{j}"] = False
        document = shared_list_document(tuple(f for f, _ in slots), skippable=True)
        with self.lock:
            for owner in {a.owner for a, _ in pages}:
                self.owners[owner].requests += 1
        response = self.client.execute(
            document, variables, kind="aliased-read", deadline=self.deadline
        )
        by_alias: dict[str, GraphQLErrorInfo] = {}
        for err in response.errors:
            name = err.path[0] if err.path else None
            if not isinstance(name, str):  # an error of no alias: the whole request failed
                raise ReadError(
                    f"GraphQL shared read failed: {err.error_type or 'error'}: {err.message[:120]}",
                    errors=response.errors,
                )
            by_alias.setdefault(name, err)
        data = response.data or {}
        out: list[Any] = []
        for i in range(len(pages)):
            failed = by_alias.get(name_of[i])
            if failed is not None:
                out.append(failed)
                continue
            conn = data.get(name_of[i])
            items = conn.get("items") if isinstance(conn, dict) else None
            token = conn.get("nextToken") if isinstance(conn, dict) else None
            if not isinstance(items, list) or (token is not None and not isinstance(token, str)):
                out.append(GraphQLErrorInfo("malformed connection", None, (name_of[i],)))
                continue
            out.append(([row for row in items if isinstance(row, dict)], token))
        return out

    def page(self, pages: Sequence[tuple[_Alias, str | None]]) -> list[tuple[_Alias, str]]:
        """Send ``pages`` (re-sending throttled aliases, which did not run), keep their
        rows, fail the owners of failed aliases; the aliases left with a next page."""
        pending = list(pages)
        more: list[tuple[_Alias, str]] = []
        attempt = 1
        while pending:
            try:
                results = self._send(pending)
            except TransportError as exc:
                for alias, _ in pending:
                    self._fail(alias.owner, exc)
                return more
            throttled = []
            for (alias, token), result in zip(pending, results, strict=True):
                if isinstance(result, GraphQLErrorInfo):
                    if is_throttling_error_type(result.error_type):
                        throttled.append((alias, token))
                    else:
                        self._fail(alias.owner, _alias_error(alias.slice.field, result))
                    continue
                rows, next_token = result
                with self.lock:
                    self.owners[alias.owner].groups[alias.slice.group].extend(rows)
                if next_token is None:
                    continue
                if alias.probe:
                    with self.lock:
                        self.owners[alias.owner].cut.add(alias.slice.group)
                    continue
                if next_token == token:
                    self._fail(
                        alias.owner,
                        ReadError(f"{alias.slice.field} pagination did not advance"),
                    )
                else:
                    more.append((alias, next_token))
            if throttled and not self.client.pause_before_retry(attempt, self.deadline):
                for alias, _ in throttled:
                    self._fail(alias.owner, ReadError(f"{alias.slice.field} throttled"))
                throttled = []
            pending = throttled
            attempt += 1
        return more

    def to_end(self, alias: _Alias, token: str) -> None:
        current: str | None = token
        while current is not None and self.owners[alias.owner].error is None:
            nxt = self.page([(alias, current)])
            current = nxt[0][1] if nxt else None


def _first_pages(
    shared: _Shared, bundle: Sequence[_Alias]
) -> Callable[[threading.Event], list[tuple[_Alias, str]]]:
    return lambda _stop: shared.page([(a, None) for a in bundle])


def _rest_of(shared: _Shared, alias: _Alias, token: str) -> Callable[[threading.Event], None]:
    return lambda _stop: shared.to_end(alias, token)


def read_units(
    client: GraphQLApi,
    units: Sequence[UnitReads],
    *,
    deadline: Deadline | None = None,
    sort_key_margin_minutes: int | None = None,
) -> list[UnitRows | TransportError]:
    """Every unit's rows, or the error that failed it, in the order of ``units``.

    Raises:
        ValueError: naive datetimes, an empty range, or a bad ``query_index``.
    """
    config = client.config
    limit = max(1, config.page_limit)
    aliases: list[_Alias] = []
    spans_of: list[list[tuple[datetime, datetime]]] = []
    owners: list[_Owner] = []
    for owner, unit in enumerate(units):
        slices, spans = stored_slices(unit.record_types, unit.stored_windows, limit)
        if unit.spec is not None and unit.source:
            slices += source_slices(
                unit.spec,
                unit.source,
                budget=1,
                limit=limit,
                zone=config.zone_margin_minutes,
                key_margin=sort_key_margin_minutes,
                first_group=1,
            )
        spans_of.append(spans)
        first_probe = 1 + len(unit.source)
        owners.append(_Owner([[] for _ in range(first_probe + len(unit.probes))]))
        aliases.extend(_Alias(owner, unit.account_id, sl) for sl in slices)
        if unit.spec is not None and unit.probes:
            aliases.extend(
                _Alias(owner, unit.account_id, sl, probe=True)
                for sl in source_slices(
                    unit.spec,
                    unit.probes,
                    budget=1,
                    limit=limit,
                    zone=config.zone_margin_minutes,
                    key_margin=0,
                    first_group=first_probe,
                )
            )
    shared = _Shared(client, owners, limit, deadline)
    bundles = [
        aliases[i : i + MAX_SHARED_ALIASES] for i in range(0, len(aliases), MAX_SHARED_ALIASES)
    ]
    workers = max(1, config.read_parallelism)
    rests = run_all([_first_pages(shared, b) for b in bundles], workers)
    follow = [(a, t) for rest in rests for a, t in rest]
    if follow:
        run_all([_rest_of(shared, a, t) for a, t in follow], workers)
    out: list[UnitRows | TransportError] = []
    for unit, state, spans in zip(units, owners, spans_of, strict=True):
        if state.error is not None:
            out.append(state.error)
            continue
        first_probe = 1 + len(unit.source)
        groups = state.groups[1:first_probe]
        source = dedupe_reads(unit.spec, unit.source, groups) if unit.spec else []
        stored = [
            sb
            for sb in decode_stored_rows(state.groups[0], spans)
            if sb.key.account_id == unit.account_id
        ]
        probes = tuple(
            None if first_probe + i in state.cut else state.groups[first_probe + i]
            for i in range(len(unit.probes))
        )
        out.append(UnitRows(stored, source, state.requests, probes))
    return out
