"""Aliased AggregatedMetrics writes (docs/design.md §4.5): many conditional mutations per request.

Documents are built once per batch shape with sgqlc's ``Operation`` API (imported on first
use, for the cold start); nothing here formats a query string.
"""

from __future__ import annotations

__all__ = ["WriteResult", "bucket_input", "stored_is_newer", "update_condition", "write_buckets"]

import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from metrics_agg.deadline import Deadline
from metrics_agg.errors import GraphQLErrorInfo, TransportError
from metrics_agg.graphql._parallel import Cancelled, run_all
from metrics_agg.graphql.transport import GraphQLApi, is_throttling_error_type
from metrics_agg.models import BucketWrite
from metrics_agg.timestamps import format_bucket_time, format_write_time, parse_instant_or_none

logger = logging.getLogger("metrics_agg.graphql")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one write of a batched request, in the order of the writes."""

    write: BucketWrite
    ok: bool
    conflict: bool  # DynamoDB:ConditionalCheckFailedException for this alias
    error: GraphQLErrorInfo | None = None
    # ``isolate``: the request holding this write failed as a whole (nothing of it landed).
    request_error: TransportError | None = None


_ALIAS = re.compile(r"^[cu][0-9]+$")


def _padded(n: int) -> int:
    """``n`` rounded up to a power of two (0 stays 0): the alias count a document declares."""
    return 1 << (n - 1).bit_length() if n else 0


@functools.lru_cache(maxsize=256)
def _write_document(creates: int, updates: int) -> str:
    """Aliased create/update mutations with one variable per input (cached per shape).

    Aliases ``c<i>`` (create, input ``$c<i>``) and ``u<j>`` (update, input ``$u<j>``,
    condition ``$w<j>``), each with ``@skip(if: $s<alias>)``: a request pads both counts to
    a power of two with skipped aliases (`_send_writes`), so that its documents come in a
    few dozen shapes, which the server parses and validates once each, instead of one
    shape per (creates, updates) pair (on the local server, parsing new shapes cost about
    twice what executing the writes did, docs/reliability.md). Every AggregatedMetrics
    field is selected: AppSync delivers to subscribers only the fields a mutation selects,
    and dashboards subscribe.
    """
    from sgqlc.operation import Operation
    from sgqlc.types import Arg, Variable, non_null

    from metrics_agg.graphql import schema as s

    variables: dict[str, Any] = {}
    for i in range(creates):
        variables[f"c{i}"] = Arg(non_null(s.CreateAggregatedMetricsInput))
        variables[f"sc{i}"] = Arg(non_null(s.Boolean))
    for j in range(updates):
        variables[f"u{j}"] = Arg(non_null(s.UpdateAggregatedMetricsInput))
        variables[f"w{j}"] = Arg(s.ModelAggregatedMetricsConditionInput)
        variables[f"su{j}"] = Arg(non_null(s.Boolean))
    op = Operation(
        s.schema.mutation_type,
        name=f"WriteAggregatedMetrics_{creates}c_{updates}u",
        variables=variables,
    )
    for i in range(creates):
        op.create_aggregated_metrics(input=Variable(f"c{i}"), __alias__=f"c{i}").__fields__()
    for j in range(updates):
        op.update_aggregated_metrics(
            input=Variable(f"u{j}"), condition=Variable(f"w{j}"), __alias__=f"u{j}"
        ).__fields__()
    # sgqlc has no directives on fields: add each alias's @skip to the text it built.
    return _SKIPPED.sub(lambda m: f"{m.group(0)} @skip(if: $s{m.group(1)})", str(op))


# The end of an alias's arguments: `  c3: createAggregatedMetrics(input: $c3)`.
_SKIPPED = re.compile(r"(?m)^  ([cu][0-9]+): \w+\([^)]*\)")


def bucket_input(write: BucketWrite) -> dict[str, Any]:
    """The mutation input of one write (docs/design.md §2 field contract, §4.5 fixed widths).

    Fields this system never sets (cost, decisionCount, externalAiApiCount,
    cachedAiApiCount; errorCount for a model without error rules; metadata and the scope
    ids when the bucket has none) are left out, not sent as null: a create stores a null as
    a NULL attribute (larger rows, and the dashboard reads one 1 MB page), and an update
    would remove what another writer set. Updates resend every field of the composite sort
    keys (recordType, timeRangeStart, and scorecardId/scoreId where set) and keep the stored
    createdAt unless the write names one.
    """
    key, value = write.key, write.value
    fields: dict[str, Any] = {
        "accountId": key.account_id,
        "compositeKey": key.composite_key,
        "recordType": key.record_type,
        "timeRangeStart": format_bucket_time(key.start),
        "timeRangeEnd": format_bucket_time(key.start + timedelta(minutes=key.minutes)),
        "numberOfMinutes": key.minutes,
        "count": value.count,
        "complete": value.complete,
        "updatedAt": format_write_time(write.snapshot_time),
    }
    if key.scorecard_id is not None:
        fields["scorecardId"] = key.scorecard_id
    if key.score_id is not None:
        fields["scoreId"] = key.score_id
    if value.metadata is not None:
        fields["metadata"] = orjson.dumps(dict(value.metadata)).decode()
    if value.error_count is not None:
        fields["errorCount"] = value.error_count
    if write.create:
        fields["createdAt"] = format_write_time(write.created_at or write.snapshot_time)
    elif write.created_at is not None:
        fields["createdAt"] = format_write_time(write.created_at)
    return fields


def update_condition(write: BucketWrite) -> dict[str, Any]:
    """The condition of an update (docs/design.md §4.5): no older snapshot overwrites a newer.

    Normally the stored ``updatedAt`` must be ``le`` this snapshot's. DynamoDB compares the
    strings, and writers differ in fraction width (AppSync 3 digits, the original Lambda 6
    or none, this system 6): ``"…:05Z"`` sorts after ``"…:05.123456Z"`` although it is the
    older instant. A write retried after such a false conflict carries the stored string it
    found older (`stored_is_newer`) and becomes a compare-and-swap on exactly that string:
    it lands only if nobody wrote the bucket since it was read.
    """
    if write.expected_updated_at is not None:
        return {"updatedAt": {"eq": write.expected_updated_at}}
    return {"updatedAt": {"le": format_write_time(write.snapshot_time)}}


def stored_is_newer(stored_updated_at: str, snapshot_time: datetime) -> bool:
    """True when a stored ``updatedAt`` is a later instant than ``snapshot_time``.

    Compared as instants, whatever the stored fraction width; a stored value outside the
    accepted grammar falls back to DynamoDB's string order against this system's form.
    """
    stored = parse_instant_or_none(stored_updated_at)
    if stored is None:
        return stored_updated_at > format_write_time(snapshot_time)
    return stored > snapshot_time


def _write_chunk(
    client: GraphQLApi, chunk: Sequence[BucketWrite], deadline: Deadline | None, isolate: bool
) -> list[WriteResult]:
    """One request per attempt; aliases throttled by DynamoDB are re-sent on their own
    (they did not execute), the others keep their first result.

    With ``isolate``, a request that fails as a whole gives its error only to the writes it
    carried: after a re-send, the writes that landed in an earlier attempt keep that result.
    """
    results: list[WriteResult | None] = [None] * len(chunk)
    pending = list(range(len(chunk)))
    attempt = 1
    while True:
        try:
            sent = _send_writes(client, [chunk[i] for i in pending], deadline)
        except TransportError as exc:
            if not isolate:
                raise
            info = GraphQLErrorInfo(str(exc)[:300], type(exc).__name__)
            for i in pending:
                results[i] = WriteResult(chunk[i], False, False, info, exc)
            break
        for i, result in zip(pending, sent, strict=True):
            results[i] = result
        pending = [
            i
            for i, r in zip(pending, sent, strict=True)
            if r.error is not None and is_throttling_error_type(r.error.error_type)
        ]
        if not pending or not client.pause_before_retry(attempt, deadline):
            break
        logger.warning("re-sending %d throttled AggregatedMetrics writes", len(pending))
        attempt += 1
    return [r for r in results if r is not None]


def _send_writes(
    client: GraphQLApi, chunk: Sequence[BucketWrite], deadline: Deadline | None
) -> list[WriteResult]:
    creates = [i for i, w in enumerate(chunk) if w.create]
    updates = [i for i, w in enumerate(chunk) if not w.create]
    alias_of: dict[int, str] = {}
    variables: dict[str, Any] = {}
    for n, i in enumerate(creates):
        alias_of[i] = f"c{n}"
        variables[f"c{n}"] = bucket_input(chunk[i])
        variables[f"sc{n}"] = False
    for n, i in enumerate(updates):
        alias_of[i] = f"u{n}"
        write = chunk[i]
        variables[f"u{n}"] = bucket_input(write)
        variables[f"w{n}"] = update_condition(write)
        variables[f"su{n}"] = False
    # Padding (`_write_document`): skipped, never executed; its input only has to be valid.
    for n in range(len(creates), _padded(len(creates))):
        variables[f"c{n}"], variables[f"sc{n}"] = variables["c0"], True
    for n in range(len(updates), _padded(len(updates))):
        variables[f"u{n}"], variables[f"w{n}"] = variables["u0"], None
        variables[f"su{n}"] = True
    document = _write_document(_padded(len(creates)), _padded(len(updates)))
    response = client.execute(document, variables, kind="write", deadline=deadline)
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
        results.append(
            WriteResult(
                write,
                ok=error is None,
                conflict=error is not None and error.is_conditional_check_failed,
                error=error,
            )
        )
    return results


def write_buckets(
    client: GraphQLApi,
    writes: Sequence[BucketWrite],
    *,
    deadline: Deadline | None = None,
    per_request: int | None = None,
    parallelism: int | None = None,
    isolate: bool = False,
) -> list[WriteResult]:
    """Send the writes as aliased mutations, ``per_request`` per HTTP request, in parallel.

    Results follow the order of ``writes``. A failed alias (conflict or other error) is a
    result; only a request that failed as a whole raises. With ``isolate`` (writes of
    several units in one call) it does not: each write of that request is a result with
    its ``request_error``, and the other requests run on.

    Raises:
        WriteError: a whole request failed after retries (pending requests are cancelled).
        DeadlineExceeded: the deadline ran out first.
    """
    if not writes:
        return []
    config = client.config
    size = max(1, per_request if per_request is not None else config.mutations_per_request)
    workers = parallelism if parallelism is not None else config.write_parallelism
    chunks = [writes[i : i + size] for i in range(0, len(writes), size)]

    def task(chunk: Sequence[BucketWrite]) -> Callable[[threading.Event], list[WriteResult]]:
        def run(stop: threading.Event) -> list[WriteResult]:
            if stop.is_set():
                raise Cancelled
            return _write_chunk(client, chunk, deadline, isolate)

        return run

    return [r for group in run_all([task(c) for c in chunks], workers) for r in group]
