"""`metrics-agg demo`: the whole data flow on the local stack, checked against the tables.

A realistic mix of app writes (`_demo_writes`) goes through the real GraphQL API; the local
event source mapping delivers the stream to the real handler; the stored buckets are
shown, then every one is compared with a direct count of the source tables
(`metrics_agg.local.demo.truth`, deliberately independent of the package's counter), so the demo
checks the pipeline rather than repeating it.
"""

from __future__ import annotations

__all__ = ["DemoResult", "run_demo"]

import contextlib
import logging
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.aggregator.report import fmt_count
from metrics_agg.local.demo.truth import Mismatch, compare_with_tables, direct_counts
from metrics_agg.local.demo.writes import (
    api_write,
    mix_line,
    one_more_item,
    plan_writes,
    write_edge_cases,
)
from metrics_agg.local.render import Column, Progress, can_encode, format_duration
from metrics_agg.models import SOURCE_MODELS

DEMO_ACCOUNT = "demo-account"


@dataclass(frozen=True, slots=True)
class DemoResult:
    ok: bool
    records_written: int
    buckets_checked: int
    mismatches: tuple[Mismatch, ...]
    seconds: float
    directory: Path
    caught_up: bool


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.unicode = can_encode(out, "✓✗·→▁█│")

    def __call__(self, text: str = "") -> None:
        print(text if self.unicode else text.encode("ascii", "replace").decode(), file=self.out)
        self.out.flush()


@contextlib.contextmanager
def _aggregator_log(handler: logging.Handler) -> Iterator[None]:
    """Route the aggregator's log (the `metrics_agg` logger) to `handler` only, in a block."""
    logger = logging.getLogger("metrics_agg")
    saved = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = saved


