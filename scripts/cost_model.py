"""What the aggregator spends per million source writes, measured on the local stack.

    .venv/bin/python scripts/cost_model.py                   # the whole table (docs/cost.md)
    .venv/bin/python scripts/cost_model.py --quick           # a small subset (CI, tests)
    .venv/bin/python scripts/cost_model.py --rates 100 --accounts 50 --windows 1 --seconds 30
    .venv/bin/python scripts/cost_model.py --markdown --json out.json

Every row is one workload (writes/s x accounts touched x batching window) run for
``--seconds`` against a fresh local stack per invocation path ("shared" and "per-unit",
METRICS_AGG_INVOCATION_PATH), both in the same run, from the same warmed-up database and
the same seeded sequence of writes. The writes go straight into the store with their
stream records (the application's own path is not what is measured); the stream mapping
delivers them with the row's batching window; the store meters DynamoDB capacity units
(`metrics_agg.local.server.capacity`); the GraphQL server and the local SQS count
requests; each invocation is timed. `metrics_agg.cost` turns the totals into figures per
million writes and dollars.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metrics_agg.aggregator.event_kinds import event_kind
from metrics_agg.cost import PRICES, Usage, application_cost, per_million, price
from metrics_agg.local.server import LocalStack
from metrics_agg.local.server.stack import BACKFILL_QUEUE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_workload import CATEGORY, MODELS, Workload, Writer, accounts, copy_db, warm_database

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("per-unit", "shared")
METRICS_TABLE = "AggregatedMetrics-local-NONE"


def template_memory_mb(template: Path = ROOT / "template.yaml") -> int:
    """The template's MemorySize default (MB): what GB-seconds are billed at."""
    lines = template.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "MemorySize:" and line.startswith("  ") and not line.startswith("   "):
            for follow in lines[i + 1 : i + 8]:
                if follow.strip().startswith("Default:"):
                    return int(follow.split(":", 1)[1])
    raise ValueError(f"no MemorySize parameter default in {template}")


@dataclass
class Measured:
    """One (workload, path) run: raw totals, then figures per million writes and dollars."""

    path: str
    workload: dict[str, Any]
    writes: dict[str, int]
    usage: dict[str, Any]
    per_million: dict[str, float]
    dollars: dict[str, float]
    elapsed: float
    drained: bool
    invocation_ms_p50: float
    invocations_http_requests: int  # as the invocations themselves counted them (EMF)
    buckets_written_emf: int
    rechecks_queued: int
    late_inserts: int
    notes: list[str] = field(default_factory=list)


