"""Source-model list reads (docs/design.md §2, §4.3): sort-key ranges, pagination, de-duplication.

Documents are built from the sgqlc-generated ``operations`` module (`_slices`), imported on
first use (cold start). List pages are decoded by orjson into plain dicts and never mapped
through sgqlc objects (docs/design.md §8: that costs more than counting the records).
"""

from __future__ import annotations

__all__ = [
    "SORT_KEY_MARGIN",
    "dedupe_reads",
    "list_source_reads",
    "require_aware",
    "source_slices",
]

import bisect
import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_agg.deadline import Deadline
from metrics_agg.graphql._slices import KeySpace, Slice, read_slices
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import ModelSpec, SourceRead
from metrics_agg.timestamps import epoch_minute, from_epoch_minute, parse_instant_or_none

# docs/design.md §4.3: the index compares sort keys as strings, the counter compares instants.
# "…13:00:00.123Z" < "…13:00:00Z" and "…13:00Z" < "…13:00:00Z" as strings, so a range
# cut exactly at [start, end) could drop or add records at its edges. Each query range is
# widened to whole minutes plus this margin on both sides; the caller keeps only records
# whose parsed instant lies in [start, end). Every string form of one UTC minute shares
# the prefix "YYYY-MM-DDTHH:MM", so a one-minute margin covers all fraction/second/`Z`
# variants. Keys written with a zone offset ("…T03:10:00+02:00", 01:10 UTC) sort by their
# local time: reads widen their ranges by a further `Config.zone_margin_minutes` on both
# sides to reach them (default 0: Amplify clients and AppSync's resolvers write UTC `Z`);
# `zones` detects and reports offsets beyond it. The wider read returns neighbouring
# records too: the counter drops them by instant (`outside_window`), and the unit's merge
# by id places a record read for two ranges once (`reading`).
SORT_KEY_MARGIN = timedelta(minutes=1)


# -- reading -----------------------------------------------------------------------------


def require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected an aware UTC datetime, got naive {value!r}")


def _margin(zone_margin_minutes: int, key_margin_minutes: int | None = None) -> int:
    if zone_margin_minutes < 0:
        raise ValueError(f"zone margin must be >= 0 minutes, got {zone_margin_minutes}")
    if key_margin_minutes is None:
        key_margin_minutes = SORT_KEY_MARGIN // timedelta(minutes=1)
    if key_margin_minutes < 0:
        raise ValueError(f"sort-key margin must be >= 0 minutes, got {key_margin_minutes}")
    return key_margin_minutes + zone_margin_minutes


def _minute_prefix(minute: int) -> str:
    return from_epoch_minute(minute).strftime("%Y-%m-%dT%H:%M")


def _key_order(value: object) -> tuple[datetime, str]:
    # By instant, then string: with zone offsets, string order is not time order.
    return parse_instant_or_none(value) or _NEVER, str(value or "")


_NEVER = datetime.min.replace(tzinfo=UTC)


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
            if _key_order(record.get(sort_key)) >= _key_order(records[seen].get(sort_key)):
                by_id[rid] = i
    if not duplicates:
        return records
    keep = set(by_id.values())
    return [r for i, r in enumerate(records) if r.get("id") is None or i in keep]


def _source_keys(sort_key: str) -> KeySpace:
    # Minute prefixes ("YYYY-MM-DDTHH:MM"): adjacent ranges share only a bound string
    # that no AWSDateTime equals, so they neither overlap nor leave gaps.
    return KeySpace(
        condition=lambda lo, hi: {"between": [lo, hi]},
        lower=_minute_prefix,
        upper=_minute_prefix,
        key_of=lambda row: row.get(sort_key),
    )


