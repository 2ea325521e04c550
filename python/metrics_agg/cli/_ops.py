"""`invoke`, `recount`, `verify`, `show`: the operator's commands against a configured API.

Each command is a thin shell over `pipeline` (the only orchestrator, STYLE) or
`graphql.api`; what lives here is argument parsing, configuration errors that say what
to do next, and rendering for people (`metrics_agg.render`).
"""

from __future__ import annotations

__all__ = ["config_from_args", "parse_since", "register", "render_show"]

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.config import Config
from metrics_agg.errors import ConfigError, MetricsAggError, TransportError
from metrics_agg.models import (
    BUCKET_SIZES,
    FEEDBACK_RECORD_TYPES,
    SOURCE_MODELS,
    StoredBucket,
    VerifyReport,
)
from metrics_agg.render import (
    Column,
    can_encode,
    format_count,
    format_table,
    sparkline,
)
from metrics_agg.timestamps import (
    epoch_minute,
    format_bucket_time,
    from_epoch_minute,
    parse_instant,
    utc_now,
)

log = logging.getLogger("metrics_agg.cli")

# Exit codes, documented in every command's epilog.
EXIT_OK = 0
EXIT_DIFFERENCES = 1  # verify found mismatches; invoke/recount reported failures
EXIT_USAGE = 2  # bad arguments or configuration (argparse uses 2 too)
EXIT_UNREACHABLE = 3  # the API could not be reached or kept failing

ALL_RECORD_TYPES: tuple[str, ...] = tuple(
    rt for spec in SOURCE_MODELS.values() for rt in spec.record_types
)

_ENV_HELP = """\
environment:
  PLEXUS_API_URL | GRAPHQL_ENDPOINT   GraphQL endpoint (AppSync URL, or the local server's
                                      http://127.0.0.1:8765/graphql from `metrics-agg serve`)
  PLEXUS_API_KEY | GRAPHQL_API_KEY    API key; without one, IAM (SigV4) with the default AWS
                                      credential chain. Prefer the environment over --api-key:
                                      a key typed on the command line lands in shell history.
  METRICS_AGG_REGION                  SigV4 region when the endpoint host names none
  METRICS_AGG_READ_PARALLELISM, METRICS_AGG_WRITE_PARALLELISM,
  METRICS_AGG_MUTATIONS_PER_REQUEST, METRICS_AGG_MAX_HOURS_BACK   tuning knobs

exit status: 0 ok, 1 differences or failures reported, 2 usage or configuration error,
3 the API could not be reached."""

_SINCE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", re.ASCII)


def parse_since(text: str) -> timedelta:
    """``90m``, ``2h``, ``1h30m``, ``7d`` -> timedelta (an argparse ``type``).

    Raises:
        argparse.ArgumentTypeError: not of that form, or zero.
    """
    m = _SINCE.fullmatch(text.strip().lower())
    if not text.strip() or m is None or not any(m.groups()):
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90m, 2h, 1h30m or 7d, got {text!r}"
        )
    days, hours, minutes = (int(g or 0) for g in m.groups())
    delta = timedelta(days=days, hours=hours, minutes=minutes)
    if delta <= timedelta(0):
        raise argparse.ArgumentTypeError("the duration must be longer than zero")
    return delta


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (defaults from the environment)")
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help="GraphQL endpoint; overrides PLEXUS_API_URL / GRAPHQL_ENDPOINT",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key; prefer PLEXUS_API_KEY in the environment (a flag lands in shell "
        "history). The flag, when given, wins over the environment.",
    )


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """Config.from_env, with --endpoint/--api-key applied on top.

    Raises:
        ConfigError: no endpoint anywhere; the message says how to get one.
    """
    env = dict(os.environ if environ is None else environ)
    if getattr(args, "endpoint", None):
        env["PLEXUS_API_URL"] = args.endpoint
        env.pop("GRAPHQL_ENDPOINT", None)
    if getattr(args, "api_key", None):
        env["PLEXUS_API_KEY"] = args.api_key
    if not (env.get("PLEXUS_API_URL") or env.get("GRAPHQL_ENDPOINT")):
        raise ConfigError(
            "no GraphQL endpoint configured. Run `metrics-agg serve` in another terminal and "
            "`export PLEXUS_API_URL=http://127.0.0.1:8765/graphql PLEXUS_API_KEY=local-dev-key`, "
            "or set PLEXUS_API_URL to your AppSync URL (or pass --endpoint)"
        )
    return Config.from_env(env)


