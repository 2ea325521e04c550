"""Many list-query slices in few HTTP requests (docs/design.md §7: a handful of requests per unit).

A *slice* is one list query over a range of epoch minutes of its sort key. `read_slices`
reads a set of them to the end:

- slices expected to fit in about one page ("light", or of unknown size) go out together,
  as aliases of one query document (`aliased_list_document`), up to `MAX_ALIASES` aliases
  and about `BUNDLE_ROWS` expected rows per request;
- slices expected to need several pages ("heavy") page on their own, in parallel;
- an alias whose page comes back with a ``nextToken`` continues on its own. When the
  first page suggests a lot is left (its rows per minute, or nothing known about the
  range), the rest of the range is split by time into parallel sub-ranges instead, once:
  list pages come in sort-key order (DynamoDB Query), so every key below the page's last
  key has been read, and the rest is exactly ``[last key, end]``; the rows at the last key
  itself are read again and the caller de-duplicates (by id, or by composite key).

Full pagination, always: only a null ``nextToken`` ends a slice (an empty page may have a
next one). Any failed request fails the whole read (`run_expanding`).

Documents are built with sgqlc's ``Operation`` API, one per shape (the tuple of root
fields), copying each field's selection from the generated operation of the same field,
so a document never drifts from ``documents/*.graphql``; nothing here formats a string.
"""

from __future__ import annotations

__all__ = [
    "BUNDLE_ROWS_PER_PAGE",
    "MAX_ALIASES",
    "KeySpace",
    "Slice",
    "aliased_list_document",
    "generated_queries",
    "minute_of_key",
    "query_document",
    "read_slices",
]

import functools
import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from metrics_agg.deadline import Deadline
from metrics_agg.errors import ReadError
from metrics_agg.graphql._parallel import Cancelled, Expanding, run_expanding
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.timestamps import epoch_minute

MAX_ALIASES = 16
# A bundle holds at most this many pages' worth of expected rows (response size).
BUNDLE_ROWS_PER_PAGE = 2

# Arguments every Amplify list-by-index query has; the remaining one is the key condition.
_COMMON_ARGS = frozenset({"accountId", "sortDirection", "filter", "limit", "nextToken"})

_Rows = list[dict[str, Any]]
_Results = list[tuple[int, _Rows]]  # (group, rows) per slice


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.cache
def generated_queries() -> dict[str, Any]:
    """GraphQL root field name -> its sgqlc-generated operation (`operations.py`)."""
    from metrics_agg.graphql.operations import Operations

    return {
        _camel(name): op for name, op in vars(Operations.query).items() if not name.startswith("_")
    }


def query_document(field: str) -> str:
    """The generated single-query document whose root field is ``field``.

    Raises:
        KeyError: no generated operation for that field (regenerate the sgqlc code).
    """
    try:
        return str(generated_queries()[field])
    except KeyError:
        raise KeyError(
            f"no generated operation for {field!r}: add it to graphql/documents/ and run "
            "`python -m metrics_agg.graphql.codegen`"
        ) from None


def _copy_selection(source: Any, target: Any) -> None:
    for child in source:
        if child is source:  # sgqlc iterates a leaf selection as itself
            return
        _copy_selection(child, getattr(target, child.__field__.name)())


