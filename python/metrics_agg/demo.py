"""`metrics-agg demo`: the whole data flow on the local stack, checked against the tables.

A realistic mix of app writes goes through the real GraphQL API; the local event source
mapping delivers the stream to the real handler; the stored buckets are shown, then every
one is compared with a direct count of the source tables. That count (`direct_counts`) is
deliberately independent of the package: `datetime.fromisoformat` and plain loops, no
`metrics_agg` counter, planner or timestamp parser, so the demo checks the pipeline
rather than repeating it.
"""

from __future__ import annotations

__all__ = [
    "DemoResult",
    "Mismatch",
    "TruthBucket",
    "compare_with_tables",
    "direct_counts",
    "run_demo",
]

import contextlib
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from metrics_agg.models import SOURCE_MODELS
from metrics_agg.render import Column, Progress, can_encode, format_count, format_duration

SIZES = (1, 5, 15, 60)
DEMO_ACCOUNT = "demo-account"
_SCORECARDS = {
    "sc-quality": ("score-tone", "score-accuracy"),
    "sc-compliance": ("score-disclosure",),
}


# --------------------------------------------------------------------------- the truth


@dataclass(frozen=True, slots=True)
class TruthBucket:
    count: int
    metadata: Mapping[str, int] | None = None


def _instant(value: object) -> datetime | None:
    """The instant of a well-formed AWSDateTime; None for absent or malformed values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _bucket_label(dt: datetime, minutes: int) -> str:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    whole = int((dt - epoch).total_seconds() // 60)
    start = epoch + timedelta(minutes=whole - whole % minutes)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_present(record: Mapping[str, Any], fields: Sequence[str]) -> object:
    for name in fields:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def direct_counts(
    records_by_model: Mapping[str, Iterable[Mapping[str, Any]]],
) -> dict[str, TruthBucket]:
    """Every non-empty bucket implied by the records, keyed by `compositeKey` (DESIGN §2).

    Written from the data contract alone: a record is placed by its model's timestamp
    (FeedbackItem: editedAt, else updatedAt, else createdAt), counted once per size in
    its recordType and in its category's recordType; feedback also per scorecard and per
    score with changed/unchanged/invalid tallies.
    """
    counts: Counter[str] = Counter()
    meta: dict[str, Counter[str]] = {}
    for model, records in records_by_model.items():
        spec = SOURCE_MODELS[model]
        fields = (
            ("editedAt", "updatedAt", "createdAt")
            if model == "FeedbackItem"
            else (spec.timestamp_fields)
        )
        for record in records:
            dt = _instant(_first_present(record, fields))
            if dt is None:
                continue
            if model == "FeedbackItem":
                initial, final = record.get("initialAnswerValue"), record.get("finalAnswerValue")
                if record.get("isInvalid") or initial is None or final is None:
                    outcome = "invalidCount"
                elif str(initial) != str(final):
                    outcome = "changedCount"
                else:
                    outcome = "unchangedCount"
                prefixes = ["feedbackItems"]
                scorecard, score = record.get("scorecardId"), record.get("scoreId")
                if isinstance(scorecard, str) and scorecard:
                    prefixes.append(f"feedbackItemsByScorecard#{scorecard}")
                    if isinstance(score, str) and score:
                        prefixes.append(f"feedbackItemsByScore#{score}")
                for minutes in SIZES:
                    label = _bucket_label(dt, minutes)
                    for prefix in prefixes:
                        key = f"{prefix}#{label}#{minutes}"
                        counts[key] += 1
                        meta.setdefault(key, Counter())[outcome] += 1
                continue
            types = [spec.record_type]
            if spec.category_field is not None:
                category = record.get(spec.category_field)
                if isinstance(category, str) and category in spec.category_record_types:
                    types.append(spec.category_record_types[category])
            for minutes in SIZES:
                label = _bucket_label(dt, minutes)
                for record_type in types:
                    counts[f"{record_type}#{label}#{minutes}"] += 1
    out: dict[str, TruthBucket] = {}
    for key, n in counts.items():
        tally = meta.get(key)
        metadata = None
        if tally is not None:
            metadata = {
                k: tally.get(k, 0) for k in ("changedCount", "unchangedCount", "invalidCount")
            }
        out[key] = TruthBucket(n, metadata)
    return out


@dataclass(frozen=True, slots=True)
class Mismatch:
    composite_key: str
    stored: int | None  # None: no such bucket stored
    truth: int
    reason: str


def _stored_metadata(raw: object) -> dict[str, int] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, Mapping):
        return None
    return {str(k): int(v) for k, v in value.items()}


def compare_with_tables(
    stored_metrics: Iterable[Mapping[str, Any]], truth: Mapping[str, TruthBucket]
) -> tuple[int, list[Mismatch]]:
    """(buckets checked, mismatches): every stored bucket against the truth (absent = 0),
    and every non-empty truth bucket that is not stored. `complete` must equal "the
    bucket had ended when the snapshot that wrote it (`updatedAt`) was taken"."""
    mismatches: list[Mismatch] = []
    seen: set[str] = set()
    checked = 0
    for item in stored_metrics:
        key = str(item["compositeKey"])
        seen.add(key)
        checked += 1
        want = truth.get(key, TruthBucket(0))
        count = int(item["count"])
        reasons = []
        if count != want.count:
            reasons.append("count")
        if str(item.get("recordType", "")).startswith("feedbackItems"):
            have_meta = _stored_metadata(item.get("metadata")) or {}
            want_meta = dict(want.metadata or {})
            names = ("changedCount", "unchangedCount", "invalidCount")
            if any(have_meta.get(n, 0) != want_meta.get(n, 0) for n in names):
                reasons.append("metadata")
        end, updated = _instant(item.get("timeRangeEnd")), _instant(item.get("updatedAt"))
        if (
            end is not None
            and updated is not None
            and bool(item.get("complete")) != (end <= updated)
        ):
            reasons.append("complete")
        if reasons:
            mismatches.append(Mismatch(key, count, want.count, ", ".join(reasons)))
    for key, want in truth.items():
        if key not in seen and want.count:
            mismatches.append(Mismatch(key, None, want.count, "not stored"))
    return checked, sorted(mismatches, key=lambda m: m.composite_key)


