"""`metrics-agg backfill`: recount a long range in parallel units on the deployed engine.

Plans (model, account, day-or-hour) units (`backfill.units`), sends them to the backfill
queue and draws a progress bar from the units' own reports (`backfill.runner`). With
``--local`` the queues are `metrics-agg serve`'s, at the GraphQL endpoint's host.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.aggregator.report import fmt_count
from metrics_agg.config import BACKFILL_QUEUE_ENV, PROGRESS_QUEUE_ENV
from metrics_agg.local.cli._common import (
    ENV_HELP,
    EXIT_DIFFERENCES,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_args,
    connect,
    guard,
    help_formatter,
    instant_arg,
    parse_since,
    widen,
)
from metrics_agg.local.render import can_encode
from metrics_agg.models import SOURCE_MODELS

QUEUE_ENV = BACKFILL_QUEUE_ENV
PROGRESS_ENV = PROGRESS_QUEUE_ENV


class _Bar:
    """units queued, done, failed, records/s: redrawn in place on a terminal, else a line
    every few seconds (CI logs)."""

    def __init__(self, out: TextIO, width: int = 28) -> None:
        self.out = out
        self.tty = out.isatty()
        self.width = width
        self.fill, self.empty = ("█", "░") if can_encode(out, "█░") else ("#", "-")
        self._last = 0.0

    def __call__(self, p: Any, *, final: bool = False) -> None:
        now = time.monotonic()
        if not (self.tty or final or now - self._last >= 5.0):
            return
        self._last = now
        todo = max(p.queued, 1)
        filled = round(self.width * p.finished / todo)
        bar = self.fill * filled + self.empty * (self.width - filled)
        extra = f" · {p.retrying} retrying" if p.retrying else ""
        line = (
            f"[{bar}] {p.finished}/{p.queued} units · queued {p.queued - p.finished} · "
            f"done {p.done} · failed {p.failed}{extra} · "
            f"{fmt_count(round(p.records_per_second))} records/s"
        )
        if self.tty:
            self.out.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def _hourly_counts(
    config: Any, accounts: list[str], models: list[str], start: Any, end: Any
) -> dict[tuple[str, str], dict[Any, int]]:
    """Stored 60-minute counts of each model's main recordType: what sizes the units."""
    from metrics_agg.graphql.stored import list_stored_buckets
    from metrics_agg.graphql.transport import GraphQLClient

    out: dict[tuple[str, str], dict[Any, int]] = {}
    with GraphQLClient(config) as client:
        for model in models:
            record_type = SOURCE_MODELS[model].record_type
            for account in accounts:
                rows = list_stored_buckets(client, account, [record_type], start, end)
                out[(model, account)] = {
                    b.key.start: b.value.count
                    for b in rows
                    if b.key.minutes == 60 and b.key.record_type == record_type
                }
    return out


def _cmd_backfill(args: argparse.Namespace) -> int:
    from metrics_agg.backfill.runner import (
        BackfillQueues,
        Journal,
        default_journal_path,
        run_backfill,
        run_id_for,
    )
    from metrics_agg.backfill.sqs import QueueClient, local_queue_url
    from metrics_agg.backfill.units import plan_backfill
    from metrics_agg.timestamps import format_bucket_time, utc_now

    err = sys.stderr
    config = connect(args)
    if args.local:
        queues = BackfillQueues(
            local_queue_url(config.endpoint, "metrics-agg-backfill"),
            local_queue_url(config.endpoint, "metrics-agg-backfill-progress"),
        )
    else:
        units_url = args.queue_url or config.backfill_queue_url
        progress_url = args.progress_queue_url or config.progress_queue_url
        if not units_url or not progress_url:
            print(
                "metrics-agg backfill: name the queues: --queue-url and --progress-queue-url "
                f"(or {QUEUE_ENV} and {PROGRESS_ENV}; the stack's outputs BackfillQueueUrl and "
                "BackfillProgressQueueUrl), or --local for `metrics-agg serve`",
                file=err,
            )
            return EXIT_USAGE
        queues = BackfillQueues(units_url, progress_url)
    models = list(dict.fromkeys(args.models or SOURCE_MODELS))
    until = args.until or utc_now()
    start = until - args.since
    _, _, widened = widen(start, until, 60)
    if widened:
        print(f"metrics-agg backfill: {widened}", file=err)
    if args.all_accounts:
        from metrics_agg.backfill.accounts import all_account_ids
        from metrics_agg.graphql.transport import GraphQLClient

        with GraphQLClient(config) as gql:
            accounts = all_account_ids(gql)
        if not accounts:
            print("metrics-agg backfill: the API lists no accounts", file=err)
            return EXIT_USAGE
    else:
        accounts = list(dict.fromkeys(args.account))
    try:
        counts = {} if args.no_sizing else _hourly_counts(config, accounts, models, start, until)
        units = plan_backfill(
            accounts,
            models,
            start,
            until,
            hourly_counts=counts,
            max_unit_records=args.max_unit_records,
            hours_only=args.hour_units,
        )
    except ValueError as exc:
        print(f"metrics-agg backfill: {exc}", file=err)
        return EXIT_USAGE
    run_id = run_id_for(queues.units, None if args.all_accounts else accounts, models)
    journal = Journal(
        Path(args.journal) if args.journal else default_journal_path(run_id, os.environ)
    )
    if args.fresh:
        journal.reset()
    hourly = sum(1 for u in units if u.hours == 1)
    print(
        f"backfill {run_id}: {len(units)} units ({hourly} of one hour) for "
        f"{len(accounts)} account(s) x {len(models)} model(s), "
        f"{format_bucket_time(units[0].start) if units else '-'} -> "
        f"{format_bucket_time(max(u.end for u in units)) if units else '-'}; "
        f"journal {journal.path}",
        file=err,
    )
    client = QueueClient.for_url(queues.units)
    bar = _Bar(err)
    try:
        progress = run_backfill(
            units,
            run_id=run_id,
            queues=queues,
            client=client,
            journal=journal,
            on_progress=bar,
            send_only=args.no_wait,
            wait_seconds=5,  # long polling: a report ends the wait at once
            settle_seconds=args.settle,
        )
    finally:
        client.close()
    if args.no_wait:
        print(
            f"queued {progress.queued - progress.resumed} unit(s); {progress.resumed} sent "
            f"before and still queued; {progress.already_done} already done",
            file=err,
        )
        return EXIT_OK
    bar(progress, final=True)
    seconds = time.monotonic() - progress.started
    print(
        f"{progress.done} unit(s) done, {progress.already_done} done before, "
        f"{progress.failed} failed, {len(progress.unreported)} unreported; "
        f"{progress.resumed} followed from an earlier run ({progress.resent} sent again); "
        f"{fmt_count(progress.records)} records counted, "
        f"{fmt_count(progress.buckets)} buckets written in {seconds:.1f} s",
        file=sys.stdout,
    )
    for unit in progress.failed_units[:20]:
        print(f"  failed (in the dead-letter queue): {unit}", file=sys.stdout)
    for unit in progress.unreported[:20]:
        print(f"  no report: {unit}", file=sys.stdout)
    if not progress.complete:
        print("run the same command again to retry what is not done", file=sys.stdout)
    return EXIT_OK if progress.complete else EXIT_DIFFERENCES


