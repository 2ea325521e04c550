"""Stored AggregatedMetrics buckets (docs/design.md §2): read by ``byAccountRecordType``, decoded.

Rows are plain dicts decoded into ``StoredBucket`` values; a row that cannot be decoded is
skipped with a warning (bad data is logged, not raised).
"""

from __future__ import annotations

__all__ = [
    "STORED_BUCKETS_QUERY",
    "decode_stored_bucket",
    "decode_stored_rows",
    "list_stored_buckets",
    "list_stored_buckets_over",
    "stored_slices",
]

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from metrics_agg.deadline import Deadline
from metrics_agg.graphql._slices import KeySpace, Slice, read_slices
from metrics_agg.graphql.reads import require_aware
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import SCOPE_OF, BucketKey, BucketValue, StoredBucket
from metrics_agg.timestamps import (
    epoch_minute,
    format_bucket_time,
    from_epoch_minute,
    parse_instant_or_none,
)

logger = logging.getLogger("metrics_agg.graphql")

STORED_BUCKETS_QUERY = "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"


def list_stored_buckets(
    client: GraphQLApi,
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
    return list_stored_buckets_over(
        client, account_id, record_types, [(start, end)], deadline=deadline
    )


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
    client: GraphQLApi,
    account_id: str,
    record_types: Sequence[str],
    windows: Sequence[tuple[datetime, datetime]],
    *,
    deadline: Deadline | None = None,
) -> list[StoredBucket]:
    """Every stored AggregatedMetrics of ``record_types`` starting in any of ``windows``.

    Reads the ``byAccountRecordType`` index: one alias per (recordType, window) in one
    request (a steady-state unit: one request for its whole family, docs/design.md §7); long
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
    slices, spans = stored_slices(record_types, windows, limit)
    if not slices:
        return []
    (rows,) = read_slices(
        client,
        account_id,
        slices,
        1,
        limit=limit,
        parallelism=config.read_parallelism,
        deadline=deadline,
    )
    return decode_stored_rows(rows, spans)


Span = tuple[datetime, datetime]


def stored_slices(
    record_types: Sequence[str], windows: Sequence[tuple[datetime, datetime]], limit: int
) -> tuple[list[Slice], list[Span]]:
    """The slices (all in group 0) that read ``record_types`` over ``windows``, and the
    non-empty windows (what `decode_stored_rows` keeps). Shared by the one-unit read
    and the multi-unit read of `shared_reads`.

    Raises:
        ValueError: naive datetimes.
    """
    spans: list[tuple[int, int]] = []
    kept: list[Span] = []
    for start, end in windows:
        require_aware(start, end)
        if end > start:
            last = epoch_minute(end)
            spans.append((epoch_minute(start), last + (0 if from_epoch_minute(last) == end else 1)))
            kept.append((start, end))
    slices: list[Slice] = []
    for record_type in dict.fromkeys(record_types):
        keys = _stored_keys(record_type)
        for lo, hi in spans:
            parts = max(1, min(hi - lo, math.ceil((hi - lo) * _ROWS_PER_MINUTE / limit)))
            cuts = [lo + ((hi - lo) * i) // parts for i in range(parts + 1)]
            for a, b in itertools.pairwise(cuts):
                slices.append(
                    Slice(STORED_BUCKETS_QUERY, keys, a, b, 0, (b - a) * _ROWS_PER_MINUTE)
                )
    return slices, kept


def decode_stored_rows(
    rows: Sequence[Mapping[str, Any]], spans: Sequence[Span]
) -> list[StoredBucket]:
    """Decoded rows starting in one of ``spans``, one per composite key (a split re-reads
    its first key); undecodable rows are skipped with a warning."""
    out: dict[str, StoredBucket] = {}
    skipped = 0
    for row in rows:
        bucket = decode_stored_bucket(row)
        if bucket is None:
            skipped += 1
            if skipped <= 3:
                logger.warning(
                    "skipping undecodable AggregatedMetrics row compositeKey=%r",
                    str(row.get("compositeKey"))[:200],
                )
        elif any(start <= bucket.key.start < end for start, end in spans):
            out[bucket.key.composite_key] = bucket
    if skipped:
        logger.warning("skipped %d undecodable AggregatedMetrics rows", skipped)
    return list(out.values())


_SCOPED = {rt: (s.by_scorecard, s.by_score) for rt, s in SCOPE_OF.items()}


def decode_stored_bucket(row: Mapping[str, Any]) -> StoredBucket | None:
    """An AggregatedMetrics row as a ``StoredBucket``; ``None`` if it cannot be decoded.

    scorecardId/scoreId are kept only for the recordTypes whose key includes them, so a
    stray attribute on an unscoped row cannot make its key differ from a computed one.
    """
    record_type = row.get("recordType")
    account_id = row.get("accountId")
    minutes = _int_or_none(row.get("numberOfMinutes"))
    count = _int_or_none(row.get("count"))
    updated_at = row.get("updatedAt")
    start = parse_instant_or_none(row.get("timeRangeStart"))
    if (
        not isinstance(record_type, str)
        or not isinstance(account_id, str)
        or minutes is None
        or count is None
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
            account_id,
            record_type,
            start,
            minutes,
            scorecard_id if isinstance(scorecard_id, str) else None,
            score_id if isinstance(score_id, str) else None,
        ),
        value=BucketValue(
            count,
            bool(row.get("complete")),
            _decode_metadata(row.get("metadata")),
            _int_or_none(row.get("errorCount")),
        ),
        updated_at=updated_at,
        created_at=created_at if isinstance(created_at, str) else None,
    )


def _int_or_none(value: object) -> int | None:
    """A JSON integer as such; anything else (a bool too: it is an int to Python) is None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
        str(k): int(v)
        for k, v in raw.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and int(v) == v
    }
