"""`metrics-agg demo`: the local stack end to end, in one command
(logic in `metrics_agg.local.demo.run`)."""

from __future__ import annotations

__all__ = ["register"]

import argparse
from pathlib import Path
from typing import Any


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError("--records must be between 1 and 100000")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from metrics_agg.local.demo.run import run_demo

    # A closed pipe, Ctrl-C, a missing extra and the package's errors end in one line
    # through the entry point's guard.
    result = run_demo(args.keep, records=args.records, seed=args.seed)
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    """Add `demo` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a local stack and check every bucket (start here)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "In a temporary folder: start the local AppSync-compatible server with its\n"
            "DynamoDB-style streams and event source mapping, write a realistic mix of records\n"
            "through the GraphQL API (items of every kind, score results, tasks, feedback with\n"
            "scorecards and scores, plus a delete, a move, a late record and an invalid\n"
            "timestamp), wait for the aggregator to catch up, show the buckets, and compare\n"
            "every stored bucket with a direct count of the tables. Needs nothing but this\n"
            "package (no AWS, no network); takes a few seconds."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg demo\n"
            "  metrics-agg demo --records 2000 --keep ./demo-data   # then inspect it:\n"
            "  metrics-agg serve --db ./demo-data/demo.sqlite3 --no-mapping\n\n"
            "exit status: 0 when every bucket matches (the last line starts with ✓), 1 on any\n"
            "mismatch, 2 when the local stack could not run."
        ),
    )
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="use DIR (created if needed) and keep the SQLite database afterwards",
    )
    p.add_argument(
        "--records",
        type=_positive,
        default=300,
        metavar="N",
        help="records written in the simulated minutes (default 300)",
    )
    p.add_argument("--seed", type=int, default=2024, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_demo)
