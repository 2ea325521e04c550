"""The operations the pipeline needs, on top of ``GraphQLClient`` (DESIGN §2, §4.3, §4.5).

Documents come from the sgqlc-generated ``operations`` module (list queries) or are built
once per batch shape with sgqlc's ``Operation`` API (aliased mutations); nothing here
formats a query string. List pages are decoded by orjson into plain dicts and never mapped
through sgqlc objects (DESIGN §8: that costs more than counting the records).

The sgqlc modules are imported on first use, not at import, to keep the handler's cold
start small.
"""

from __future__ import annotations

__all__ = [
    "SORT_KEY_MARGIN",
    "STORED_BUCKETS_QUERY",
    "WriteResult",
    "bucket_input",
    "decode_stored_bucket",
    "list_source_reads",
    "list_source_records",
    "list_stored_buckets",
    "list_stored_buckets_over",
    "preload_documents",
    "query_document",
    "sort_key_ranges",
    "write_buckets",
]

import bisect
import functools
import itertools
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from metrics_agg.deadline import Deadline
from metrics_agg.errors import GraphQLErrorInfo, ReadError
from metrics_agg.graphql._parallel import Cancelled, run_all
from metrics_agg.graphql._slices import KeySpace, Slice, read_slices
from metrics_agg.graphql.transport import GraphQLClient, is_throttling_error_type
from metrics_agg.models import (
    BucketKey,
    BucketValue,
    BucketWrite,
    ModelSpec,
    SourceRead,
    StoredBucket,
)
from metrics_agg.timestamps import (
    epoch_minute,
    format_bucket_time,
    format_write_time,
    from_epoch_minute,
    parse_instant_or_none,
)

logger = logging.getLogger("metrics_agg.graphql")

STORED_BUCKETS_QUERY = "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"

# DESIGN §4.3: the index compares sort keys as strings, the counter compares instants.
# "…13:00:00.123Z" < "…13:00:00Z" and "…13:00Z" < "…13:00:00Z" as strings, so a range
# cut exactly at [start, end) could drop or add records at its edges. Each query range is
# widened to whole minutes plus this margin on both sides; the caller keeps only records
# whose parsed instant lies in [start, end). Every string form of one UTC minute shares
# the prefix "YYYY-MM-DDTHH:MM", so a one-minute margin covers all fraction/second/`Z`
# variants. Keys written with a non-UTC offset sort by local time and are not chased
# (Amplify clients and AppSync's resolvers write UTC `Z`).
SORT_KEY_MARGIN = timedelta(minutes=1)


# -- documents (generated, loaded lazily) ------------------------------------------------


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.cache
def _query_documents() -> dict[str, str]:
    """GraphQL field name -> its operation document, from the generated operations."""
    from metrics_agg.graphql.operations import Operations

    return {
        _camel(name): str(op)
        for name, op in vars(Operations.query).items()
        if not name.startswith("_")
    }


def query_document(field: str) -> str:
    """The generated document whose root field is ``field``.

    Raises:
        KeyError: no generated operation for that field (regenerate the sgqlc code).
    """
    try:
        return _query_documents()[field]
    except KeyError:
        raise KeyError(
            f"no generated operation for {field!r}: add it to graphql/documents/ and run "
            "`python -m metrics_agg.graphql.codegen`"
        ) from None


def preload_documents() -> None:
    """Build the query documents and the common write shapes now (e.g. at handler import,
    so the first invocation does not pay for importing the sgqlc modules)."""
    _query_documents()
    _write_document(1, 0)
    _write_document(0, 1)


# -- reading -----------------------------------------------------------------------------


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected an aware UTC datetime, got naive {value!r}")


def _minute_prefix(minute: int) -> str:
    return from_epoch_minute(minute).strftime("%Y-%m-%dT%H:%M")


