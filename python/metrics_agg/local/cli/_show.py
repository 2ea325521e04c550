"""`metrics-agg show`: the stored buckets of one recordType as tables with sparklines.

`render_show` is also what the demo prints; `show_json` is the `--json` form.
"""

from __future__ import annotations

__all__ = ["register", "render_show", "show_json"]

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

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
) -> str:
    """Per-size totals with a sparkline, then the buckets of one size as a table."""
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
    lines = [
        f"{record_type} · account {account} · {start:%Y-%m-%d %H:%M} {arrow} {now:%H:%M} UTC"
        if not ascii_only
        else f"{record_type} - account {account} - {start:%Y-%m-%d %H:%M} -> {now:%H:%M} UTC",
        "",
    ]
    summary = []
    for size in sizes:
        first, stop = epoch_minute(start), epoch_minute(last)
        starts = [from_epoch_minute(m) for m in range(first, stop, size)]
        series = [
            sum(b.value.count for k, b in by_key.items() if k[0] == size and k[1] == s)
            for s in starts
        ]
        n_stored = sum(1 for k in by_key if k[0] == size)
        row = [
            f"{size} min",
            fmt_count(n_stored),
            fmt_count(sum(series)),
            fmt_count(max(series, default=0)),
        ]
        if with_errors:
            errors = sum(
                b.value.error_count or 0
                for k, b in by_key.items()
                if k[0] == size and start <= k[1] < last
            )
            row.append(fmt_count(errors))
        summary.append((*row, sparkline(series, width=spark_width, ascii_only=ascii_only)))
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
        keys = [
            (size, from_epoch_minute(m), "")
            for m in range(epoch_minute(start), epoch_minute(last), size)
        ]
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