# --------------------------------------------------------------------------- app writes


def _api(client: Any, action: str, model: str, fields: Mapping[str, Any]) -> None:
    """One create/update/delete through the API (LocalClient raises on any error)."""
    if action == "create":
        client.create(model, **fields)
    else:
        rest = {k: v for k, v in fields.items() if k != "id"}
        getattr(client, action)(model, fields["id"], **rest)


def _aws_time(dt: datetime, rng: random.Random) -> str:
    """What Amplify clients send (`new Date().toISOString()`): milliseconds and Z.

    Offsets (`+02:00`) are valid AWSDateTime too, but AppSync stores the string as sent,
    so an index range over UTC strings cannot find them: the demo keeps to what clients
    write. (`rng` is kept for a reproducible mix of fraction widths later.)
    """
    del rng
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _one_more_item(account: str, rng: random.Random) -> dict[str, Any]:
    """A prediction Item stamped now: the stream event the demo shows the log of."""
    ts = _aws_time(datetime.now(UTC), rng)
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "accountId": account,
        "createdAt": ts,
        "updatedAt": ts,
        "createdByType": "prediction",
        "description": "demo item, shown with its aggregator log",
    }


@dataclass(slots=True)
class _Plan:
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    mix: Counter[str] = field(default_factory=Counter)


