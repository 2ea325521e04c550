"""`metrics-agg serve` and `metrics-agg seed`: the local stack from the command line."""

from __future__ import annotations

__all__ = ["register"]

import argparse
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from metrics_agg.local.cli._common import INSTANT_FORMS, instant_arg

_DEFAULT_KEY = "local-dev-key"

_SERVE_EPILOG = """\
The endpoint speaks the Amplify-generated AppSync API of schema.graphql (API key in the
x-api-key header). Every create/update/delete of a source model appends a DynamoDB stream
record, and the event source mapping delivers them to
metrics_agg.aggregator.pipeline.handle_event in batches (docs/design.md §6 sizes and windows),
so AggregatedMetrics stays current. With --no-mapping nothing in this server delivers
them: the buckets change only when another process on the same --db does (a running
`metrics-agg demo --keep`), or a backfill sends units to this server's queue.

Point the other commands at it:
  export PLEXUS_API_URL=http://127.0.0.1:8765/graphql PLEXUS_API_KEY=local-dev-key

A read-only dashboard is at http://127.0.0.1:8765/ . It asks for the API key (sent only as
the x-api-key header) and reads the buckets through /graphql with the Plexus dashboard's
query, every 2 s. It draws a bar chart per recordType (count, and errors in red; hover a
bar for its values) over a range that fits the data, the last 15 min to 24 h, or since the
first record, in automatic or 1/5/15/60-minute buckets; feedback per scorecard and per
score, picked from the ones stored; and the event source mapping's activity, including
whether this server delivers at all. To watch a demo fill it:
  metrics-agg serve --db ./demo-data/demo.sqlite3 --no-mapping &
  metrics-agg demo --keep ./demo-data --records 5000

By default the handler runs in the mapping's threads, in this process. --sandboxes N runs
it in Lambda-like worker processes instead (N warm, more started when more batches run at
once), apart from the server as a deployment runs it; each starts like a Lambda cold start
(about half a second), then stays warm.

examples:
  metrics-agg serve --db ./local.sqlite
  metrics-agg serve --db ./local.sqlite --latency-ms 50 --batch-window 1
  metrics-agg serve --db ./local.sqlite --sandboxes 7
"""

_SEED_EPILOG = """\
Records are written straight into the database in bulk transactions (a running
`metrics-agg serve` on the same --db picks their stream records up). Timestamps are
uniform in [--start, --end); --late-fraction of them are 1-6 hours older than their write
order, --invalid-fraction carry timestamps outside the accepted grammar.

--start and --end take a timestamp (2024-05-01T00:00Z), a date (2024-05-01, midnight UTC),
`now`, or a time relative to now: -90m, -2h, -1h30m, -7d (no `date -d` needed).

examples:
  metrics-agg seed --db ./demo-data/demo.sqlite3 --account acme --model Item --count 5000 \\
      --start -1h --end now
  metrics-agg seed --db ./local.sqlite --account acct-1 --model Item --count 100000 \\
      --start 2024-05-01T00:00Z --end 2024-05-01T01:00Z
  metrics-agg seed --db ./local.sqlite --account acct-1 --model FeedbackItem --count 500 \\
      --start 2024-05-01T00:00Z --end 2024-05-01T01:00Z --late-fraction 0.02 --no-stream
"""


def register(sub: Any) -> None:
    from metrics_agg.models import SOURCE_MODELS

    serve = sub.add_parser(
        "serve",
        help="run the local AppSync-compatible GraphQL server (SQLite, streams, mapping)",
        description="Run the local AppSync-compatible GraphQL endpoint over SQLite, with "
        "DynamoDB stream emulation and a local event source mapping.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--db", required=True, metavar="PATH", help="SQLite database file (created if missing)"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; anything else exposes it)",
    )
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    serve.add_argument(
        "--api-key",
        default=_DEFAULT_KEY,
        help=f"API key clients must send in x-api-key (default {_DEFAULT_KEY})",
    )
    serve.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="add N ms to every request, to model AppSync's latency",
    )
    serve.add_argument(
        "--index-lag-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="index queries see each write N ms late, as AppSync's eventually consistent "
        "index reads may (default 0: off)",
    )
    serve.add_argument(
        "--batch-window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="override every table's batching window (default: 1 s, as the template)",
    )
    serve.add_argument(
        "--backfill-concurrency",
        type=int,
        default=5,
        metavar="N",
        help="units of `metrics-agg backfill` run at once (the SQS mapping's "
        "MaximumConcurrency; default 5)",
    )
    serve.add_argument(
        "--sandboxes",
        type=int,
        default=0,
        metavar="N",
        help="run the handler in Lambda-like worker processes apart from the server, N of "
        "them warm, as a deployment runs it (default 0: in the mapping's threads)",
    )
    serve.add_argument(
        "--no-mapping",
        action="store_true",
        help="serve the API without delivering stream records to the handler (the "
        "backfill queue still runs its units)",
    )
    serve.set_defaults(func=_serve)

    seed = sub.add_parser(
        "seed",
        help="write realistic source records into a local database, fast",
        description="Write realistic records of one source model for one account.",
        epilog=_SEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seed.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")
    seed.add_argument("--account", required=True, metavar="A", help="accountId of the records")
    seed.add_argument(
        "--model", required=True, choices=sorted(SOURCE_MODELS), help="source model to seed"
    )
    seed.add_argument("--count", required=True, type=int, metavar="N", help="how many records")
    seed.add_argument(
        "--start",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help=f"window start: {INSTANT_FORMS}",
    )
    seed.add_argument(
        "--end",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help="window end, exclusive, in the same forms",
    )
    seed.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="random seed (same seed and account, same records; ids differ per account)",
    )
    seed.add_argument(
        "--no-stream",
        action="store_true",
        help="do not append stream records (the mapping will not see them)",
    )
    seed.add_argument(
        "--late-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of records 1-6 hours late (default 0)",
    )
    seed.add_argument(
        "--invalid-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of records with invalid timestamps (default 0)",
    )
    seed.set_defaults(
        func=_seed, on_interrupt="the records written so far stay in --db (a new run needs --seed)"
    )