@contextlib.contextmanager
def _aggregator_log_to(path: Path) -> Iterator[None]:
    """Send the aggregator's log to a file while many invocations interleave.

    The mapping runs one handler per table concurrently (as Lambda would, in separate log
    streams); interleaved on one terminal that is noise, so the demo keeps it in a file
    and shows one invocation's log on its own afterwards.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(message)s"))
    try:
        with _aggregator_log(handler):
            yield
    finally:
        handler.close()


def _aggregator_log_shown(say: _Printer) -> contextlib.AbstractContextManager[None]:
    """Show the aggregator's log lines indented under the demo's own step."""

    class _Indented(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say("        " + self.format(record))

    return _aggregator_log(_Indented())


def run_demo(
    directory: Path | None = None,
    *,
    records: int = 300,
    out: TextIO | None = None,
    seed: int = 2024,
    batch_window: float = 0.2,
    idle_timeout: float = 60.0,
) -> DemoResult:
    """Run the demo in ``directory`` (a temporary folder when None, removed afterwards).

    Returns the outcome; ``ok`` is True only when the mapping caught up and every stored
    bucket equals the direct count of the tables.

    Raises:
        MetricsAggError: the local stack could not be started or an API write failed.
    """
    started = time.monotonic()
    stream = out if out is not None else sys.stdout
    say = _Printer(stream)
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="metrics-agg-demo-") as tmp:
            return _run(
                Path(tmp), records, say, seed, batch_window, idle_timeout, started, kept=False
            )
    directory.mkdir(parents=True, exist_ok=True)
    return _run(directory, records, say, seed, batch_window, idle_timeout, started, kept=True)


def _run(
    folder: Path,
    records: int,
    say: _Printer,
    seed: int,
    batch_window: float,
    idle_timeout: float,
    started: float,
    *,
    kept: bool,
) -> DemoResult:
    from metrics_agg import counter_backend
    from metrics_agg.local.server import LocalClient, LocalStack

    rng = random.Random(seed)
    account = DEMO_ACCOUNT
    say("metrics-agg demo: app writes -> DynamoDB-style streams -> aggregator -> exact buckets")
    say(
        f"  folder   {folder}"
        + ("  (kept)" if kept else "  (removed at exit; --keep DIR keeps it)")
    )
    say(f"  counter  {counter_backend()}")
    db_path = folder / "demo.sqlite3"
    t0 = time.monotonic()
    log_path = folder / "aggregator.log"
    # The log file outlives the stack: stopping it (at the end, or on Ctrl-C) lets the
    # mapping's last invocations finish, and their lines belong in the file, not on the
    # terminal after the demo's own last line.
    with (
        _aggregator_log_to(log_path),
        LocalStack(db_path, mapping=True, batch_window=batch_window) as stack,
    ):
        say(
            f"[1/5] Local stack at {stack.endpoint} (stream mapping on, batch window "
            f"{batch_window:g} s)  {format_duration(time.monotonic() - t0)}"
        )

        # -- 2. app writes through the API --------------------------------------------------
        t0 = time.monotonic()
        now = datetime.now(UTC)
        span = timedelta(minutes=10)
        plan = plan_writes(rng, account, now - span, span, records)
        with (
            LocalClient(stack.endpoint, stack.api_key) as client,
            Progress("      writing", total=len(plan.writes), unit="records") as progress,
        ):
            # The app's Account first, as a Plexus app has one (the daily sweep lists them).
            api_write(client, "create", "Account", {"id": account, "name": "Demo", "key": account})

            def create(entry: tuple[str, dict[str, Any]]) -> None:
                api_write(client, "create", entry[0], entry[1])
                progress.advance()

            # Four writers, like a few app servers; the mapping runs meanwhile.
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(create, plan.writes))
            edge = write_edge_cases(client, stack.store, rng, account, now, plan)
        say(
            f"[2/5] Wrote {fmt_count(len(plan.writes))} records through the GraphQL API over "
            f"a simulated {span.seconds // 60} minutes ({now - span:%H:%M} → {now:%H:%M} UTC)  "
            f"{format_duration(time.monotonic() - t0)}"
        )
        say(f"        {mix_line(plan.mix)}")
        say(f"        edge cases: {edge}")

        # -- 3. wait for the mapping ---------------------------------------------------------
        t0 = time.monotonic()
        caught_up = stack.wait_idle(idle_timeout)
        waited = format_duration(time.monotonic() - t0)
        if caught_up:
            calls = stack.mapping.invocations if stack.mapping is not None else 0
            say(
                f"[3/5] Event source mapping caught up: {calls} handler invocations  {waited}"
                f"\n        their log: {log_path}"
            )
            # One more app write, delivered on its own, so its invocation's log reads cleanly.
            say("      one more Item through the API; the aggregator's log for its stream event:")
            with (
                _aggregator_log_shown(say),
                LocalClient(stack.endpoint, stack.api_key) as client,
            ):
                api_write(client, "create", "Item", one_more_item(account, rng))
                caught_up = stack.wait_idle(idle_timeout)
            _scheduled_pass(say, stack)
        else:
            say(f"[3/5] ✗ the event source mapping did not catch up within {idle_timeout:g} s")

        # -- 4. show -------------------------------------------------------------------------
        say("[4/5] Buckets, read back through the API")
        _show(say, stack, account, now, span)

        # -- 5. verify against the tables ----------------------------------------------------
        t0 = time.monotonic()
        tables = {m: stack.store.all_records(m, account) for m in SOURCE_MODELS}
        truth = direct_counts(tables)
        checked, mismatches = compare_with_tables(stack.store.all_metrics(account), truth)
    ok = caught_up and not mismatches and checked > 0
    say(
        f"[5/5] Compared {fmt_count(checked)} stored buckets with a direct count of the "
        f"tables ({sum(len(v) for v in tables.values())} records)  "
        f"{format_duration(time.monotonic() - t0)}"
    )
    if mismatches:
        say(_mismatch_table(mismatches[:40], say.out))
        if len(mismatches) > 40:
            say(f"  ... and {len(mismatches) - 40} more")
    elapsed = time.monotonic() - started
    if ok:
        types = len({k.split("#", 1)[0] for k in truth})
        say(
            f"✓ every stored bucket matches the tables: {fmt_count(checked)} buckets, "
            f"{types} recordTypes, 4 sizes  ({format_duration(elapsed)})"
        )
    else:
        say(f"✗ {len(mismatches)} buckets differ from the tables  ({format_duration(elapsed)})")
    return DemoResult(ok, len(plan.writes), checked, tuple(mismatches), elapsed, folder, caught_up)


def _scheduled_pass(say: _Printer, stack: Any) -> None:
    """The 5-minute scheduled event, as EventBridge starts it (docs/design.md §4): it
    reconciles the pairs the stream units recorded in the activity table."""
    from metrics_agg.aggregator import pipeline

    t0 = time.monotonic()
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    out = pipeline.handle_event(event, config=stack.config())
    say(
        f"      the 5-minute scheduled pass: {out['status']}, {out['units']} active (model, "
        f"account) pair(s) read from the activity table the stream units record in, "
        f"recounted  {format_duration(time.monotonic() - t0)}"
    )


def _show(say: _Printer, stack: Any, account: str, now: datetime, span: timedelta) -> None:
    from metrics_agg.graphql.api import list_stored_buckets
    from metrics_agg.graphql.transport import GraphQLClient
    from metrics_agg.local.cli._show import render_show
    from metrics_agg.local.render import format_table, sparkline

    hour = now.replace(minute=0, second=0, microsecond=0)
    start, end = hour - timedelta(hours=4), hour + timedelta(hours=1)
    record_types = [rt for spec in SOURCE_MODELS.values() for rt in spec.record_types]
    with GraphQLClient(stack.config()) as client:
        stored = list_stored_buckets(client, account, record_types, start, end)
    first = now - span
    first_minute = first.replace(second=0, microsecond=0)
    minutes = int((now - first_minute).total_seconds() // 60) + 1
    rows = []
    for rt in record_types:
        mine = [b for b in stored if b.key.record_type == rt]
        series = [0] * minutes
        for b in mine:
            index = int((b.key.start - first_minute).total_seconds() // 60)
            if b.key.minutes == 1 and 0 <= index < minutes:
                series[index] += b.value.count
        hourly = [b for b in mine if b.key.minutes == 60]
        errors = [b.value.error_count for b in hourly if b.value.error_count is not None]
        rows.append(
            (
                rt,
                fmt_count(len(mine)),
                fmt_count(sum(b.value.count for b in hourly)),
                fmt_count(sum(errors)) if errors else "—" if say.unicode else "-",
                sparkline(series, ascii_only=not say.unicode),
            )
        )
    say(
        format_table(
            [
                Column("recordType"),
                Column("buckets", ">"),
                Column(f"records {start:%H:%M}–{end:%H:%M}", ">"),
                Column("errors", ">"),
                Column(f"per minute, {first_minute:%H:%M}–{now:%H:%M}"),
            ],
            rows,
            stream=say.out,
            indent="      ",
        )
    )
    for rt, size in (("items", 1), ("tasks", 5), ("feedbackItemsByScore", 5)):
        mine = [b for b in stored if b.key.record_type == rt]
        say()
        text = render_show(
            account,
            rt,
            mine,
            start=first_minute - timedelta(minutes=first_minute.minute % size),
            end=end,
            now=now,
            sizes=(size,),
            table_minutes=size,
            stream=say.out,
        )
        say("\n".join("      " + line if line else line for line in text.splitlines()))
    say()


def _mismatch_table(mismatches: Sequence[Mismatch], out: TextIO) -> str:
    from metrics_agg.local.render import format_table

    rows = [
        (
            m.composite_key,
            "—" if m.stored is None else fmt_count(m.stored),
            fmt_count(m.truth),
            m.reason,
        )
        for m in mismatches
    ]
    columns = [
        Column("compositeKey"),
        Column("stored", ">"),
        Column("truth", ">"),
        Column("differs in"),
    ]
    return format_table(columns, rows, stream=out, indent="  ")
