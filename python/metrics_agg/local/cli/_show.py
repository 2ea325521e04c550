"""`metrics-agg show`: the stored buckets of one recordType as tables with sparklines.

`render_show` is also what the demo prints; `show_json` is the `--json` form.
"""

from __future__ import annotations

__all__ = ["register", "render_show", "show_json"]

import argparse
import json
import sys
import textwrap
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from metrics_agg.aggregator.report import fmt_count
from metrics_agg.local.cli._common import (
    ENV_HELP,
    EXIT_OK,
    add_account_arg,
    add_connection_args,
    add_since_arg,
    ceil_to,
    connect,
    floor_to,
    guard,
    help_formatter,
)
from metrics_agg.local.render import Column, can_encode, format_table, sparkline
from metrics_agg.models import (
    BUCKET_SIZES,
    FEEDBACK_RECORD_TYPES,
    SCOPE_OF,
    SOURCE_MODELS,
    StoredBucket,
)
from metrics_agg.timestamps import epoch_minute, format_bucket_time, from_epoch_minute, utc_now

MAX_ROWS = 48  # a screen or two; the totals and the sparkline cover the whole window

ALL_RECORD_TYPES: tuple[str, ...] = tuple(
    rt for spec in SOURCE_MODELS.values() for rt in spec.record_types
)


def _cmd_show(args: argparse.Namespace) -> int:
    from metrics_agg.graphql.api import list_stored_buckets
    from metrics_agg.graphql.transport import GraphQLClient

    config = connect(args)
    now = utc_now()
    start = floor_to(now - args.since, 60)
    end = ceil_to(now, 60)
    with GraphQLClient(config) as client:
        stored = list_stored_buckets(client, args.account, [args.record_type], start, end)
    if args.minutes:
        stored = [b for b in stored if b.key.minutes == args.minutes]
    waiting = undelivered_records(config.endpoint, config.api_key)
    if waiting:
        print(
            f"metrics-agg show: still catching up: {fmt_count(waiting)} records not yet "
            "delivered to the aggregator, so recent buckets may be short; run it again shortly",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(show_json(args.account, args.record_type, start, end, stored), indent=2))
        return EXIT_OK
    sizes = (args.minutes,) if args.minutes else BUCKET_SIZES
    print(
        render_show(
            args.account,
            args.record_type,
            stored,
            start=start,
            end=end,
            now=now,
            sizes=sizes,
            table_minutes=args.minutes,
            stream=sys.stdout,
        )
    )
    return EXIT_OK


