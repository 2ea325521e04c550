"""`metrics-agg invoke`: run the aggregator's handler on one event read from a JSON file.

A thin shell over `pipeline.handle_event` (the only orchestrator).
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.local.cli._common import (
    ENV_HELP,
    EXIT_DIFFERENCES,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_args,
    connect,
    guard,
    help_formatter,
)


def _cmd_invoke(args: argparse.Namespace) -> int:
    from metrics_agg.aggregator import pipeline

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
    config = connect(args)
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


def register(sub: Any) -> None:
    """Add `invoke` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "invoke",
        help="run the aggregator's handler on one event (stream batch, schedule, recount)",
        formatter_class=help_formatter,
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
            "exit status 1 when the response reports batchItemFailures.\n\n" + ENV_HELP
        ),
    )
    p.add_argument("event", type=Path, metavar="EVENT.json", help="the Lambda event, as JSON")
    add_connection_args(p)
    p.set_defaults(func=guard("invoke", _cmd_invoke))
