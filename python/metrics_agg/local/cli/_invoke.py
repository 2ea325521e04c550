"""`metrics-agg invoke`: run the aggregator's handler on one event read from a JSON file.

A thin shell over `pipeline.handle_event` (the only orchestrator).
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.local.cli._common import (
    ENV_HELP,
    EXIT_DIFFERENCES,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_args,
    connect,
    floor_to,
    guard,
    help_formatter,
)
from metrics_agg.local.cli._guard import describe_os_error
from metrics_agg.timestamps import format_bucket_time, format_write_time, utc_now


def _cmd_invoke(args: argparse.Namespace) -> int:
    from metrics_agg.aggregator import pipeline

    if args.example:
        print(json.dumps(example_event(args.example, args.account), indent=2))
        return EXIT_OK
    path: Path | None = args.event
    if path is None:
        print(
            "metrics-agg invoke: give an event file, or print one with --example stream, "
            "--example recount or --example scheduled",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        print(f"metrics-agg invoke: {path} is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"metrics-agg invoke: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError:
        print(f"metrics-agg invoke: {path} is not a UTF-8 text file of JSON", file=sys.stderr)
        return EXIT_USAGE
    problem = event_problem(event)
    if problem is not None:
        print(f"metrics-agg invoke: {path}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    config = connect(args)
    # The human log goes to stdout, ahead of the response, so that the last line is always
    # the handler's JSON (`metrics-agg invoke ev.json | tail -n1 | jq`).
    with _log_to(sys.stdout):
        response = pipeline.handle_event(event, config=config)
    sys.stdout.flush()
    print(json.dumps(response, sort_keys=True, default=str), flush=True)
    return EXIT_DIFFERENCES if response.get("batchItemFailures") else EXIT_OK


_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def event_problem(event: object) -> str | None:
    """What makes ``event`` one the handler cannot run, in one sentence, or None.

    The handler raises on an event of no known kind and on a malformed recount event
    (a Lambda invocation error); a person gets the reason before anything runs.
    """
    from metrics_agg.aggregator.event_kinds import event_kind, recount_unit

    if not isinstance(event, dict):
        return "must hold a JSON object (an event); --example prints one"
    try:
        kind = event_kind(event)
    except ValueError:
        return (
            "not an event the handler knows: expected a stream batch {'Records': [...]}, "
            "a scheduled event or {'recount': {...}}; --example prints each"
        )
    if kind in ("stream", "sqs") and not isinstance(event["Records"], list):
        return "'Records' must be a list of records"
    if kind != "recount":
        return None
    spec = event["recount"]
    if not isinstance(spec, dict):
        return "'recount' must be an object with accountId, model, start and end"
    for bound in ("start", "end"):
        value = spec.get(bound)
        if isinstance(value, str) and _DATE_ONLY.fullmatch(value.strip()):
            return (
                f"recount {bound} {value!r} is a date without a time; write {value.strip()}T00:00Z"
            )
    try:
        recount_unit(spec)
    except ValueError as exc:
        return str(exc)
    return None


def example_event(kind: str, account: str, now: datetime | None = None) -> dict[str, Any]:
    """A current event of ``kind`` for ``account``: what `invoke --example` prints.

    ``stream``: one Item created this minute (the handler recounts its minute from the
    table); ``recount``: the last two whole hours of Item; ``scheduled``: the 5-minute
    finalize/repair pass.
    """
    when = now or utc_now()
    if kind == "scheduled":
        return {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    if kind == "recount":
        hour = floor_to(when, 60)
        return {
            "recount": {
                "accountId": account,
                "model": "Item",
                "start": format_bucket_time(hour - timedelta(hours=1)),
                "end": format_bucket_time(hour + timedelta(hours=1)),
            }
        }
    created = format_write_time(when)
    item = {
        "id": f"example-{int(when.timestamp())}",
        "accountId": account,
        "createdAt": created,
        "updatedAt": created,
        "createdByType": "prediction",
        "__typename": "Item",
    }
    return {
        "Records": [
            {
                "eventID": f"example-{int(when.timestamp())}",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "local",
                "dynamodb": {
                    "ApproximateCreationDateTime": int(when.timestamp()),
                    "Keys": {"id": {"S": item["id"]}},
                    "NewImage": {k: {"S": v} for k, v in item.items()},
                    "SequenceNumber": "1",
                    "SizeBytes": 200,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": (
                    "arn:aws:dynamodb:local:000000000000:table/Item-local-NONE/stream/example"
                ),
            }
        ]
    }


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
            "the configured GraphQL API. The event is checked first: one that the handler\n"
            "cannot run is named and nothing runs. The human log comes first; the LAST line\n"
            "of stdout is the handler's JSON response ({'batchItemFailures': [...]} for a\n"
            "stream batch, a summary for scheduled and recount events). --example prints a\n"
            "current event of each kind to start from."
        ),
        epilog=(
            "examples:\n"
            "  # against `metrics-agg serve --db ./demo-data/demo.sqlite3` after\n"
            "  # `metrics-agg demo --keep ./demo-data`, within the hour:\n"
            "  metrics-agg invoke --example recount --account demo-account > recount.json\n"
            "  metrics-agg invoke recount.json        # recounts the last two hours of Item\n"
            "  metrics-agg invoke --example stream > batch.json   # one Item created now\n"
            "  metrics-agg invoke batch.json | tail -n1 | jq .batchItemFailures\n"
            "  metrics-agg invoke --example scheduled > tick.json\n"
            "  metrics-agg invoke tick.json           # the 5-minute finalize/repair pass\n\n"
            "exit status 1 when the response reports batchItemFailures.\n\n" + ENV_HELP
        ),
    )
    p.add_argument(
        "event", type=Path, nargs="?", metavar="EVENT.json", help="the Lambda event, as JSON"
    )
    p.add_argument(
        "--example",
        choices=("stream", "recount", "scheduled"),
        help="print a current event of this kind instead of running one",
    )
    p.add_argument(
        "--account",
        default="demo-account",
        metavar="A",
        help="accountId of the --example event (default demo-account, the demo's)",
    )
    add_connection_args(p)
    p.set_defaults(func=guard("invoke", _cmd_invoke))