def _serve(args: argparse.Namespace) -> int:
    from metrics_agg.local.server.sandboxes import SandboxError
    from metrics_agg.local.server.stack import LocalStack

    mapping = not args.no_mapping
    backfill = True
    try:
        import metrics_agg.aggregator.pipeline  # noqa: F401
    except ImportError as exc:
        print(
            f"warning: the pipeline cannot be imported ({exc}); serving without the "
            "event source mapping and the backfill queue",
            file=sys.stderr,
        )
        mapping = backfill = False
    try:  # `serve --db ./demo-data/demo.sqlite3` before the demo has made the folder
        Path(args.db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"metrics-agg serve: cannot use the database {args.db}: {exc}", file=sys.stderr)
        return 2
    stack = LocalStack(
        args.db,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        index_lag_ms=args.index_lag_ms,
        mapping=mapping,
        backfill_queue=backfill,
        batch_window=args.batch_window,
        backfill_concurrency=max(1, args.backfill_concurrency),
        sandboxes=max(0, args.sandboxes) if mapping or backfill else 0,
    )
    try:
        stack.start()
    except (OSError, SandboxError) as exc:
        print(f"metrics-agg serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"metrics-agg local AppSync on {stack.endpoint}  (db: {args.db})")
        # Only the well-known development key is echoed: a key of the user's own is a secret,
        # and a terminal's output ends up in logs and screenshots.
        key = args.api_key if args.api_key == _DEFAULT_KEY else "<your --api-key>"
        print(f"  export PLEXUS_API_URL={stack.endpoint} PLEXUS_API_KEY={key}")
        print(f"  dashboard: {stack.endpoint.removesuffix('graphql')}  (asks for the API key)")
        # What `metrics-agg invoke` needs for a scheduled pass over the recorded pairs.
        activity = stack.config()
        print(
            f"  activity table: export METRICS_AGG_ACTIVITY_TABLE={activity.activity_table} "
            f"METRICS_AGG_ACTIVITY_ENDPOINT={activity.activity_endpoint}"
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"  warning: bound to {args.host}, reachable beyond this machine")
        window = "1 s (default)" if args.batch_window is None else f"{args.batch_window:g} s"
        print(f"  event source mapping: {'on, batching window ' + window if mapping else 'off'}")
        if backfill:
            print(
                f"  backfill queue: {stack.queue_url('metrics-agg-backfill')} "
                f"(up to {max(1, args.backfill_concurrency)} units at once)"
            )
        if stack.sandboxes is not None:
            print(f"  handler: in Lambda-like sandbox processes, {args.sandboxes} warm")
        if args.latency_ms:
            print(f"  added latency: {args.latency_ms:g} ms per request")
        if args.index_lag_ms:
            print(f"  index lag: queries see writes {args.index_lag_ms:g} ms late")
        print("  Ctrl-C to stop")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print(f"stopped; {stack.faults.requests} requests served", file=sys.stderr)
    return 0


def _seed(args: argparse.Namespace) -> int:
    from metrics_agg.local.server.seeding import seed_records
    from metrics_agg.local.server.store import Store

    start, end = args.start, args.end
    if end <= start:
        print("metrics-agg seed: --end must be after --start", file=sys.stderr)
        return 2
    if args.count < 0:
        print("metrics-agg seed: --count must be 0 or more", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()
    written = 0

    def progress(done: int, total: int) -> None:
        nonlocal written
        written = done
        rate = done / max(time.perf_counter() - t0, 1e-9)
        line = f"seeding {args.model}: {done:,}/{total:,} ({rate:,.0f}/s)"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    store = Store(args.db)
    try:
        result = seed_records(
            store,
            args.model,
            args.account,
            args.count,
            start,
            end,
            seed=args.seed,
            stream=not args.no_stream,
            late_fraction=args.late_fraction,
            invalid_fraction=args.invalid_fraction,
            progress=progress,
        )
    except ValueError as exc:
        print(f"{chr(10) if tty else ''}metrics-agg seed: {exc}", file=sys.stderr)
        return 2
    except sqlite3.IntegrityError:
        print(
            f"{chr(10) if tty else ''}metrics-agg seed: {args.model} records with these ids "
            f"are already in {args.db} ({args.account} was seeded with --seed {args.seed} "
            f"before); pass another --seed. {written:,} records of this run were written.",
            file=sys.stderr,
        )
        return 2
    finally:
        store.close()
    if tty:
        print(file=sys.stderr)
    print(
        f"seeded {result.count:,} {args.model} records for {args.account} in "
        f"{result.seconds:.2f} s ({result.late:,} late, {result.invalid:,} invalid"
        f"{', no stream records' if args.no_stream else ''}) into {args.db}"
    )
    return 0