def _weighted_cuts(
    lo: int,
    hi: int,
    first_hour: int,
    hour_counts: Sequence[int | None],
    parts: int,
    *,
    edges: bool = False,
) -> list[int]:
    """Minute cuts of [lo, hi) into up to ``parts`` ranges of about equal expected rows
    (rows spread evenly over their hour; unknown hours weigh nothing). With ``edges``
    (a zone margin), minutes before the first hour and after the last are expected at
    the rate of the nearest hour."""
    cumulative: list[float] = []
    total = 0.0
    last = len(hour_counts) - 1
    for minute in range(lo, hi):
        hour = (minute - first_hour) // 60
        if edges and last >= 0:
            hour = min(max(hour, 0), last)
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
    client: GraphQLApi,
    spec: ModelSpec,
    account_id: str,
    reads: Sequence[SourceRead],
    *,
    deadline: Deadline | None = None,
    parallelism: int | None = None,
    page_limit: int | None = None,
    zone_margin_minutes: int | None = None,
    sort_key_margin_minutes: int | None = None,
) -> list[list[dict[str, Any]]]:
    """The records of every read (one list per read, in order), in as few requests as fit.

    Sized by ``hour_counts`` (docs/design.md §7): a read expected to fit in a page is one alias of
    a request shared with the other small reads (a steady-state unit: one request, both
    FeedbackItem queries included); a bigger one is split by time into about one page of
    expected rows per sub-range, at most ``parallelism``, paged in parallel. A read of
    unknown size that turns out big is split after its first page (`_slices`). Ranges
    carry ``SORT_KEY_MARGIN`` plus the zone margin (default: the client's
    ``config.zone_margin_minutes``); its minutes are expected at the rate of the nearest
    hour of the read. ``sort_key_margin_minutes`` replaces ``SORT_KEY_MARGIN``: the
    incremental path (docs/design.md §4.8) reads single minutes with 0, which is exact because the
    bounds are minute prefixes: every AWSDateTime of minute m (AppSync requires the ``T``
    and a zone designator) sorts strictly between the prefixes of m and m + 1.
    Sub-ranges are contiguous and disjoint (minute-prefix bounds), and
    records are de-duplicated by id within each read, so the wider range never counts a
    record twice; ranges of different reads may overlap, and the caller merges by id.

    Raises:
        ValueError: naive datetimes, an empty range, or a bad ``query_index``.
        ReadError: any page failed (after retries); never partial data.
        DeadlineExceeded: the deadline ran out first.
    """
    config = client.config
    budget = max(1, parallelism if parallelism is not None else config.read_parallelism)
    limit = max(1, page_limit if page_limit is not None else config.page_limit)
    zone = zone_margin_minutes if zone_margin_minutes is not None else config.zone_margin_minutes
    slices = source_slices(
        spec, reads, budget=budget, limit=limit, zone=zone, key_margin=sort_key_margin_minutes
    )
    rows = read_slices(
        client, account_id, slices, len(reads), limit=limit, parallelism=budget, deadline=deadline
    )
    return dedupe_reads(spec, reads, rows)


def dedupe_reads(
    spec: ModelSpec, reads: Sequence[SourceRead], rows: Sequence[list[dict[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Each read's rows (``rows[i]`` for ``reads[i]``) de-duplicated by id."""
    return [
        _dedupe_by_id([group], spec.sort_keys[read.query_index])
        for group, read in zip(rows, reads, strict=True)
    ]


def source_slices(
    spec: ModelSpec,
    reads: Sequence[SourceRead],
    *,
    budget: int,
    limit: int,
    zone: int,
    key_margin: int | None,
    first_group: int = 0,
) -> list[Slice]:
    """The slices of ``reads`` (read i in group ``first_group + i``), sized as
    `list_source_reads` says; shared with the multi-unit read of `shared_reads`.

    Raises:
        ValueError: naive datetimes, an empty range, or a bad ``query_index``.
    """
    margin = _margin(zone, key_margin)
    slices: list[Slice] = []
    for group, read in enumerate(reads):
        if not 0 <= read.query_index < len(spec.list_queries):
            raise ValueError(
                f"{spec.name} has {len(spec.list_queries)} list queries, "
                f"not index {read.query_index}"
            )
        require_aware(read.start, read.end)
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
        known = float(sum(c for c in counts if c is not None))
        if zone and counts:  # the zone margin reaches into the neighbouring hours
            known += zone / 60 * ((counts[0] or 0) + (counts[-1] or 0))
        unknown = len(counts) < hours or any(c is None for c in counts)
        parts = max(1, min(budget, math.ceil(known / limit)))
        cuts = (
            _weighted_cuts(lo, hi, first, counts, parts, edges=zone > 0) if parts > 1 else [lo, hi]
        )
        for a, b in itertools.pairwise(cuts):
            expected = None if unknown and parts == 1 else known / (len(cuts) - 1)
            slices.append(Slice(field, keys, a, b, first_group + group, expected))
    return slices
