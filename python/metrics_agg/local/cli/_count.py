"""`metrics-agg count`: count a JSON-lines file of records offline (docs/design.md §3).

Useful on its own for recounting exported data, and the quick start's first command.
Each line is one JSON object; a line that is not valid JSON, or not an object, counts
as an invalid record (bad data is counted, never fatal).
"""

from __future__ import annotations

__all__ = ["count_file", "read_records", "register", "render_summary", "result_json"]

import argparse
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson

from metrics_agg.counter.api import count_records, counter_backend
from metrics_agg.errors import MetricsAggError
from metrics_agg.local.cli._common import INSTANT_FORMS, instant_arg, widen
from metrics_agg.local.cli._guard import describe_os_error
from metrics_agg.models import BUCKET_SIZES, CountResult
from metrics_agg.timestamps import format_bucket_time

_LINE_EXAMPLE = 60


def read_records(stream: Any) -> list[object]:
    """Records of a JSON-lines byte stream; blank lines are skipped, bad lines kept as
    their (truncated) text so they count as invalid and show up as examples."""
    records: list[object] = []
    for raw in stream:
        line = raw.strip()
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            records.append(line[:_LINE_EXAMPLE].decode("utf-8", "replace"))
    return records


def count_file(
    path: str,
    start: datetime,
    end: datetime,
    *,
    fields: Sequence[str] = ("createdAt",),
    category_field: str | None = None,
    sizes: Sequence[int] = BUCKET_SIZES,
    backend: str = "auto",
) -> CountResult:
    """Count the records of a JSON-lines file (``-``: stdin).

    Raises:
        OSError: the file cannot be read.
        ValueError: a window or sizes that break the counting contract.
    """
    if path == "-":
        records = read_records(sys.stdin.buffer)
    else:
        with Path(path).open("rb") as stream:
            records = read_records(stream)
    return count_records(
        records,
        start,
        end,
        fields=fields,
        category_field=category_field,
        sizes=sizes,
        backend=backend,  # type: ignore[arg-type]
    )


def _n(value: int) -> str:
    return f"{value:,}"


def _check_size(result: CountResult) -> int:
    return 1 if 1 in result.sizes else min(result.sizes)


def render_summary(
    result: CountResult, source: str, fields: Sequence[str], backend: str, out: TextIO
) -> bool:
    """Print the human summary; False when the cross-check fails (a counter bug)."""
    total = result.processed + result.missing + result.invalid + result.outside_window
    window = f"[{format_bucket_time(result.window_start)}, {format_bucket_time(result.window_end)})"
    print(
        f"Counted {_n(total)} records from {source} by {' / '.join(fields)} "
        f"in {window} ({backend} counter)",
        file=out,
    )
    print(
        f"  processed {_n(result.processed)} · missing {_n(result.missing)} · "
        f"invalid {_n(result.invalid)} · outside window {_n(result.outside_window)}",
        file=out,
    )
    if result.invalid_examples:
        print(f"  invalid timestamps, e.g. {', '.join(result.invalid_examples)}", file=out)
    size = _check_size(result)
    in_buckets = sum(result.counts[size])
    ok = in_buckets == result.processed and all(
        sum(result.counts[s]) == result.processed for s in result.sizes
    )
    print(
        f"  Cross-check: {_n(in_buckets)} in {size}-min buckets vs "
        f"{_n(result.processed)} records {'✓' if ok else '✗'}",
        file=out,
    )
    for s in result.sizes:
        counts = result.counts[s]
        nonempty = sum(1 for c in counts if c)
        line = f"  {f'{s}-min':>7}  {nonempty:>5}/{len(counts):<5} non-empty  Σ{_n(sum(counts))}"
        if nonempty:
            peak = max(range(len(counts)), key=counts.__getitem__)
            at = result.window_start + timedelta(minutes=peak * s)
            line += f"  peak {_n(counts[peak])} at {format_bucket_time(at)}"
        print(line, file=out)
    if result.category_counts:
        print("  by category:", file=out)
        width = max(len(str(label)) for label in result.category_counts)
        biggest = max(result.sizes)
        for label, per_size in result.category_counts.items():
            name = "(none)" if label is None else str(label)
            print(f"    {name:<{max(width, 6)}}  Σ{_n(sum(per_size[biggest]))}", file=out)
    return ok


