"""`metrics-agg`: one entry point; each subcommand lives in its own module and registers itself."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from metrics_agg import __version__, logs
from metrics_agg.local.cli._guard import CliLogHandler, run_guarded

# `--start -2h`: argparse takes a leading "-" for an option unless the argument looks like a
# negative number; a relative time is one more shape of negative number here.
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(?:\d+[dhm])+$")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one `-h` away) and
    relative times (``-2h``) taken as values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} -h`\n")


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
    parser.add_argument("--version", action="version", version=f"metrics-agg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _setup_logging(verbose: bool) -> CliLogHandler:
    """Human lines on stderr; ``-v`` opens the package's debug log, not the HTTP and AWS
    libraries' (urllib3 logs a retry object's repr per attempt)."""
    handler = CliLogHandler(sys.stderr)
    # JSON lines instead when AWS_LAMBDA_LOG_FORMAT=JSON, as in Lambda (`logs`).
    logs.configure(
        os.environ, handler=handler, human=logging.Formatter("%(message)s"), level=logging.NOTSET
    )
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer", "asyncio", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _setup_logging(args.verbose)
    try:
        return run_guarded(f"{parser.prog} {args.command}", args.func, args)
    finally:
        logging.getLogger().removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