def _plan_writes(
    rng: random.Random, account: str, start: datetime, span: timedelta, n: int
) -> _Plan:
    """n creates with timestamps spread over [start, start + span), in time order."""
    plan = _Plan()
    weights = {
        "Item": 35,
        "ScoreResult": 25,
        "FeedbackItem": 20,
        "Task": 8,
        "ChatSession": 5,
        "Evaluation": 4,
        "Procedure": 3,
    }
    models = rng.choices(list(weights), weights=list(weights.values()), k=n)
    offsets = sorted(rng.random() for _ in range(n))
    for model, frac in zip(models, offsets, strict=True):
        at = start + span * frac
        ts = _aws_time(at, rng)
        record: dict[str, Any] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "accountId": account,
        }
        if model == "Item":
            kind = rng.choices(["prediction", "evaluation", None], weights=[50, 30, 20])[0]
            record |= {"createdAt": ts, "updatedAt": ts, "description": "demo item"}
            if kind is not None:
                record["createdByType"] = kind
            plan.mix[f"Item:{kind or 'other'}"] += 1
        elif model == "ScoreResult":
            kind = rng.choices(["prediction", "evaluation"], weights=[60, 40])[0]
            record |= {
                "createdAt": ts,
                "updatedAt": ts,
                "type": kind,
                "value": rng.choice(["yes", "no"]),
            }
        elif model == "FeedbackItem":
            scorecard = rng.choice(list(_SCORECARDS))
            score = rng.choice(_SCORECARDS[scorecard])
            initial = rng.choice(["yes", "no"])
            outcome = rng.choices(
                ["changed", "unchanged", "flagged", "unanswered"], weights=[30, 55, 8, 7]
            )[0]
            final: str | None = {
                "changed": "no" if initial == "yes" else "yes",
                "unanswered": None,
            }.get(outcome, initial)
            created = _aws_time(at - timedelta(minutes=rng.randint(1, 30)), rng)
            record |= {
                "scorecardId": scorecard,
                "scoreId": score,
                "createdAt": created,
                "initialAnswerValue": initial,
                "finalAnswerValue": final,
                "isInvalid": outcome == "flagged",
            }
            if rng.random() < 0.7:  # edited in the UI: editedAt places it
                record |= {"editedAt": ts, "updatedAt": ts, "editorName": "demo"}
            else:
                record["updatedAt"] = ts
            plan.mix[f"FeedbackItem:{outcome}"] += 1
        else:
            record |= {"createdAt": ts, "updatedAt": ts}
            if model == "Task":
                record["status"] = "COMPLETED"
        plan.mix[model] += 1
        plan.writes.append((model, record))
    return plan


# --------------------------------------------------------------------------- the run


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


def _mix_line(mix: Counter[str]) -> str:
    items = ", ".join(
        f"{mix[f'Item:{k}']} {k}" for k in ("prediction", "evaluation", "other") if mix[f"Item:{k}"]
    )
    feedback = ", ".join(
        f"{mix[f'FeedbackItem:{k}']} {k}"
        for k in ("changed", "unchanged", "flagged", "unanswered")
        if mix[f"FeedbackItem:{k}"]
    )
    parts = [
        f"Item {mix['Item']} ({items})",
        f"ScoreResult {mix['ScoreResult']}",
        f"FeedbackItem {mix['FeedbackItem']} ({feedback})",
    ]
    parts += [f"{m} {mix[m]}" for m in ("Task", "ChatSession", "Evaluation", "Procedure") if mix[m]]
    return " · ".join(parts)


@contextlib.contextmanager
def _aggregator_log_to(path: Path) -> Iterator[None]:
    """Send the aggregator's log to a file while many invocations interleave.

    The mapping runs one handler per table concurrently (as Lambda would, in separate log
    streams); interleaved on one terminal that is noise, so the demo keeps it in a file
    and shows one invocation's log on its own afterwards.
    """
    logger = logging.getLogger("metrics_agg")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(message)s"))
    saved = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate, logger.level = saved


@contextlib.contextmanager
def _aggregator_log_shown(say: _Printer) -> Iterator[None]:
    """Show the aggregator's log lines indented under the demo's own step."""

    class _Indented(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say("        " + self.format(record))

    logger = logging.getLogger("metrics_agg")
    handler = _Indented()
    saved = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = saved


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
    from metrics_agg.local_server import LocalClient, LocalStack

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
    with (
        LocalStack(db_path, mapping=True, batch_window=batch_window) as stack,
        _aggregator_log_to(log_path),
    ):
        say(
            f"[1/5] Local stack at {stack.endpoint} (stream mapping on, batch window "
            f"{batch_window:g} s)  {format_duration(time.monotonic() - t0)}"
        )

        # -- 2. app writes through the API --------------------------------------------------
        t0 = time.monotonic()
        now = datetime.now(UTC)
        span = timedelta(minutes=10)
        plan = _plan_writes(rng, account, now - span, span, records)
        with (
            LocalClient(stack.endpoint, stack.api_key) as client,
            Progress("      writing", total=len(plan.writes), unit="records") as progress,
        ):

            def create(entry: tuple[str, dict[str, Any]]) -> None:
                _api(client, "create", entry[0], entry[1])
                progress.advance()

            # Four writers, like a few app servers; the mapping runs meanwhile.
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(create, plan.writes))
            edge = _edge_cases(client, stack.store, rng, account, now, plan)
        say(
            f"[2/5] Wrote {format_count(len(plan.writes))} records through the GraphQL API over "
            f"a simulated {span.seconds // 60} minutes ({now - span:%H:%M} → {now:%H:%M} UTC)  "
            f"{format_duration(time.monotonic() - t0)}"
        )
        say(f"        {_mix_line(plan.mix)}")
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
                _api(client, "create", "Item", _one_more_item(account, rng))
                caught_up = stack.wait_idle(idle_timeout)
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
        f"[5/5] Compared {format_count(checked)} stored buckets with a direct count of the "
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
            f"✓ every stored bucket matches the tables: {format_count(checked)} buckets, "
            f"{types} recordTypes, 4 sizes  ({format_duration(elapsed)})"
        )
    else:
        say(f"✗ {len(mismatches)} buckets differ from the tables  ({format_duration(elapsed)})")
    return DemoResult(ok, len(plan.writes), checked, tuple(mismatches), elapsed, folder, caught_up)