def sort_key_ranges(start: datetime, end: datetime, parts: int) -> list[tuple[str, str]]:
    """Inclusive ``between`` bounds covering [start, end) plus the margin, in ``parts``.

    Bounds are minute prefixes ("YYYY-MM-DDTHH:MM"). Consecutive ranges share only their
    boundary string, which no AWSDateTime can equal (AppSync requires a zone designator),
    so the ranges are contiguous (no gaps) and disjoint on every storable key; records
    are also de-duplicated by id afterwards.
    """
    _require_aware(start, end)
    if end <= start:
        raise ValueError(f"empty range: start {start!r} is not before end {end!r}")
    margin = SORT_KEY_MARGIN // timedelta(minutes=1)
    lo = epoch_minute(start) - margin
    end_minute = epoch_minute(end)
    hi = (end_minute if from_epoch_minute(end_minute) == end else end_minute + 1) + margin
    span = hi - lo
    parts = max(1, min(parts, span))
    cuts = [lo + (span * i) // parts for i in range(parts + 1)]
    return [(_minute_prefix(a), _minute_prefix(b)) for a, b in itertools.pairwise(cuts)]


def _connection(data: Mapping[str, Any] | None, field: str) -> tuple[list[Any], str | None]:
    conn = (data or {}).get(field)
    if not isinstance(conn, dict) or not isinstance(conn.get("items"), list):
        raise ReadError(f"malformed {field} response: no connection with an items list")
    token = conn.get("nextToken")
    if token is not None and not isinstance(token, str):
        raise ReadError(f"malformed {field} response: nextToken is not a string")
    return conn["items"], token


def _page_all(
    client: GraphQLClient,
    field: str,
    variables: Mapping[str, Any],
    deadline: Deadline | None,
    stop: threading.Event,
) -> list[dict[str, Any]]:
    """Every item of one query: pages until ``nextToken`` is null (empty pages included)."""
    document = query_document(field)
    out: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        if stop.is_set():
            raise Cancelled
        response = client.execute(
            document, {**variables, "nextToken": token}, kind="read", deadline=deadline
        )
        items, next_token = _connection(response.data, field)
        out.extend(item for item in items if isinstance(item, dict))
        if next_token is None:
            return out
        if next_token == token:
            raise ReadError(f"{field} pagination did not advance (same nextToken twice)")
        token = next_token


def list_source_records(
    client: GraphQLClient,
    spec: ModelSpec,
    query_index: int,
    account_id: str,
    start: datetime,
    end: datetime,
    *,
    deadline: Deadline | None = None,
    parallelism: int | None = None,
    page_limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records of ``spec.list_queries[query_index]`` whose sort key lies around [start, end).

    The range carries ``SORT_KEY_MARGIN``; the caller filters by parsed instant. The
    range is split into ``parallelism`` contiguous sub-ranges, each paged to the end,
    concurrently. Records are plain dicts, de-duplicated by ``id`` (a record moved by
    an update while the read runs keeps its newest sort key).

    Raises:
        ValueError: naive datetimes, an empty range, or a bad ``query_index``.
        ReadError: any page failed (after retries); never partial data.
        DeadlineExceeded: the deadline ran out first.
    """
    if not 0 <= query_index < len(spec.list_queries):
        raise ValueError(f"{spec.name} has {len(spec.list_queries)} list queries, "
                         f"not index {query_index}")
    field = spec.list_queries[query_index]
    sort_key = spec.sort_keys[query_index]
    config = client.config
    parts = parallelism if parallelism is not None else config.read_parallelism
    limit = page_limit if page_limit is not None else config.page_limit
    ranges = sort_key_ranges(start, end, parts)

    def task(lo: str, hi: str) -> Callable[[threading.Event], list[dict[str, Any]]]:
        variables = {"accountId": account_id, sort_key: {"between": [lo, hi]}, "limit": limit}
        return lambda stop: _page_all(client, field, variables, deadline, stop)

    pages = run_all([task(lo, hi) for lo, hi in ranges], parts)
    return _dedupe_by_id(pages, sort_key)


def _dedupe_by_id(groups: list[list[dict[str, Any]]], sort_key: str) -> list[dict[str, Any]]:
    records = [r for group in groups for r in group]
    by_id: dict[object, int] = {}
    duplicates = False
    for i, record in enumerate(records):
        rid = record.get("id")
        if rid is None:
            continue
        seen = by_id.setdefault(rid, i)
        if seen != i:
            duplicates = True
            if str(record.get(sort_key) or "") >= str(records[seen].get(sort_key) or ""):
                by_id[rid] = i
    if not duplicates:
        return records
    keep = set(by_id.values())
    return [r for i, r in enumerate(records) if r.get("id") is None or i in keep]


def _source_keys(sort_key: str) -> KeySpace:
    # Minute prefixes, as in `sort_key_ranges`: adjacent ranges share only a bound string
    # that no AWSDateTime equals, so they neither overlap nor leave gaps.
    return KeySpace(
        condition=lambda lo, hi: {"between": [lo, hi]},
        lower=_minute_prefix,
        upper=_minute_prefix,
        key_of=lambda row: row.get(sort_key),
    )


def _weighted_cuts(lo: int, hi: int, first_hour: int, hour_counts: Sequence[int | None],
                   parts: int) -> list[int]:
    """Minute cuts of [lo, hi) into up to ``parts`` ranges of about equal expected rows
    (rows spread evenly over their hour; unknown hours weigh nothing)."""
    cumulative: list[float] = []
    total = 0.0
    for minute in range(lo, hi):
        hour = (minute - first_hour) // 60
        count = hour_counts[hour] if 0 <= hour < len(hour_counts) else None
        total += (count or 0) / 60.0
        cumulative.append(total)
    cuts = [lo]
    for k in range(1, parts):
        cut = lo + bisect.bisect_left(cumulative, total * k / parts) + 1
        if cuts[-1] < cut < hi:
            cuts.append(cut)
    return [*cuts, hi]


def list_source_reads(
    client: GraphQLClient,
    spec: ModelSpec,
    account_id: str,
    reads: Sequence[SourceRead],
    *,
    deadline: Deadline | None = None,
    parallelism: int | None = None,
    page_limit: int | None = None,
) -> list[list[dict[str, Any]]]:
    """The records of every read (one list per read, in order), in as few requests as fit.

    Sized by ``hour_counts`` (DESIGN §7): a read expected to fit in a page is one alias of
    a request shared with the other small reads (a steady-state unit: one request, both
    FeedbackItem queries included); a bigger one is split by time into about one page of
    expected rows per sub-range, at most ``parallelism``, paged in parallel. A read of
    unknown size that turns out big is split after its first page (`_slices`). Ranges
    carry ``SORT_KEY_MARGIN``; records are de-duplicated by id within each read.

    Raises:
        ValueError: naive datetimes, an empty range, or a bad ``query_index``.
        ReadError: any page failed (after retries); never partial data.
        DeadlineExceeded: the deadline ran out first.
    """
    config = client.config
    budget = max(1, parallelism if parallelism is not None else config.read_parallelism)
    limit = max(1, page_limit if page_limit is not None else config.page_limit)
    margin = SORT_KEY_MARGIN // timedelta(minutes=1)
    slices: list[Slice] = []
    for group, read in enumerate(reads):
        if not 0 <= read.query_index < len(spec.list_queries):
            raise ValueError(f"{spec.name} has {len(spec.list_queries)} list queries, "
                             f"not index {read.query_index}")
        _require_aware(read.start, read.end)
        if read.end <= read.start:
            raise ValueError(f"empty range: start {read.start!r} is not before {read.end!r}")
        field = spec.list_queries[read.query_index]
        keys = _source_keys(spec.sort_keys[read.query_index])
        first = epoch_minute(read.start)
        end_minute = epoch_minute(read.end)
        lo = first - margin
        hi = (end_minute if from_epoch_minute(end_minute) == read.end else end_minute + 1) + margin
        hours = -(-(end_minute - first) // 60)
        counts = read.hour_counts
        known = sum(c for c in counts if c is not None)
        unknown = len(counts) < hours or any(c is None for c in counts)
        parts = max(1, min(budget, math.ceil(known / limit)))
        cuts = _weighted_cuts(lo, hi, first, counts, parts) if parts > 1 else [lo, hi]
        for a, b in itertools.pairwise(cuts):
            expected = None if unknown and parts == 1 else known / (len(cuts) - 1)
            slices.append(Slice(field, keys, a, b, group, expected))
    rows = read_slices(client, account_id, slices, len(reads), limit=limit,
                       parallelism=budget, deadline=deadline)
    return [_dedupe_by_id([group], spec.sort_keys[read.query_index])
            for group, read in zip(rows, reads, strict=True)]


def list_stored_buckets(
    client: GraphQLClient,
    account_id: str,
    record_types: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    deadline: Deadline | None = None,
) -> list[StoredBucket]:
    """Every stored AggregatedMetrics of ``record_types`` with start <= timeRangeStart < end.

    Raises:
        ValueError: naive datetimes.
        ReadError: any page failed (after retries).
        DeadlineExceeded: the deadline ran out first.
    """
    return list_stored_buckets_over(client, account_id, record_types, [(start, end)],
                                    deadline=deadline)


# Rows per minute of window of one unscoped recordType: one bucket per size (1, 5, 15, 60).
_ROWS_PER_MINUTE = 1 + 1 / 5 + 1 / 15 + 1 / 60


def _stored_keys(record_type: str) -> KeySpace:
    # timeRangeStart is fixed-width "YYYY-MM-DDTHH:MM:SSZ", so [a, b) is exactly
    # between [a, b - 1s] and adjacent ranges neither overlap nor leave gaps.
    def bound(ts: str) -> dict[str, str]:
        return {"recordType": record_type, "timeRangeStart": ts}
    return KeySpace(
        condition=lambda lo, hi: {"between": [bound(lo), bound(hi)]},
        lower=lambda m: format_bucket_time(from_epoch_minute(m)),
        upper=lambda m: format_bucket_time(from_epoch_minute(m) - timedelta(seconds=1)),
        key_of=lambda row: row.get("timeRangeStart"),
    )


def list_stored_buckets_over(
    client: GraphQLClient,
    account_id: str,
    record_types: Sequence[str],
    windows: Sequence[tuple[datetime, datetime]],
    *,
    deadline: Deadline | None = None,
) -> list[StoredBucket]:
    """Every stored AggregatedMetrics of ``record_types`` starting in any of ``windows``.

    Reads the ``byAccountRecordType`` index: one alias per (recordType, window) in one
    request (a steady-state unit: one request for its whole family, DESIGN §7); long
    windows are cut into about a page of buckets per alias, and an alias that has more
    pages continues on its own (`_slices`). Rows that cannot be decoded are skipped with
    a warning (bad data is logged, not raised).

    Raises:
        ValueError: naive datetimes.
        ReadError: any page failed (after retries).
        DeadlineExceeded: the deadline ran out first.
    """
    config = client.config
    limit = max(1, config.page_limit)
    spans: list[tuple[datetime, datetime, int, int]] = []
    for start, end in windows:
        _require_aware(start, end)
        if end > start:
            last = epoch_minute(end)
            spans.append((start, end, epoch_minute(start),
                          last + (0 if from_epoch_minute(last) == end else 1)))
    slices: list[Slice] = []
    for record_type in dict.fromkeys(record_types):
        keys = _stored_keys(record_type)
        for _, _, lo, hi in spans:
            parts = max(1, min(hi - lo, math.ceil((hi - lo) * _ROWS_PER_MINUTE / limit)))
            cuts = [lo + ((hi - lo) * i) // parts for i in range(parts + 1)]
            for a, b in itertools.pairwise(cuts):
                slices.append(Slice(STORED_BUCKETS_QUERY, keys, a, b, 0,
                                    (b - a) * _ROWS_PER_MINUTE))
    if not slices:
        return []
    (rows,) = read_slices(client, account_id, slices, 1, limit=limit,
                          parallelism=config.read_parallelism, deadline=deadline)
    out: dict[str, StoredBucket] = {}  # by composite key: a split re-reads its first key
    skipped = 0
    for row in rows:
        bucket = decode_stored_bucket(row)
        if bucket is None:
            skipped += 1
            if skipped <= 3:
                logger.warning("skipping undecodable AggregatedMetrics row compositeKey=%r",
                               str(row.get("compositeKey"))[:200])
        elif any(start <= bucket.key.start < end for start, end, _, _ in spans):
            out[bucket.key.composite_key] = bucket
    if skipped:
        logger.warning("skipped %d undecodable AggregatedMetrics rows", skipped)
    return list(out.values())


_SCOPED = {"feedbackItemsByScorecard": (True, False), "feedbackItemsByScore": (True, True)}


def decode_stored_bucket(row: Mapping[str, Any]) -> StoredBucket | None:
    """An AggregatedMetrics row as a ``StoredBucket``; ``None`` if it cannot be decoded.

    scorecardId/scoreId are kept only for the recordTypes whose key includes them, so a
    stray attribute on an unscoped row cannot make its key differ from a computed one.
    """
    record_type = row.get("recordType")
    account_id = row.get("accountId")
    minutes = row.get("numberOfMinutes")
    count = row.get("count")
    updated_at = row.get("updatedAt")
    start = parse_instant_or_none(row.get("timeRangeStart"))
    if (
        not isinstance(record_type, str)
        or not isinstance(account_id, str)
        or not isinstance(minutes, int) or isinstance(minutes, bool)
        or not isinstance(count, int) or isinstance(count, bool)
        or not isinstance(updated_at, str)
        or start is None
    ):
        return None
    with_card, with_score = _SCOPED.get(record_type, (False, False))
    scorecard_id = row.get("scorecardId") if with_card else None
    score_id = row.get("scoreId") if with_score else None
    created_at = row.get("createdAt")
    return StoredBucket(
        key=BucketKey(
            account_id, record_type, start, minutes,
            scorecard_id if isinstance(scorecard_id, str) else None,
            score_id if isinstance(score_id, str) else None,
        ),
        value=BucketValue(count, bool(row.get("complete")), _decode_metadata(row.get("metadata"))),
        updated_at=updated_at,
        created_at=created_at if isinstance(created_at, str) else None,
    )


def _decode_metadata(raw: object) -> dict[str, int] | None:
    """AWSJSON arrives as a JSON string (AppSync); tolerate an object, null or garbage."""
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(raw, dict):
        return None
    return {
        str(k): int(v) for k, v in raw.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and int(v) == v
    }


# -- writing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one write of a batched request, in the order of the writes."""

    write: BucketWrite
    ok: bool
    conflict: bool  # DynamoDB:ConditionalCheckFailedException for this alias
    error: GraphQLErrorInfo | None = None


_ALIAS = re.compile(r"^[cu][0-9]+$")


@functools.lru_cache(maxsize=256)
def _write_document(creates: int, updates: int) -> str:
    """Aliased create/update mutations with one variable per input (cached per shape).

    Aliases ``c<i>`` (create, input ``$c<i>``) and ``u<j>`` (update, input ``$u<j>``,
    condition ``$w<j>``). Every AggregatedMetrics field is selected: AppSync delivers to
    subscribers only the fields a mutation selects, and dashboards subscribe.
    """
    from sgqlc.operation import Operation
    from sgqlc.types import Arg, Variable, non_null

    from metrics_agg.graphql import schema as s

    variables: dict[str, Any] = {}
    for i in range(creates):
        variables[f"c{i}"] = Arg(non_null(s.CreateAggregatedMetricsInput))
    for j in range(updates):
        variables[f"u{j}"] = Arg(non_null(s.UpdateAggregatedMetricsInput))
        variables[f"w{j}"] = Arg(s.ModelAggregatedMetricsConditionInput)
    op = Operation(s.schema.mutation_type, name=f"WriteAggregatedMetrics_{creates}c_{updates}u",
                   variables=variables)
    for i in range(creates):
        op.create_aggregated_metrics(input=Variable(f"c{i}"), __alias__=f"c{i}").__fields__()
    for j in range(updates):
        op.update_aggregated_metrics(
            input=Variable(f"u{j}"), condition=Variable(f"w{j}"), __alias__=f"u{j}"
        ).__fields__()
    return str(op)


def bucket_input(write: BucketWrite) -> dict[str, Any]:
    """The mutation input of one write (DESIGN §2 field contract, §4.5 fixed widths).

    Creates carry every field (the optional counters as null). Updates resend every field
    of the composite sort keys (recordType, timeRangeStart, scorecardId, scoreId) but leave
    the counters other writers may own untouched, and keep the stored createdAt unless
    the write names one.
    """
    key, value = write.key, write.value
    fields: dict[str, Any] = {
        "accountId": key.account_id,
        "compositeKey": key.composite_key,
        "recordType": key.record_type,
        "scorecardId": key.scorecard_id,
        "scoreId": key.score_id,
        "timeRangeStart": format_bucket_time(key.start),
        "timeRangeEnd": format_bucket_time(key.start + timedelta(minutes=key.minutes)),
        "numberOfMinutes": key.minutes,
        "count": value.count,
        "complete": value.complete,
        "metadata": (
            orjson.dumps(dict(value.metadata)).decode() if value.metadata is not None else None
        ),
        "updatedAt": format_write_time(write.snapshot_time),
    }
    if write.create:
        fields["createdAt"] = format_write_time(write.created_at or write.snapshot_time)
        fields.update(cost=None, decisionCount=None, externalAiApiCount=None,
                      cachedAiApiCount=None, errorCount=None)
    elif write.created_at is not None:
        fields["createdAt"] = format_write_time(write.created_at)
    return fields


def _write_chunk(
    client: GraphQLClient, chunk: Sequence[BucketWrite], deadline: Deadline | None
) -> list[WriteResult]:
    """One request per attempt; aliases throttled by DynamoDB are re-sent on their own
    (they did not execute), the others keep their first result."""
    results: list[WriteResult | None] = [None] * len(chunk)
    pending = list(range(len(chunk)))
    attempt = 1
    while True:
        sent = _send_writes(client, [chunk[i] for i in pending], deadline)
        for i, result in zip(pending, sent, strict=True):
            results[i] = result
        pending = [i for i, r in zip(pending, sent, strict=True)
                   if r.error is not None and is_throttling_error_type(r.error.error_type)]
        if not pending or not client.pause_before_retry(attempt, deadline):
            break
        logger.warning("re-sending %d throttled AggregatedMetrics writes", len(pending))
        attempt += 1
    return [r for r in results if r is not None]


def _send_writes(
    client: GraphQLClient, chunk: Sequence[BucketWrite], deadline: Deadline | None
) -> list[WriteResult]:
    creates = [i for i, w in enumerate(chunk) if w.create]
    updates = [i for i, w in enumerate(chunk) if not w.create]
    alias_of: dict[int, str] = {}
    variables: dict[str, Any] = {}
    for n, i in enumerate(creates):
        alias_of[i] = f"c{n}"
        variables[f"c{n}"] = bucket_input(chunk[i])
    for n, i in enumerate(updates):
        alias_of[i] = f"u{n}"
        write = chunk[i]
        variables[f"u{n}"] = bucket_input(write)
        # DESIGN §4.5: an older snapshot never overwrites a newer one.
        variables[f"w{n}"] = {"updatedAt": {"le": format_write_time(write.snapshot_time)}}
    response = client.execute(
        _write_document(len(creates), len(updates)), variables, kind="write", deadline=deadline
    )
    errors: dict[str, GraphQLErrorInfo] = {}
    for err in response.errors:
        alias = err.path[0] if err.path else None
        if isinstance(alias, str) and _ALIAS.match(alias):
            errors.setdefault(alias, err)
    data = response.data or {}
    results = []
    for i, write in enumerate(chunk):
        alias = alias_of[i]
        error = errors.get(alias)
        if error is None and data.get(alias) is None:
            error = GraphQLErrorInfo("no result and no error for this mutation", None, (alias,))
        results.append(WriteResult(
            write,
            ok=error is None,
            conflict=error is not None and error.is_conditional_check_failed,
            error=error,
        ))
    return results


def write_buckets(
    client: GraphQLClient,
    writes: Sequence[BucketWrite],
    *,
    deadline: Deadline | None = None,
    per_request: int | None = None,
    parallelism: int | None = None,
) -> list[WriteResult]:
    """Send the writes as aliased mutations, ``per_request`` per HTTP request, in parallel.

    Results follow the order of ``writes``. A failed alias (conflict or other error) is a
    result; only a request that failed as a whole raises.

    Raises:
        WriteError: a whole request failed after retries (pending requests are cancelled).
        DeadlineExceeded: the deadline ran out first.
    """
    if not writes:
        return []
    config = client.config
    size = max(1, per_request if per_request is not None else config.mutations_per_request)
    workers = parallelism if parallelism is not None else config.write_parallelism
    chunks = [writes[i:i + size] for i in range(0, len(writes), size)]

    def task(chunk: Sequence[BucketWrite]) -> Callable[[threading.Event], list[WriteResult]]:
        def run(stop: threading.Event) -> list[WriteResult]:
            if stop.is_set():
                raise Cancelled
            return _write_chunk(client, chunk, deadline)
        return run

    return [r for group in run_all([task(c) for c in chunks], workers) for r in group]
