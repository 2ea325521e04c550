"""`metrics-agg`: one entry point; each subcommand lives in its own module and registers itself."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import importlib
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import NoReturn

# What `pip install 'metrics-agg[local]'` adds (the local server's imports).
_LOCAL_EXTRA = frozenset({"ariadne", "uvicorn", "graphql", "starlette"})


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one `-h` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


# Each module defines `register(subparsers)`; the parser it adds sets `func(args) -> int`.
_COMMAND_MODULES = (
    "metrics_agg.local.cli._count",  # count
    "metrics_agg.local.cli._server",  # serve, seed
    "metrics_agg.local.cli._invoke",  # invoke
    "metrics_agg.local.cli._recount",  # recount, verify
    "metrics_agg.local.cli._backfill",  # backfill
    "metrics_agg.local.cli._show",  # show
    "metrics_agg.local.cli._demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metrics-agg",
        description=(
            "Exact 1/5/15/60-minute counts of Amplify records in AggregatedMetrics, "
            "kept current from DynamoDB Streams. Start with `metrics-agg demo`."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    command = f"{parser.prog} {args.command}"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _LOCAL_EXTRA:
            raise
        print(
            f"{command}: needs the `local` extra ({exc.name} is missing): "
            "pip install 'metrics-agg[local]'",
            file=sys.stderr,
        )
        return 2
    except sqlite3.Error as exc:
        db = getattr(args, "db", None)
        print(f"{command}: cannot use the database {db}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