@functools.lru_cache(maxsize=128)
def aliased_list_document(fields: tuple[str, ...], per_alias_account: bool = False) -> str:
    """One query with an alias ``q<i>`` per root field in ``fields`` (cached per shape).

    Variables: ``$accountId`` and ``$limit`` shared; ``$k<i>`` (the key condition of
    alias i, typed as that field's key-condition argument) and ``$n<i>`` (its nextToken).
    ``per_alias_account`` (`shared_reads`: aliases of several accounts in one request):
    ``$a<i>`` and ``$l<i>`` replace ``$accountId`` and ``$limit`` for alias i.

    Raises:
        KeyError: a field without a generated operation (regenerate the sgqlc code).
    """
    from sgqlc.operation import Operation
    from sgqlc.types import Arg, Variable, non_null

    from metrics_agg.graphql import schema as s

    generated = generated_queries()
    variables: dict[str, Any] = {}
    if not per_alias_account:
        variables["accountId"] = Arg(non_null(s.String))
        variables["limit"] = Arg(s.Int)
    roots = []
    for i, field in enumerate(fields):
        if field not in generated:
            raise KeyError(
                f"no generated operation for {field!r}: add it to "
                "graphql/documents/ and run `python -m metrics_agg.graphql.codegen`"
            )
        (root,) = list(generated[field])
        (key_arg,) = [a for a in root.__field__.args.values() if a.graphql_name not in _COMMON_ARGS]
        if per_alias_account:
            variables[f"a{i}"] = Arg(non_null(s.String))
            variables[f"l{i}"] = Arg(s.Int)
        variables[f"k{i}"] = Arg(key_arg.type)
        variables[f"n{i}"] = Arg(s.String)
        roots.append((root, key_arg.name))
    name = f"{'SharedLists' if per_alias_account else 'AliasedLists'}{len(fields)}"
    op = Operation(s.schema.query_type, name=name, variables=variables)
    for i, (root, key_name) in enumerate(roots):
        selection = op[root.__field__.name](
            **{
                "account_id": Variable(f"a{i}" if per_alias_account else "accountId"),
                key_name: Variable(f"k{i}"),
                "limit": Variable(f"l{i}" if per_alias_account else "limit"),
                "next_token": Variable(f"n{i}"),
                "__alias__": f"q{i}",
            }
        )
        _copy_selection(root, selection)
    return str(op)


