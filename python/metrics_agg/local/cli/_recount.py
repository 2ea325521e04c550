"""`metrics-agg recount` and `verify`: rewrite, or compare, an account's buckets against a
fresh count of the source tables.

Thin shells over `pipeline.recount` / `pipeline.verify` (the only orchestrator);
what lives here is argument parsing and rendering for people (`metrics_agg.local.render`).
"""

from __future__ import annotations

__all__ = ["print_verify", "register"]

import argparse
import sys
from datetime import timedelta
from typing import Any, TextIO

from metrics_agg.aggregator.report import fmt_count
from metrics_agg.local.cli._common import (
    ENV_HELP,
    EXIT_DIFFERENCES,
    EXIT_OK,
    EXIT_USAGE,
    INSTANT_FORMS,
    add_account_arg,
    add_connection_args,
    add_since_arg,
    ceil_to,
    connect,
    floor_to,
    guard,
    help_formatter,
    instant_arg,
    widen,
)
from metrics_agg.local.render import Column, can_encode, format_table
from metrics_agg.models import SOURCE_MODELS, VerifyReport
from metrics_agg.timestamps import format_bucket_time, utc_now

# --------------------------------------------------------------------------- recount


def _cmd_recount(args: argparse.Namespace) -> int:
    from metrics_agg.aggregator import pipeline

    if args.end <= args.start:
        print("metrics-agg recount: --end must be after --start", file=sys.stderr)
        return EXIT_USAGE
    _, _, widened = widen(args.start, args.end, 60)
    if widened:
        print(f"metrics-agg recount: {widened}", file=sys.stderr)
    config = connect(args)
    outcome = pipeline.recount(
        config=config,
        account_id=args.account,
        model=args.model,
        start=args.start,
        end=args.end,
        dry_run=args.dry_run,
    )
    out = sys.stdout
    ok_mark, bad_mark = ("✓", "✗") if can_encode(out, "✓✗") else ("OK", "FAILED")
    window = (
        f"{floor_to(args.start, 60):%Y-%m-%d %H:%M} → {ceil_to(args.end, 60):%Y-%m-%d %H:%M} UTC"
    )
    if not can_encode(out, "→"):
        window = window.replace("→", "->")
    if not outcome.ok:
        print(f"{bad_mark} {args.model} · {args.account} ({window}): {outcome.error}", file=out)
        return EXIT_DIFFERENCES
    did = (
        f"{fmt_count(outcome.buckets_planned)} buckets would be written (dry run)"
        if args.dry_run
        else f"{fmt_count(outcome.buckets_written)} buckets written"
    )
    extra = []
    if outcome.invalid:
        extra.append(f"{fmt_count(outcome.invalid)} invalid timestamps skipped")
    if outcome.superseded:
        extra.append(f"{fmt_count(outcome.superseded)} already newer")
    tail = f" ({'; '.join(extra)})" if extra else ""
    print(
        f"{ok_mark} {args.model} · {args.account}, {window}: "
        f"{fmt_count(outcome.records_counted)} records counted, {did}{tail}",
        file=out,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- verify


def _cmd_verify(args: argparse.Namespace) -> int:
    from metrics_agg.aggregator import pipeline

    config = connect(args)
    now = utc_now()
    report = pipeline.verify(
        config=config,
        account_id=args.account,
        start=floor_to(now - args.since, 60),
        end=ceil_to(now, 60),
        models=(args.model,) if args.model else None,
        check_complete=args.check_complete,
    )
    return print_verify(report, sys.stdout)


def _print_offsets(report: VerifyReport, out: TextIO) -> int:
    """The zone-offset warnings (docs/design.md §4.3): the fresh count reads the same index, so it
    can miss those records too; exit 1 so a scheduled verify does not pass silently."""
    from metrics_agg.aggregator.zones import offset_warning

    mark = "⚠" if can_encode(out, "⚠") else "WARNING:"
    for item in report.offsets:
        margin = report.zone_margin_minutes
        print(f"{mark} {offset_warning(item, margin)}", file=out)
    return EXIT_DIFFERENCES if report.offsets else EXIT_OK


def print_verify(report: VerifyReport, out: TextIO) -> int:
    """Render pipeline.verify's report; exit 1 if any bucket differs, or if records with a
    zone offset beyond the read margin were seen (the fresh count may miss them too)."""
    mismatches = list(report.mismatches)
    checked = report.buckets_checked
    ok_mark = "✓" if can_encode(out, "✓") else "OK"
    if not mismatches:
        print(
            f"{ok_mark} {fmt_count(checked)} buckets match a fresh count of "
            f"{fmt_count(report.records_counted)} records",
            file=out,
        )
        return _print_offsets(report, out)
    rows = [
        (
            m.key.record_type,
            m.key.score_id or m.key.scorecard_id or "",
            f"{m.key.minutes} min",
            format_bucket_time(m.key.start),
            "—" if m.stored is None else fmt_count(m.stored.count),
            fmt_count(m.truth.count),
            m.reason,
        )
        for m in mismatches
    ]
    print(
        format_table(
            [
                Column("recordType"),
                Column("scope"),
                Column("size", ">"),
                Column("bucket start (UTC)"),
                Column("stored", ">"),
                Column("truth", ">"),
                Column("differs in"),
            ],
            rows,
            stream=out,
        ),
        file=out,
    )
    print(
        f"{len(mismatches)} of {fmt_count(checked)} buckets differ from a fresh count of "
        f"{fmt_count(report.records_counted)} records; `metrics-agg recount` rewrites them",
        file=out,
    )
    _print_offsets(report, out)
    return EXIT_DIFFERENCES


# --------------------------------------------------------------------------- registration


def register(sub: Any) -> None:
    """Add `recount` and `verify` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "recount",
        help="recount one model's buckets for an account over a window (backfill/repair)",
        formatter_class=help_formatter,
        description=(
            "Recount every bucket (1, 5, 15, 60 min) of MODEL's recordTypes for ACCOUNT between\n"
            "--start and --end from the source table, and write what differs: the code path\n"
            "of the recount event {'recount': {accountId, model, start, end}}. Idempotent:\n"
            "run it again and nothing is written. The window is widened to whole hours, and\n"
            "the command says so when it was."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg recount --account acme --model Item "
            "--start 2024-05-01T00:00Z --end 2024-05-02T00:00Z\n"
            "  metrics-agg recount --account acme --model FeedbackItem "
            "--start 2024-05-01T09:00Z --end 2024-05-01T12:00Z --dry-run\n"
            "  metrics-agg recount --account demo-account --model Item --start -2h --end now\n\n"
            f"models: {', '.join(SOURCE_MODELS)}\n\n" + ENV_HELP
        ),
    )
    add_account_arg(p)
    p.add_argument("--model", required=True, choices=sorted(SOURCE_MODELS), metavar="MODEL")
    p.add_argument(
        "--start",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help=f"window start: {INSTANT_FORMS} (no zone means UTC)",
    )
    p.add_argument(
        "--end",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help="window end, exclusive, in the same forms",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="count and compare, write nothing; lists the buckets that would change",
    )
    add_connection_args(p)
    p.set_defaults(func=guard("recount", _cmd_recount))

    p = sub.add_parser(
        "verify",
        help="compare stored buckets with a fresh count of the tables; exit 1 on differences",
        formatter_class=help_formatter,
        description=(
            "Recount the last --since of ACCOUNT's records from the source tables WITHOUT\n"
            "writing, and list every stored bucket that differs from that count (wrong count,\n"
            "complete flag or feedback metadata; missing; or stored where the truth is zero).\n"
            "Run it side by side with another aggregator during a migration, or from cron."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg verify --account acme\n"
            "  metrics-agg verify --account acme --model FeedbackItem --since 7d\n\n"
            "prints one ✓ line and exits 0 when every bucket matches; otherwise a table of the\n"
            "differences and exit 1. Buckets of the current hour can lag by one batch window.\n\n"
            + ENV_HELP
        ),
    )
    add_account_arg(p)
    p.add_argument(
        "--model",
        choices=sorted(SOURCE_MODELS),
        metavar="MODEL",
        help=f"one of {', '.join(SOURCE_MODELS)} (default: all)",
    )
    add_since_arg(p, timedelta(hours=24), "24h")
    p.add_argument(
        "--check-complete",
        action="store_true",
        help="also compare `complete` (it lags until the next 5-minute scheduled run)",
    )
    add_connection_args(p)
    p.set_defaults(func=guard("verify", _cmd_verify))