def undelivered_records(endpoint: str, api_key: str | None, timeout: float = 2.0) -> int:
    """Stream records `metrics-agg serve` has not delivered yet (0 for any other API).

    The local server says so at ``/local/status``; AppSync has no such page, and any
    failure to read it means "unknown", never an error of `show`.
    """
    parts = urlsplit(endpoint)
    if not parts.path.rstrip("/").endswith("/graphql") or not api_key:
        return 0
    url = urlunsplit((parts.scheme, parts.netloc, "/local/status", "", ""))
    request = urllib.request.Request(url, headers={"x-api-key": api_key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = json.loads(response.read())
        return sum(int(t.get("pending") or 0) for t in status.get("tables", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def _bucket_json(b: StoredBucket) -> dict[str, Any]:
    return {
        "compositeKey": b.key.composite_key,
        "recordType": b.key.record_type,
        "scorecardId": b.key.scorecard_id,
        "scoreId": b.key.score_id,
        "numberOfMinutes": b.key.minutes,
        "timeRangeStart": format_bucket_time(b.key.start),
        "timeRangeEnd": format_bucket_time(b.key.start + timedelta(minutes=b.key.minutes)),
        "count": b.value.count,
        "complete": b.value.complete,
        "metadata": dict(b.value.metadata) if b.value.metadata is not None else None,
        "errorCount": b.value.error_count,
        "updatedAt": b.updated_at,
    }


def show_json(
    account: str, record_type: str, start: datetime, end: datetime, stored: Sequence[StoredBucket]
) -> dict[str, Any]:
    """The machine-readable form of `show --json` (stable keys, Amplify field names)."""
    ordered = sorted(stored, key=lambda b: (b.key.minutes, b.key.start, _scope(b)))
    return {
        "accountId": account,
        "recordType": record_type,
        "windowStart": format_bucket_time(start),
        "windowEnd": format_bucket_time(end),
        "buckets": [_bucket_json(b) for b in ordered],
    }


def _scope(b: StoredBucket) -> str:
    scope = SCOPE_OF.get(b.key.record_type)
    if scope is not None and scope.by_score:
        return b.key.score_id or ""
    if scope is not None and scope.by_scorecard:
        return b.key.scorecard_id or ""
    return ""


def _trend(
    buckets: Sequence[tuple[datetime, int]], start: datetime, last: datetime, size: int, width: int
) -> tuple[dict[int, int], list[int]]:
    """The count of each bucket start in ``[start, last)`` that has any (scopes summed), and
    at most ``width`` sparkline cells of consecutive buckets summed, as
    `sparkline(series, width=...)` would make them, from the stored buckets alone: a
    ten-year window is millions of empty minutes."""
    first, stop = epoch_minute(start), epoch_minute(last)
    n = max(0, -(-(stop - first) // size))
    group = -(-n // width) if n > width else 1
    cells = [0] * -(-n // group)
    per_step: dict[int, int] = {}
    for at, count in buckets:
        step = (epoch_minute(at) - first) // size
        if 0 <= step < n:
            per_step[step] = per_step.get(step, 0) + count
            cells[step // group] += count
    return per_step, cells


def _pick_table_minutes(start: datetime, now: datetime, sizes: Sequence[int]) -> int:
    """The smallest size whose buckets fit in about a screen (<= 24 rows)."""
    span = max(1, epoch_minute(now) - epoch_minute(start) + 1)
    for size in sorted(sizes):
        if -(-span // size) <= 24:
            return size
    return max(sizes)


def render_show(
    account: str,
    record_type: str,
    stored: Sequence[StoredBucket],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    sizes: Sequence[int] = BUCKET_SIZES,
    table_minutes: int | None = None,
    stream: TextIO | None = None,
    spark_width: int = 48,
    max_rows: int = MAX_ROWS,
) -> str:
    """Per-size totals with a sparkline, then the newest ``max_rows`` buckets of one size
    as a table (a long --since would print one row per hour of it)."""
    out = stream or sys.stdout
    ascii_only = not can_encode(out, "▁█✓—→")
    check, dash, arrow = ("yes", "-", "->") if ascii_only else ("✓", "—", "→")
    last = min(end, now + timedelta(minutes=1))  # buckets that have started
    scope = SCOPE_OF.get(record_type)
    scoped = scope is not None and (scope.by_scorecard or scope.by_score)
    is_feedback = record_type in FEEDBACK_RECORD_TYPES
    by_key = {(b.key.minutes, b.key.start, _scope(b)): b for b in stored}
    # Models with error rules carry errorCount on every bucket; others never do.
    with_errors = any(b.value.error_count is not None for b in stored)
    dot = "-" if ascii_only else "·"
    until = f"{now:%H:%M}" if now.date() == start.date() else f"{now:%Y-%m-%d %H:%M}"
    lines = [
        f"{record_type} {dot} account {account} {dot} {start:%Y-%m-%d %H:%M} {arrow} {until} UTC",
        "",
    ]
    summary = []
    for size in sizes:
        per_step, cells = _trend(
            [(k[1], b.value.count) for k, b in by_key.items() if k[0] == size],
            start,
            last,
            size,
            spark_width,
        )
        n_stored = sum(1 for k in by_key if k[0] == size)
        row = [
            f"{size} min",
            fmt_count(n_stored),
            fmt_count(sum(per_step.values())),
            fmt_count(max(per_step.values(), default=0)),
        ]
        if with_errors:
            errors = sum(
                b.value.error_count or 0
                for k, b in by_key.items()
                if k[0] == size and start <= k[1] < last
            )
            row.append(fmt_count(errors))
        summary.append((*row, sparkline(cells, ascii_only=ascii_only)))
    head = [Column("size", ">"), Column("stored", ">"), Column("total", ">"), Column("peak", ">")]
    if with_errors:
        head.append(Column("errors", ">"))
    head.append(Column(f"trend (oldest {arrow} newest)"))
    lines.append(format_table(head, summary, stream=out))
    size = table_minutes or _pick_table_minutes(start, last, sizes)
    lines += ["", f"{size}-minute buckets"]
    columns = [Column("start (UTC)")]
    if scoped:
        columns.append(Column("score" if scope is not None and scope.by_score else "scorecard"))
    columns += [Column("count", ">")]
    if with_errors:
        columns.append(Column("errors", ">"))
    columns.append(Column("complete", "^"))
    if is_feedback:
        columns += [Column("changed", ">"), Column("unchanged", ">"), Column("invalid", ">")]
    columns.append(Column("updated (UTC)"))
    rows: list[list[str]] = []
    if scoped:
        keys = sorted((k for k in by_key if k[0] == size), key=lambda k: (k[1], k[2]))
    else:
        first_row = max(epoch_minute(start), epoch_minute(last) - max_rows * size)
        first_row -= (first_row - epoch_minute(start)) % size
        keys = [
            (size, from_epoch_minute(m), "") for m in range(first_row, epoch_minute(last), size)
        ]
        hidden = (first_row - epoch_minute(start)) // size
    if scoped:
        hidden = max(0, len(keys) - max_rows)
    keys = keys[len(keys) - min(len(keys), max_rows) :]
    for key in keys:
        b = by_key.get(key)
        row = [f"{key[1]:%Y-%m-%d %H:%M}"]
        if scoped:
            row.append(key[2])
        if b is None:
            row += [dash, ""] + [""] * with_errors
            if is_feedback:
                row += ["", "", ""]
            row.append("not stored")
        else:
            row.append(fmt_count(b.value.count))
            if with_errors:
                held = b.value.error_count
                row.append(dash if held is None else fmt_count(held))
            row.append(check if b.value.complete else "")
            if is_feedback:
                meta = b.value.metadata or {}
                row += [
                    fmt_count(int(meta.get(name, 0)))
                    for name in ("changedCount", "unchangedCount", "invalidCount")
                ]
            row.append(b.updated_at[11:19] if len(b.updated_at) >= 19 else b.updated_at)
        rows.append(row)
    if hidden:
        lines.append(
            f"  the newest {fmt_count(len(rows))} rows; {fmt_count(hidden)} earlier ones are "
            "in the totals above (--since narrows, --json lists every stored bucket)"
        )
    if rows:
        lines.append(format_table(columns, rows, stream=out))
    else:
        lines.append(f"  no {size}-minute buckets stored in this window")
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add `show` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "show",
        help="print the stored buckets of one recordType as tables with sparklines",
        formatter_class=help_formatter,
        description=(
            "Read ACCOUNT's AggregatedMetrics of one recordType for the last --since and print,\n"
            "per bucket size, the total, the peak and a sparkline, then a table of the buckets\n"
            "of one size (--minutes, or the smallest that fits a screen). --json prints the\n"
            "buckets with their Amplify field names instead."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg show --account acme --record-type items\n"
            "  metrics-agg show --account acme --record-type feedbackItemsByScore --since 6h\n"
            "  metrics-agg show --account acme --record-type items --minutes 5 --json | jq\n\n"
            + textwrap.fill(
                "recordTypes: " + ", ".join(ALL_RECORD_TYPES), 88, subsequent_indent="  "
            )
            + "\n\n"
            + ENV_HELP
        ),
    )
    add_account_arg(p)
    p.add_argument(
        "--record-type",
        required=True,
        choices=ALL_RECORD_TYPES,
        metavar="TYPE",
        help="e.g. items, predictionItems, scoreResults, feedbackItemsByScorecard",
    )
    p.add_argument(
        "--minutes", type=int, choices=BUCKET_SIZES, help="only this bucket size (1, 5, 15 or 60)"
    )
    add_since_arg(p, timedelta(hours=2), "2h")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_connection_args(p)
    p.set_defaults(func=guard("show", _cmd_show))