def _edge_cases(
    client: Any, store: Any, rng: random.Random, account: str, now: datetime, plan: _Plan
) -> str:
    """The records that make counting hard, written after the mix (DESIGN §4)."""
    ms = timedelta(milliseconds=1)
    # A task created, then updated: its updatedAt moves it 5 minutes later (MODIFY).
    task_id = str(uuid.UUID(int=rng.getrandbits(128)))
    first = _aws_time(now - timedelta(minutes=8), rng)
    _api(
        client,
        "create",
        "Task",
        {
            "id": task_id,
            "accountId": account,
            "createdAt": first,
            "updatedAt": first,
            "status": "RUNNING",
        },
    )
    _api(
        client,
        "update",
        "Task",
        {
            "id": task_id,
            "status": "COMPLETED",
            "updatedAt": _aws_time(now - timedelta(minutes=3), rng),
        },
    )
    # An item deleted again (REMOVE: its bucket must go back down).
    victim = next(r for m, r in plan.writes if m == "Item")
    _api(client, "delete", "Item", {"id": victim["id"]})
    # A reviewer changes an answer: the feedback item moves to "now" and to "changed".
    feedback = next((r for m, r in plan.writes if m == "FeedbackItem"), None)
    if feedback is not None:
        initial = feedback.get("initialAnswerValue") or "yes"
        _api(
            client,
            "update",
            "FeedbackItem",
            {
                "id": feedback["id"],
                "finalAnswerValue": "no" if initial == "yes" else "yes",
                "isInvalid": False,
                "editedAt": _aws_time(now - ms, rng),
            },
        )
    # An item that arrives three hours late (its old hour must be recounted).
    late = _aws_time(now - timedelta(hours=3, minutes=rng.randint(0, 50)), rng)
    _api(
        client,
        "create",
        "Item",
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "accountId": account,
            "createdAt": late,
            "updatedAt": late,
            "createdByType": "prediction",
        },
    )
    # A timestamp AppSync would reject today, from data written before validation existed:
    # it goes straight into the table (and its stream), and must be counted as invalid.
    stamp = _aws_time(now, rng)
    store.create(
        "Item",
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "accountId": account,
            "createdAt": "2024-02-30T10:00:00Z",
            "updatedAt": stamp,
            "createdByType": "prediction",
            "description": "legacy import",
        },
    )
    return (
        "1 task moved 5 min later (update), 1 item deleted, 1 answer changed, "
        f"1 item 3 h late ({late[11:16]} UTC), 1 invalid createdAt (2024-02-30, written "
        "to the table directly as legacy data)"
    )


def _show(say: _Printer, stack: Any, account: str, now: datetime, span: timedelta) -> None:
    from metrics_agg.cli._show import render_show
    from metrics_agg.graphql.api import list_stored_buckets
    from metrics_agg.graphql.transport import GraphQLClient
    from metrics_agg.render import format_table, sparkline

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
        hourly = sum(b.value.count for b in mine if b.key.minutes == 60)
        rows.append(
            (
                rt,
                format_count(len(mine)),
                format_count(hourly),
                sparkline(series, ascii_only=not say.unicode),
            )
        )
    say(
        format_table(
            [
                Column("recordType"),
                Column("buckets", ">"),
                Column("records", ">"),
                Column(f"per minute, {first_minute:%H:%M}–{now:%H:%M}"),
            ],
            rows,
            stream=say.out,
            indent="      ",
        )
    )
    for rt, size in (("items", 1), ("feedbackItemsByScore", 5)):
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
    from metrics_agg.render import format_table

    rows = [
        (
            m.composite_key,
            "—" if m.stored is None else format_count(m.stored),
            format_count(m.truth),
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