def run_path(
    workload: Workload, path: str, db: Path, *, latency_ms: float = 0, recheck_delay: int = 0
) -> Measured:
    """Run `workload` against a stack over `db` (already warmed) with one invocation path."""
    memory = template_memory_mb()
    durations: list[float] = []
    lock = threading.Lock()
    tallies = {"stream": 0, "sqs": 0, "requests": 0, "fallbacks": 0, "buckets": 0, "rechecks": 0}
    holder: dict[str, LocalStack] = {}

    def handler(event: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        config = holder["stack"].config(invocation_path=path, recheck_delay_seconds=recheck_delay)
        result = holder["stack"].invoke(event, config)
        took = time.perf_counter() - t0
        with lock:
            durations.append(took)
            kind = event_kind(event)
            tallies["stream" if kind == "stream" else "sqs"] += 1
            if result.metrics is not None:
                tallies["requests"] += result.metrics.http_requests
                tallies["fallbacks"] += result.metrics.derivation_fallbacks
                tallies["buckets"] += result.metrics.buckets_written
                tallies["rechecks"] += result.metrics.recheck_hours_queued
        return result.response

    stack = LocalStack(db, mapping=True, batch_window=workload.window, handler=handler,
                       latency_ms=latency_ms)  # fmt: skip
    holder["stack"] = stack
    notes: list[str] = []
    try:
        stack.start()
        meter = stack.store.meter_capacity()
        stack.faults.reset_counts()
        stack.queues.requests.clear()
        writer = Writer(workload, stack.store, accounts(workload.accounts))
        total = max(1, round(workload.rate * workload.seconds))
        t0 = time.monotonic()
        for i in range(total):
            wait = t0 + i / workload.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            writer.one()
        behind = time.monotonic() - (t0 + (total - 1) / workload.rate)
        if behind > 1:
            notes.append(f"writer finished {behind:.1f} s late")
        deadline = time.monotonic() + 300
        drained = False
        while time.monotonic() < deadline:
            if stack.wait_idle(5) and not stack.queues.delayed(BACKFILL_QUEUE):
                drained = True
                break
        elapsed = time.monotonic() - t0
        usage_by_table = meter.usage()
        requests = stack.faults.requests
        sqs = sum(stack.queues.requests.values())
    finally:
        stack.stop()
    metrics = usage_by_table.get(METRICS_TABLE)
    sources = [u for t, u in usage_by_table.items() if t != METRICS_TABLE]
    usage = Usage(
        writes=sum(writer.counts.values()),
        invocations=tallies["stream"] + tallies["sqs"],
        appsync_operations=requests,
        source_rows_read=sum(u.rows_read for u in sources),
        source_read_units=sum(u.read_units() for u in sources),
        metrics_rows_read=metrics.rows_read if metrics else 0,
        metrics_read_units=metrics.read_units() if metrics else 0.0,
        bucket_writes=(metrics.items_written + metrics.failed_writes) if metrics else 0,
        bucket_write_units=metrics.write_units if metrics else 0,
        gsi_writes=metrics.gsi_writes if metrics else 0,
        gsi_write_units=metrics.gsi_write_units if metrics else 0,
        lambda_seconds=sum(durations),
        memory_mb=memory,
        sqs_requests=sqs,
        fallbacks=tallies["fallbacks"],
        stream_invocations=tallies["stream"],
    )
    figures = per_million(usage)
    bill = price(figures)
    durations.sort()
    return Measured(
        path=path,
        workload=asdict(workload),
        writes=dict(writer.counts),
        usage=asdict(usage),
        per_million=asdict(figures),
        dollars={**asdict(bill), "total": bill.total},
        elapsed=elapsed,
        drained=drained,
        invocation_ms_p50=1000 * durations[len(durations) // 2] if durations else 0.0,
        invocations_http_requests=tallies["requests"],
        buckets_written_emf=tallies["buckets"],
        rechecks_queued=tallies["rechecks"],
        late_inserts=writer.late,
        notes=notes,
    )


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The table is the output: the aggregator's log lines are muted while a row runs
    (and the logger is left as it was, for callers such as the tests)."""
    logger = logging.getLogger("metrics_agg")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_row(
    workload: Workload,
    paths: tuple[str, ...],
    *,
    latency_ms: float = 0,
    recheck_delay: int = 0,
    warm: Path | None = None,
) -> list[Measured]:
    """One row: each path on its own copy of one warmed database (`warm`, or a fresh one)."""
    with _quiet_logs(), tempfile.TemporaryDirectory() as tmp:
        if warm is None:
            warm = Path(tmp) / "warm.sqlite3"
            warm_database(warm, workload)
        out = []
        for p in paths:
            db = Path(tmp) / f"{p}.sqlite3"
            copy_db(warm, db)
            out.append(
                run_path(workload, p, db, latency_ms=latency_ms, recheck_delay=recheck_delay)
            )
        return out


# --------------------------------------------------------------------------- output

COLUMNS = (
    ("AppSync ops", "appsync_operations", 0),
    ("source rows", "source_rows_read", 0),
    ("source RRU", "source_read_units", 0),
    ("bucket rows read", "metrics_rows_read", 0),
    ("bucket RRU", "metrics_read_units", 0),
    ("bucket writes", "bucket_writes", 0),
    ("WRU (+GSI)", "write_units", 0),
    ("invocations", "invocations", 0),
    ("GB-s", "gb_seconds", 1),
    ("SQS req", "sqs_requests", 0),
)


def _label(m: Measured) -> str:
    return Workload(**{**m.workload, "models": tuple(m.workload["models"])}).label


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def table(rows: list[list[Measured]], *, markdown: bool) -> str:
    head = [
        "workload",
        "path",
        "writes",
        *(c[0] for c in COLUMNS),
        "writes/batch",
        "fallbacks/inv",
        "$ x86",
        "$ arm64",
        "x app",
    ]
    app = application_cost().total
    body: list[list[str]] = []
    for row in rows:
        for m in row:
            pm = m.per_million
            arm = (
                m.dollars["total"]
                - m.dollars["lambda_compute"]
                + pm["gb_seconds"] * PRICES.lambda_per_gb_second_arm64
            )
            body.append([
                _label(m), m.path, str(sum(m.writes.values())),
                *(_fmt(pm[key], d) for _, key, d in COLUMNS),
                f"{m.usage['writes'] / max(1, m.usage['stream_invocations']):.1f}",
                f"{pm['fallbacks_per_invocation']:.2f}",
                f"{m.dollars['total']:.2f}", f"{arm:.2f}", f"{m.dollars['total'] / app:.1f}",
            ])  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small row (CI, tests)")
    parser.add_argument("--rates", default="1,10,100", help="writes/s, comma-separated")
    parser.add_argument("--accounts", default="1,10,50", help="accounts touched")
    parser.add_argument("--windows", default="1,10", help="batching windows, seconds")
    parser.add_argument("--paths", default=",".join(PATHS), help="invocation paths")
    parser.add_argument("--seconds", type=float, default=10.0, help="writing time per run")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--late", type=float, default=0.05, help="share of back-dated inserts")
    parser.add_argument("--warm", type=int, default=20, help="records per pair already counted")
    parser.add_argument("--latency-ms", type=float, default=0, help="added per GraphQL request")
    parser.add_argument("--recheck-delay", type=int, default=0, help="rechecks' delay (s)")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at once (processes)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--markdown", action="store_true", help="a markdown table")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.accounts, args.windows, args.seconds = (
            "10",
            "3",
            "1",
            min(args.seconds, 4.0),
        )
    paths = tuple(p.strip() for p in args.paths.split(","))
    if bad := [p for p in paths if p not in PATHS]:
        parser.error(f"unknown path(s) {bad}; choose from {PATHS}")
    models = tuple(m.strip() for m in args.models.split(","))
    if bad := [m for m in models if m not in (*CATEGORY, "Task")]:
        parser.error(f"the workload writes Item, ScoreResult and Task only, not {bad}")
    workloads = [
        Workload(float(r), int(a), float(w), args.seconds, models, args.late, args.seed, args.warm)
        for r, a, w in itertools.product(
            args.rates.split(","), args.accounts.split(","), args.windows.split(",")
        )
    ]
    options = {"latency_ms": args.latency_ms, "recheck_delay": args.recheck_delay}
    t0 = time.monotonic()
    if args.jobs > 1:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
            rows = list(pool.map(_run_row_args, [(w, paths, options) for w in workloads]))
    else:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            warmed: dict[int, Path] = {}  # one warm-up per number of accounts
            for w in workloads:
                if w.accounts not in warmed:
                    warmed[w.accounts] = Path(tmp) / f"warm-{w.accounts}.sqlite3"
                    with _quiet_logs():
                        warm_database(warmed[w.accounts], w)
                rows.append(run_row(w, paths, warm=warmed[w.accounts], **options))
                print(f"... {w.label}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    took = time.monotonic() - t0
    out = sys.stdout if args.json != "-" else sys.stderr
    print(table(rows, markdown=args.markdown), file=out)
    app = application_cost()
    print(
        f"\nper million source writes; prices {PRICES.region} as of {PRICES.as_of}; "
        f"the application's own writes: ${app.total:.3f} per million (1 AppSync mutation + "
        f"1 WRU each); Lambda {template_memory_mb()} MB; {len(workloads)} row(s) x "
        f"{len(paths)} path(s) in {took:.0f} s",
        file=out,
    )
    for row in rows:
        for m in row:
            if not m.drained or m.notes:
                what = ["not drained"] * (not m.drained) + m.notes
                print(f"note: {_label(m)} {m.path}: {'; '.join(what)}", file=out)
    if args.json:
        doc = {
            "prices": asdict(PRICES),
            "application_per_million": {**asdict(app), "total": app.total},
            "seconds": took,
            "rows": [[asdict(m) for m in row] for row in rows],
        }
        text = json.dumps(doc, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if all(m.drained for row in rows for m in row) else 1


def _run_row_args(a: tuple[Workload, tuple[str, ...], dict[str, Any]]) -> list[Measured]:
    return run_row(a[0], a[1], **a[2])


if __name__ == "__main__":
    sys.exit(main())