def result_json(result: CountResult, fields: Sequence[str], backend: str) -> dict[str, Any]:
    """Everything counted, with every bucket's start, as plain JSON values."""
    return {
        "window": {
            "start": format_bucket_time(result.window_start),
            "end": format_bucket_time(result.window_end),
        },
        "fields": list(fields),
        "backend": backend,
        "processed": result.processed,
        "missing": result.missing,
        "invalid": result.invalid,
        "outside_window": result.outside_window,
        "invalid_examples": list(result.invalid_examples),
        "sizes": list(result.sizes),
        "counts": {str(size): result.counts[size] for size in result.sizes},
        "categories": [
            {"category": label, "counts": {str(s): per_size[s] for s in result.sizes}}
            for label, per_size in result.category_counts.items()
        ],
    }


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of minutes: {text!r}"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("at least one size is required")
    return sizes


def _run(args: argparse.Namespace) -> int:
    fields: list[str] = []
    for value in args.field or ["createdAt"]:
        fields.extend(name.strip() for name in value.split(",") if name.strip())
    if args.end <= args.start:
        print("metrics-agg count: --end must be after --start", file=sys.stderr)
        return 2
    if any(size <= 0 for size in args.sizes):
        print("metrics-agg count: --sizes must be positive whole minutes", file=sys.stderr)
        return 2
    start, end, widened = widen(args.start, args.end, math.lcm(*args.sizes))
    if widened:
        print(f"metrics-agg count: {widened}", file=sys.stderr)
    try:
        backend = counter_backend() if args.backend == "auto" else args.backend
        result = count_file(
            args.file,
            start,
            end,
            fields=fields,
            category_field=args.category_field,
            sizes=args.sizes,
            backend=backend,
        )
    except OSError as exc:
        print(f"metrics-agg count: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except (ValueError, MetricsAggError) as exc:
        print(f"metrics-agg count: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(result_json(result, fields, backend), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    source = "stdin" if args.file == "-" else args.file
    return 0 if render_summary(result, source, fields, backend, sys.stdout) else 1


def register(sub: Any) -> None:
    """Add `count` to the `metrics-agg` parser."""
    p = sub.add_parser(
        "count",
        help="count a JSON-lines file of records into 1/5/15/60-minute buckets, offline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Count records (one JSON object per line) by a timestamp field into buckets\n"
            "aligned to the Unix epoch, exactly as the aggregator does, and print the\n"
            "cross-check and per-size totals (or, with --json, every bucket)."
        ),
        epilog=(
            "examples:\n"
            "  metrics-agg count examples/items.jsonl --start 2024-05-07T12:00Z "
            "--end 2024-05-07T14:00Z\n"
            "  metrics-agg count examples/items.jsonl --start 2024-05-07T12:00Z "
            "--end 2024-05-07T14:00Z \\\n"
            '      --category-field createdByType --json | jq .counts.\\"60\\"\n'
            "  metrics-agg count examples/items.jsonl --start 2024-05-07 --end 2024-05-08\n"
            "  zcat export.jsonl.gz | metrics-agg count - --start -1d --end now "
            "--field editedAt,updatedAt,createdAt\n\n"
            "exit status: 0 counted; 1 cross-check failed; 2 bad arguments or unreadable input."
        ),
    )
    p.add_argument("file", metavar="FILE|-", help="JSON-lines file, or - for stdin")
    p.add_argument(
        "--start",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help=f"window start: {INSTANT_FORMS}; widened to whole buckets of every size",
    )
    p.add_argument(
        "--end",
        required=True,
        type=instant_arg,
        metavar="TIME",
        help="window end, exclusive, in the same forms; widened to whole buckets",
    )
    p.add_argument(
        "--field",
        action="append",
        metavar="NAME[,NAME...]",
        help="timestamp field; several (repeat or comma-separate) are tried in "
        "order, the first present and non-empty wins (default: createdAt)",
    )
    p.add_argument(
        "--category-field",
        metavar="NAME",
        help="also count per value of this field (e.g. createdByType)",
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=BUCKET_SIZES,
        metavar="N,N,...",
        help="bucket sizes in minutes (default: 1,5,15,60)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "rust", "python"),
        default="auto",
        help="counting loop (default: auto, i.e. METRICS_AGG_COUNTER or rust when built)",
    )
    p.add_argument("--json", action="store_true", help="print every count as one JSON object")
    p.set_defaults(func=_run)