def register(sub: Any) -> None:
    """Add `backfill` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "backfill",
        help="recount a long range in parallel units through the backfill queue",
        formatter_class=help_formatter,
        description=(
            "Split [now - SINCE, UNTIL) into (model, account, day) units (hours where the\n"
            "stored 60-minute buckets say a day is large), send them as recount events to\n"
            "the backfill queue, whose mapping runs them on the deployed function with a\n"
            "bounded concurrency, and show their progress. Idempotent and resumable: a\n"
            "journal records every unit sent and finished, so the same command run again\n"
            "(after Ctrl-C, say) follows what is still queued and sends only what was never\n"
            "sent, failed or got lost; --fresh sends everything again."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg backfill --since 30d --account acme --local\n"
            "  metrics-agg backfill --since 90d --all-accounts --models Item ScoreResult\n"
            "  metrics-agg backfill --since 7d --until 2026-11-01T00:00Z --account acme \\\n"
            "      --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/stack-backfill \\\n"
            "      --progress-queue-url "
            "https://sqs.us-east-1.amazonaws.com/123456789012/stack-progress\n\n"
            f"models: {', '.join(SOURCE_MODELS)}\n\n"
            f"  {QUEUE_ENV}, {PROGRESS_ENV}   the queues (stack outputs)\n" + ENV_HELP
        ),
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", action="append", metavar="A", help="accountId (repeatable)")
    who.add_argument(
        "--all-accounts", action="store_true", help="every account the API lists (listAccounts)"
    )
    p.add_argument(
        "--since",
        type=parse_since,
        default=timedelta(days=30),
        metavar="DURATION",
        help="how far back from --until: 30d, 12h (default 30d; widened to whole hours)",
    )
    p.add_argument(
        "--until",
        type=instant_arg,
        metavar="TIME",
        help="end of the range (default: now): 2026-11-01T00:00Z, 2026-11-01, -2h",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted(SOURCE_MODELS),
        metavar="MODEL",
        help="models to recount (default: all)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="use the queues of `metrics-agg serve` at the endpoint's host",
    )
    p.add_argument("--queue-url", metavar="URL", help=f"backfill queue (default ${QUEUE_ENV})")
    p.add_argument(
        "--progress-queue-url", metavar="URL", help=f"progress queue (default ${PROGRESS_ENV})"
    )
    p.add_argument(
        "--max-unit-records",
        type=int,
        default=100_000,
        metavar="N",
        help="split a day into hour units above this many stored records (default 100000)",
    )
    p.add_argument(
        "--hour-units",
        action="store_true",
        help="one unit per hour everywhere (days too large for one invocation, not yet sized)",
    )
    p.add_argument(
        "--no-sizing",
        action="store_true",
        help="do not read the stored 60-minute buckets: one unit per day",
    )
    p.add_argument(
        "--journal",
        metavar="PATH",
        help="journal file (default $XDG_STATE_HOME/metrics-agg/backfill-RUN.jsonl, "
        "XDG_STATE_HOME defaulting to ~/.local/state)",
    )
    p.add_argument("--fresh", action="store_true", help="forget the journal: send every unit again")
    p.add_argument("--no-wait", action="store_true", help="send the units and exit")
    p.add_argument(
        "--settle",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up on units not reported this long after the queue emptied (default 60)",
    )
    add_connection_args(p)
    p.set_defaults(
        func=guard("backfill", _cmd_backfill),
        on_interrupt=(
            "resume with the same command: the journal keeps the units sent and finished"
        ),
    )