def minute_of_key(key: str) -> int | None:
    """Epoch minute of a sort key's ``YYYY-MM-DDTHH:MM`` prefix (its place in string order)."""
    try:
        return epoch_minute(datetime.fromisoformat(key[:16] + "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class KeySpace:
    """How one index's sort key is bounded: inclusive bounds from minutes, and back."""

    condition: Callable[[str, str], Mapping[str, Any]]  # (lo, hi) inclusive -> condition
    lower: Callable[[int], str]  # the lowest bound of a range starting at this minute
    upper: Callable[[int], str]  # the inclusive upper bound of a range ending at this minute
    key_of: Callable[[Mapping[str, Any]], object]  # a row's sort-key value


@dataclass(frozen=True, slots=True)
class Slice:
    """``field`` over the minutes ``[start, end)``; rows go to result ``group``."""

    field: str
    keys: KeySpace
    start: int
    end: int
    group: int
    expected: float | None = None  # rows expected; None: unknown
    lower: str | None = None  # resumes at this key instead of ``keys.lower(start)``
    splittable: bool = True  # may split its rest after the first page (once)

    def condition(self) -> Mapping[str, Any]:
        lo = self.lower if self.lower is not None else self.keys.lower(self.start)
        return self.keys.condition(lo, self.keys.upper(self.end))


def _connection(data: Mapping[str, Any] | None, alias: str, field: str) -> tuple[_Rows, str | None]:
    conn = (data or {}).get(alias)
    if not isinstance(conn, dict) or not isinstance(conn.get("items"), list):
        raise ReadError(f"malformed {field} response: no connection with an items list")
    token = conn.get("nextToken")
    if token is not None and not isinstance(token, str):
        raise ReadError(f"malformed {field} response: nextToken is not a string")
    return [item for item in conn["items"] if isinstance(item, dict)], token


@dataclass(frozen=True, slots=True)
class _Reader:
    client: GraphQLApi
    account_id: str
    limit: int
    parallelism: int
    deadline: Deadline | None

    def send(
        self, pages: Sequence[tuple[Slice, str | None]], stop: threading.Event
    ) -> list[tuple[_Rows, str | None]]:
        """One HTTP request: the next page of every (slice, token), as aliases."""
        if stop.is_set():
            raise Cancelled
        variables: dict[str, Any] = {"accountId": self.account_id, "limit": self.limit}
        for i, (sl, token) in enumerate(pages):
            variables[f"k{i}"] = sl.condition()
            variables[f"n{i}"] = token
        document = aliased_list_document(tuple(sl.field for sl, _ in pages))
        response = self.client.execute(document, variables, kind="read", deadline=self.deadline)
        return [_connection(response.data, f"q{i}", sl.field) for i, (sl, _) in enumerate(pages)]

    def page_to_end(self, sl: Slice, token: str | None) -> Expanding[_Results]:
        def run(stop: threading.Event) -> tuple[_Results, list[Any]]:
            rows: _Rows = []
            current = token
            while True:
                ((items, next_token),) = self.send([(sl, current)], stop)
                rows.extend(items)
                if next_token is None:
                    return [(sl.group, rows)], []
                if next_token == current:
                    raise ReadError(f"{sl.field} pagination did not advance (same nextToken twice)")
                current = next_token

        return run

    def bundle(self, slices: Sequence[Slice]) -> Expanding[_Results]:
        def run(stop: threading.Event) -> tuple[_Results, list[Any]]:
            pages = self.send([(sl, None) for sl in slices], stop)
            more: list[Any] = []
            rows: _Results = []
            for sl, (items, token) in zip(slices, pages, strict=True):
                rows.append((sl.group, items))
                if token is not None:
                    more.extend(self.rest(sl, items, token))
            return rows, more

        return run

    def rest(self, sl: Slice, page: _Rows, token: str) -> list[Expanding[_Results]]:
        """After a first page with a nextToken: continue it, or split what is left."""
        keys = [k for k in (sl.keys.key_of(row) for row in page) if isinstance(k, str)]
        last = max(keys) if keys else None
        minute = minute_of_key(last) if last is not None else None
        if last is None or minute is None or not sl.splittable or not sl.start <= minute < sl.end:
            return [self.page_to_end(sl, token)]
        left = sl.end - minute
        covered = minute - sl.start + 1
        estimate = len(page) * left / covered
        parts = math.ceil(estimate / max(1, self.limit))
        if sl.expected is None:
            parts = max(parts, 2)  # nothing known about the range: it may be dense anywhere
        parts = min(parts, self.parallelism, left)
        if parts <= 1:
            return [self.page_to_end(sl, token)]
        cuts = [minute + (left * i) // parts for i in range(parts + 1)]
        subs = [
            replace(
                sl, start=a, end=b, lower=last if i == 0 else None, splittable=False, expected=None
            )
            for i, (a, b) in enumerate(itertools.pairwise(cuts))
        ]
        return [self.page_to_end(sub, None) for sub in subs]


def _bundles(light: Sequence[Slice], limit: int) -> list[list[Slice]]:
    bundles: list[list[Slice]] = []
    rows = 0.0
    for sl in light:
        size = sl.expected or 0.0
        if (
            not bundles
            or len(bundles[-1]) >= MAX_ALIASES
            or rows + size > BUNDLE_ROWS_PER_PAGE * limit
        ):
            bundles.append([])
            rows = 0.0
        bundles[-1].append(sl)
        rows += size
    return bundles


def read_slices(
    client: GraphQLApi,
    account_id: str,
    slices: Sequence[Slice],
    groups: int,
    *,
    limit: int,
    parallelism: int,
    deadline: Deadline | None = None,
) -> list[_Rows]:
    """Every row of every slice, gathered per ``group`` (``groups`` lists, in order).

    Raises:
        ReadError: any request failed after retries, or a response was malformed.
        DeadlineExceeded: the deadline ran out first.
    """
    reader = _Reader(client, account_id, limit, max(1, parallelism), deadline)
    light = [sl for sl in slices if sl.expected is None or sl.expected <= limit]
    heavy = [sl for sl in slices if sl.expected is not None and sl.expected > limit]
    tasks: list[Expanding[_Results]] = [reader.bundle(b) for b in _bundles(light, limit)]
    tasks.extend(reader.page_to_end(sl, None) for sl in heavy)
    out: list[_Rows] = [[] for _ in range(groups)]
    for results in run_expanding(tasks, reader.parallelism):
        for group, rows in results:
            out[group].extend(rows)
    return out