def _guard(command: str, body: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Turn the package's errors into one readable line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except ConfigError as exc:
            print(f"metrics-agg {command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except TransportError as exc:
            print(
                f"metrics-agg {command}: the API kept failing: {exc}\n"
                "  check that the endpoint is up (`metrics-agg serve` for the local one) and "
                "that the API key is right; -v shows each attempt",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
        except MetricsAggError as exc:
            print(f"metrics-agg {command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


# --------------------------------------------------------------------------- invoke


def _cmd_invoke(args: argparse.Namespace) -> int:
    from metrics_agg import pipeline

    path: Path = args.event
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"metrics-agg invoke: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    except json.JSONDecodeError as exc:
        print(f"metrics-agg invoke: {path} is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(event, dict):
        print(f"metrics-agg invoke: {path} must hold a JSON object (an event)", file=sys.stderr)
        return EXIT_USAGE
    config = config_from_args(args)
    # The human log goes to stdout, ahead of the response, so that the last line is always
    # the handler's JSON (`metrics-agg invoke ev.json | tail -n1 | jq`).
    with _log_to(sys.stdout):
        response = pipeline.handle_event(event, config=config)
    sys.stdout.flush()
    print(json.dumps(response, sort_keys=True, default=str), flush=True)
    return EXIT_DIFFERENCES if response.get("batchItemFailures") else EXIT_OK


@contextlib.contextmanager
def _log_to(stream: TextIO) -> Iterator[None]:
    """Send the root logger's stream handlers to ``stream`` for the duration of a block."""
    saved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            saved.append((handler, handler.setStream(stream)))
    try:
        yield
    finally:
        for handler, old in saved:
            if old is not None:
                handler.setStream(old)


# --------------------------------------------------------------------------- recount


def _cmd_recount(args: argparse.Namespace) -> int:
    from metrics_agg import pipeline

    if args.end <= args.start:
        print("metrics-agg recount: --end must be after --start", file=sys.stderr)
        return EXIT_USAGE
    config = config_from_args(args)
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
    window = f"{_floor(args.start, 60):%Y-%m-%d %H:%M} → {_ceil(args.end, 60):%Y-%m-%d %H:%M} UTC"
    if not can_encode(out, "→"):
        window = window.replace("→", "->")
    if not outcome.ok:
        print(f"{bad_mark} {args.model} · {args.account} ({window}): {outcome.error}", file=out)
        return EXIT_DIFFERENCES
    did = (
        f"{format_count(outcome.buckets_planned)} buckets would be written (dry run)"
        if args.dry_run
        else f"{format_count(outcome.buckets_written)} buckets written"
    )
    extra = []
    if outcome.invalid:
        extra.append(f"{format_count(outcome.invalid)} invalid timestamps skipped")
    if outcome.superseded:
        extra.append(f"{format_count(outcome.superseded)} already newer")
    tail = f" ({'; '.join(extra)})" if extra else ""
    print(
        f"{ok_mark} {args.model} · {args.account}, {window}: "
        f"{format_count(outcome.records_counted)} records counted, {did}{tail}",
        file=out,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- verify


def _cmd_verify(args: argparse.Namespace) -> int:
    from metrics_agg import pipeline

    config = config_from_args(args)
    now = utc_now()
    start = _floor(now - args.since, 60)
    end = _ceil(now, 60)
    report = pipeline.verify(
        config=config,
        account_id=args.account,
        start=start,
        end=end,
        models=(args.model,) if args.model else None,
        check_complete=args.check_complete,
    )
    return _print_verify(report, sys.stdout)


def _print_offsets(report: VerifyReport, out: TextIO) -> int:
    """The zone-offset warnings (DESIGN §4.3): the fresh count reads the same index, so it
    can miss those records too; exit 1 so a scheduled verify does not pass silently."""
    from metrics_agg.zones import offset_warning

    mark = "⚠" if can_encode(out, "⚠") else "WARNING:"
    for item in report.offsets:
        margin = report.zone_margin_minutes
        print(f"{mark} {offset_warning(item, margin)}", file=out)
    return EXIT_DIFFERENCES if report.offsets else EXIT_OK


def _print_verify(report: VerifyReport, out: TextIO) -> int:
    """Render pipeline.verify's report; exit 1 if any bucket differs, or if records with a
    zone offset beyond the read margin were seen (the fresh count may miss them too)."""
    mismatches = list(report.mismatches)
    checked = report.buckets_checked
    ok_mark = "✓" if can_encode(out, "✓") else "OK"
    if not mismatches:
        print(
            f"{ok_mark} {format_count(checked)} buckets match a fresh count of "
            f"{format_count(report.records_counted)} records",
            file=out,
        )
        return _print_offsets(report, out)
    rows = [
        (
            m.key.record_type,
            m.key.score_id or m.key.scorecard_id or "",
            f"{m.key.minutes} min",
            format_bucket_time(m.key.start),
            "—" if m.stored is None else format_count(m.stored.count),
            format_count(m.truth.count),
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
        f"{len(mismatches)} of {format_count(checked)} buckets differ from a fresh count of "
        f"{format_count(report.records_counted)} records; `metrics-agg recount` rewrites them",
        file=out,
    )
    _print_offsets(report, out)
    return EXIT_DIFFERENCES


# --------------------------------------------------------------------------- show


def _floor(dt: datetime, minutes: int) -> datetime:
    m = epoch_minute(dt)
    return from_epoch_minute(m - m % minutes)


def _ceil(dt: datetime, minutes: int) -> datetime:
    floor = _floor(dt, minutes)
    return floor if floor == dt else floor + timedelta(minutes=minutes)


def _cmd_show(args: argparse.Namespace) -> int:
    from metrics_agg.graphql.api import list_stored_buckets
    from metrics_agg.graphql.transport import GraphQLClient

    config = config_from_args(args)
    now = utc_now()
    start = _floor(now - args.since, 60)
    end = _ceil(now, 60)
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
    if b.key.record_type == "feedbackItemsByScore":
        return b.key.score_id or ""
    if b.key.record_type == "feedbackItemsByScorecard":
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
    scoped = record_type in FEEDBACK_RECORD_TYPES[1:]
    is_feedback = record_type in FEEDBACK_RECORD_TYPES
    by_key = {(b.key.minutes, b.key.start, _scope(b)): b for b in stored}
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
        summary.append(
            (
                f"{size} min",
                format_count(n_stored),
                format_count(sum(series)),
                format_count(max(series, default=0)),
                sparkline(series, width=spark_width, ascii_only=ascii_only),
            )
        )
    lines.append(
        format_table(
            [
                Column("size", ">"),
                Column("stored", ">"),
                Column("total", ">"),
                Column("peak", ">"),
                Column(f"trend (oldest {arrow} newest)"),
            ],
            summary,
            stream=out,
        )
    )
    size = table_minutes or _pick_table_minutes(start, last, sizes)
    lines += ["", f"{size}-minute buckets"]
    columns = [Column("start (UTC)")]
    if scoped:
        columns.append(Column("score" if record_type == "feedbackItemsByScore" else "scorecard"))
    columns += [Column("count", ">"), Column("complete", "^")]
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
            row += [dash, ""]
            if is_feedback:
                row += ["", "", ""]
            row.append("not stored")
        else:
            row += [format_count(b.value.count), check if b.value.complete else ""]
            if is_feedback:
                meta = b.value.metadata or {}
                row += [
                    format_count(int(meta.get(name, 0)))
                    for name in ("changedCount", "unchangedCount", "invalidCount")
                ]
            row.append(b.updated_at[11:19] if len(b.updated_at) >= 19 else b.updated_at)
        rows.append(row)
    if rows:
        lines.append(format_table(columns, rows, stream=out))
    else:
        lines.append(f"  no {size}-minute buckets stored in this window")
    return "\n".join(lines)


# --------------------------------------------------------------------------- registration


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def register(sub: Any) -> None:
    """Add `invoke`, `recount`, `verify` and `show` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "invoke",
        help="run the aggregator's handler on one event (stream batch, schedule, recount)",
        formatter_class=_formatter,
        description=(
            "Run the same handler the Lambda runs on an event read from a JSON file, against\n"
            "the configured GraphQL API. The human log comes first; the LAST line of stdout\n"
            "is the handler's JSON response ({'batchItemFailures': [...]} for a stream batch,\n"
            "a summary for scheduled and recount events)."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg invoke tests/events/item_insert.json\n"
            "  metrics-agg invoke batch.json | tail -n1 | jq .batchItemFailures\n"
            '  echo \'{"source": "aws.events", "detail-type": "Scheduled Event"}\' '
            "> tick.json\n"
            "  metrics-agg invoke tick.json    # the 5-minute finalize/repair pass\n\n"
            "exit status 1 when the response reports batchItemFailures.\n\n" + _ENV_HELP
        ),
    )
    p.add_argument("event", type=Path, metavar="EVENT.json", help="the Lambda event, as JSON")
    _add_connection_args(p)
    p.set_defaults(func=_guard("invoke", _cmd_invoke))

    p = sub.add_parser(
        "recount",
        help="recount one model's buckets for an account over a window (backfill/repair)",
        formatter_class=_formatter,
        description=(
            "Recount every bucket (1, 5, 15, 60 min) of MODEL's recordTypes for ACCOUNT between\n"
            "--start and --end from the source table, and write what differs: the code path\n"
            "of the recount event {'recount': {accountId, model, start, end}}. Idempotent:\n"
            "run it again and nothing is written. The window is widened to whole hours."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg recount --account acme --model Item "
            "--start 2024-05-01T00:00Z --end 2024-05-02T00:00Z\n"
            "  metrics-agg recount --account acme --model FeedbackItem "
            "--start 2024-05-01T09:00Z --end 2024-05-01T12:00Z --dry-run\n\n"
            f"models: {', '.join(SOURCE_MODELS)}\n\n" + _ENV_HELP
        ),
    )
    p.add_argument("--account", required=True, metavar="A", help="accountId")
    p.add_argument("--model", required=True, choices=sorted(SOURCE_MODELS), metavar="MODEL")
    p.add_argument(
        "--start",
        required=True,
        type=_instant,
        metavar="ISO",
        help="window start, e.g. 2024-05-01T09:00Z (no zone means UTC)",
    )
    p.add_argument(
        "--end", required=True, type=_instant, metavar="ISO", help="window end (exclusive)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="count and compare, write nothing; lists the buckets that would change",
    )
    _add_connection_args(p)
    p.set_defaults(func=_guard("recount", _cmd_recount))

    p = sub.add_parser(
        "verify",
        help="compare stored buckets with a fresh count of the tables; exit 1 on differences",
        formatter_class=_formatter,
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
            + _ENV_HELP
        ),
    )
    p.add_argument("--account", required=True, metavar="A", help="accountId")
    p.add_argument(
        "--model",
        choices=sorted(SOURCE_MODELS),
        metavar="MODEL",
        help=f"one of {', '.join(SOURCE_MODELS)} (default: all)",
    )
    p.add_argument(
        "--since",
        type=parse_since,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="how far back: 90m, 2h, 1d (default 24h; widened to whole hours)",
    )
    p.add_argument(
        "--check-complete",
        action="store_true",
        help="also compare `complete` (it lags until the next 5-minute scheduled run)",
    )
    _add_connection_args(p)
    p.set_defaults(func=_guard("verify", _cmd_verify))

    p = sub.add_parser(
        "show",
        help="print the stored buckets of one recordType as tables with sparklines",
        formatter_class=_formatter,
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
            + _ENV_HELP
        ),
    )
    p.add_argument("--account", required=True, metavar="A", help="accountId")
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
    p.add_argument(
        "--since",
        type=parse_since,
        default=timedelta(hours=2),
        metavar="DURATION",
        help="how far back: 90m, 2h, 1d (default 2h; widened to whole hours)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_connection_args(p)
    p.set_defaults(func=_guard("show", _cmd_show))
