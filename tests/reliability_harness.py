"""The reliability harness (issue 6): fault scenarios and sustained load on the local stack.

Shared by tests/test_reliability_*.py (short versions) and scripts/reliability.py (the
table in docs/reliability.md, `--long` for the long runs). The truth is always computed
from the tables by `truth_helpers.truth` (datetime and plain loops, not the package).

"No partial count" (docs/design.md §4.6), precisely:
- a failed *read* (source list or stored buckets) writes nothing for that unit: every
  stored bucket of the account is byte-for-byte what it was before the invocation;
- a failed *write* may leave some of the unit's buckets written and others not (requests
  and aliases succeed or fail independently), but every bucket that was written holds the
  count (and feedback metadata) of the invocation's snapshot, which with no concurrent
  writer is the truth; no bucket ever holds a value that is neither its old value nor a
  snapshot's count. Buckets of one unit may disagree with each other (a 1-minute bucket
  updated, its 60-minute bucket not) until the redelivery that the reported
  `batchItemFailures` guarantees brings all of them to the truth.
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.event_kinds import event_kind
from metrics_agg.deadline import Deadline
from metrics_agg.local.server import LocalClient, LocalStack, Store
from metrics_agg.local.server.mapping import Handler
from metrics_agg.local.server.sandboxes import Invocation
from metrics_agg.local.server.stack import BACKFILL_QUEUE
from truth_helpers import TIMESTAMP, Stream, iso, recent_now, truth, truth_problems

MODELS = tuple(TIMESTAMP)


def _bucket_start(problem: str) -> str:
    """The bucket start (``YYYY-MM-DDTHH:MM:SSZ``) in a `compare` line's composite key."""
    return problem.split(": ", 1)[0].split("#")[-2]


def compare(store: Store, account: str) -> list[str]:
    """Every stored bucket equals the truth (absent = 0) and every non-empty one is stored.

    Unlike `truth_helpers.assert_matches_truth`, `complete` is not compared."""
    return truth_problems(store, account, check_complete=False)[1]


def partial_problems(
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
    want: Mapping[str, tuple[int, Any]],
) -> tuple[int, list[str]]:
    """(buckets changed, violations of "no partial count" as defined above)."""
    import json

    changed, problems = 0, []
    for key in before.keys() - after.keys():
        problems.append(f"{key}: deleted")
    for key, item in after.items():
        if before.get(key) == item:
            continue
        changed += 1
        count, metadata = want.get(key, (0, None))
        if item["count"] != count:
            problems.append(
                f"{key}: written {item['count']}, neither old "
                f"{(before.get(key) or {}).get('count')} nor truth {count}"
            )
        raw = item.get("metadata")
        if metadata is not None and json.loads(raw) != metadata:
            problems.append(f"{key}: metadata {raw}, truth {metadata}")
    return changed, problems


@contextmanager
def captured_log(level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """The `metrics_agg` log records emitted inside the block."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level)
    logger = logging.getLogger("metrics_agg")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, old) if old else level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Scenario:
    name: str
    field: str | None
    action: str
    persistent: bool  # True: fails every attempt of this invocation -> batchItemFailures
    fault: Mapping[str, Any] = field(default_factory=dict)  # FaultPlan.add keywords
    config: Mapping[str, Any] = field(default_factory=dict)
    deadline: float = 20.0
    model: str = "Item"


LIST_ITEMS = "listItemByAccountIdAndCreatedAt"
LIST_FEEDBACK = "listFeedbackItemByAccountIdAndUpdatedAt"
STORED = "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart"
CREATE = "createAggregatedMetrics"
UPDATE = "updateAggregatedMetrics"
FAST = {"max_attempts": 3}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("HTTP 500, transient", LIST_ITEMS, "http_500", False, {"times": 2}, FAST),
    Scenario("HTTP 502, transient", UPDATE, "http_502", False, {"times": 2}, FAST),
    Scenario("HTTP 503, persistent", LIST_ITEMS, "http_503", True, {"times": None}, FAST),
    Scenario("HTTP 503, persistent", UPDATE, "http_503", True, {"times": None}, FAST),
    Scenario(
        "HTTP 429 Retry-After 0.3, transient",
        LIST_ITEMS,
        "http_429",
        False,
        {"times": 2, "retry_after": 0.3},
        FAST,
    ),
    Scenario(
        "HTTP 429 no Retry-After, persistent", STORED, "http_429", True, {"times": None}, FAST
    ),
    Scenario(
        "HTTP 429 Retry-After 60 > deadline",
        LIST_ITEMS,
        "http_429",
        True,
        {"times": None, "retry_after": 60},
        {"max_attempts": 10},
        deadline=5.0,
    ),
    Scenario(
        "timeout (server holds 3 s), transient",
        CREATE,
        "timeout",
        False,
        {"times": 1, "delay": 3.0},
        {"request_timeout": 0.5, **FAST},
    ),
    Scenario(
        "timeout, persistent, deadline 4 s",
        LIST_ITEMS,
        "timeout",
        True,
        {"times": None, "delay": 3.0},
        {"request_timeout": 0.5, "max_attempts": 50},
        deadline=4.0,
    ),
    Scenario("connection reset, transient", UPDATE, "reset", False, {"times": 1}, FAST),
    Scenario("connection reset, persistent", CREATE, "reset", True, {"times": None}, FAST),
    Scenario("malformed JSON, transient", STORED, "malformed_json", False, {"times": 1}, FAST),
    Scenario(
        "malformed JSON, persistent", LIST_ITEMS, "malformed_json", True, {"times": None}, FAST
    ),
    Scenario(
        "GraphQL error (request), persistent",
        LIST_FEEDBACK,
        "graphql_error",
        True,
        {"times": None},
        FAST,
        model="FeedbackItem",
    ),
    Scenario(
        "GraphQL errors for aliases u1,u3 (throttled), transient",
        UPDATE,
        "alias_errors",
        False,
        {"times": 1, "aliases": ("u1", "u3")},
        FAST,
    ),
    Scenario(
        "GraphQL errors for aliases u0,u2,c1 (DynamoDB error), persistent",
        None,
        "alias_errors",
        True,
        {
            "times": None,
            "aliases": ("u0", "u2", "c1"),
            "error_type": "DynamoDB:AmazonDynamoDBException",
            "message": "injected",
        },
        {**FAST, "mutations_per_request": 5},
    ),
    Scenario(
        "page 2 of the list fails, persistent",
        LIST_ITEMS,
        "http_500",
        True,
        {"times": None, "nth": 2},
        # One record per page: a stream invocation reads only its touched minutes (docs/design.md
        # §4.8), which hold a record or two here, so only a tiny page has a page 2.
        {"page_limit": 1, "read_parallelism": 1, **FAST},
    ),
    Scenario(
        "page 3 of the list fails, transient",
        LIST_ITEMS,
        "http_503",
        False,
        {"times": 1, "nth": 3},
        {"page_limit": 1, "read_parallelism": 1, **FAST},
    ),
)


@dataclass
class FaultRow:
    scenario: Scenario
    error: str  # what the handler logged for the unit ("" on success)
    changed: int  # buckets changed by the faulted invocation
    partial: list[str]  # "no partial count" violations
    requests: int
    fired: int
    failures: list[str]
    expected_failures: list[str]
    seconds: float
    final: list[str]  # mismatches with the truth after the fault cleared and redelivery
    final_failures: list[str]

    @property
    def ok(self) -> bool:
        return (
            not self.partial
            and not self.final
            and not self.final_failures
            and self.failures == self.expected_failures
        )


class Direct:
    """Writes straight into the store (with stream records, as the API's would be), so
    scenarios spend their time in the pipeline, not in seeding through HTTP."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, model: str, **fields: Any) -> dict[str, Any]:
        stamp = iso(datetime.now(UTC))
        item = {"id": new_id(), "createdAt": stamp, "updatedAt": stamp, **fields}
        return self.store.create(model, item)

    def update(self, model: str, rid: str, **fields: Any) -> dict[str, Any]:
        changes = {"updatedAt": iso(datetime.now(UTC)), **fields}
        return self.store.update(model, [rid], changes)

    def delete(self, model: str, rid: str) -> dict[str, Any]:
        return self.store.delete(model, [rid])


def _seed(
    api: LocalClient | Direct, model: str, account: str, now: datetime, rng: Random
) -> list[str]:
    ids = []
    for i in range(9):
        at = now - timedelta(minutes=3 * i + rng.randrange(3))
        ids.append(api.create(model, **_fields(model, account, at, rng))["id"])
    late = now - timedelta(hours=2, minutes=17)
    ids.append(api.create(model, **_fields(model, account, late, rng))["id"])
    return ids


def _fields(model: str, account: str, at: datetime, rng: Random) -> dict[str, Any]:
    f: dict[str, Any] = {"accountId": account}
    if model == "Item":
        f["createdAt"] = iso(at)
        kind = rng.choice(["prediction", "evaluation", None])
        if kind:
            f["createdByType"] = kind
    elif model == "FeedbackItem":
        f.update(
            updatedAt=iso(at),
            createdAt=iso(at - timedelta(hours=3)),
            scorecardId=rng.choice(["sc-1", "sc-2"]),
            scoreId=rng.choice(["s-a", "s-b"]),
            initialAnswerValue="yes",
            finalAnswerValue=rng.choice(["yes", "no"]),
            isInvalid=rng.random() < 0.2,
        )
        if rng.random() < 0.5:
            f["editedAt"] = iso(at - timedelta(seconds=20))
    elif model == "ScoreResult":
        f["updatedAt"] = iso(at)
        kind = rng.choice(["prediction", "evaluation", None])
        if kind:
            f["type"] = kind
    else:
        f["updatedAt"] = iso(at)
    return f


def _ts_field(model: str) -> str:
    return "createdAt" if model == "Item" else "updatedAt"


def run_fault_scenario(
    stack: LocalStack,
    api: LocalClient | None,
    stream: Stream,
    sc: Scenario,
    index: int,
    seed: int = 6,
) -> FaultRow:
    """Seed, deliver, change, deliver under the fault, clear it, redeliver; compare."""
    del api  # seeded directly (Direct): the API's write path is covered by the load run
    api = Direct(stack.store)
    rng = Random(seed + index)
    account = f"acct-fault-{index:02d}"
    now = recent_now()
    ids = _seed(api, sc.model, account, now, rng)
    first = stream.take(sc.model)
    assert pipeline.handle_event({"Records": first}, config=stack.config()) == {
        "batchItemFailures": []
    }, "baseline delivery failed"
    # The change under the fault: inserts, a move (within and across hours), deletes.
    for _ in range(6):
        at = now - timedelta(minutes=rng.randrange(50), seconds=rng.randrange(60))
        api.create(sc.model, **_fields(sc.model, account, at, rng))
    api.update(sc.model, ids[0], **{_ts_field(sc.model): iso(now - timedelta(minutes=70))})
    api.update(sc.model, ids[1], **{_ts_field(sc.model): iso(now - timedelta(minutes=1))})
    api.delete(sc.model, ids[2])
    api.delete(sc.model, ids[-1])  # the late record: its hour goes to zero
    records = stream.take(sc.model)
    event = {"Records": records}
    lowest = min(records, key=lambda r: int(r["dynamodb"]["SequenceNumber"]))
    expected = [lowest["dynamodb"]["SequenceNumber"]] if sc.persistent else []
    before = {m["compositeKey"]: m for m in stack.store.all_metrics(account)}
    stack.faults.clear()
    stack.faults.reset_counts()
    fault = stack.faults.add(sc.field, action=sc.action, **sc.fault)
    t0 = time.monotonic()
    with captured_log() as logged:
        response = pipeline.handle_event(
            event, config=stack.config(**sc.config), deadline=Deadline.after(sc.deadline)
        )
    seconds = time.monotonic() - t0
    requests, fired = stack.faults.requests, fault.fired
    stack.faults.clear()
    after = {m["compositeKey"]: m for m in stack.store.all_metrics(account)}
    changed, partial = partial_problems(before, after, truth(stack.store, account))
    errors = [
        r.getMessage().strip()
        for r in logged
        if r.levelno >= logging.ERROR and "✗" in r.getMessage()
    ]
    # Fault cleared: the mapping redelivers from the reported sequence number.
    again = pipeline.handle_event(event, config=stack.config())
    return FaultRow(
        scenario=sc,
        error=errors[0].split("failed: ", 1)[-1] if errors else "",
        changed=changed,
        partial=partial,
        requests=requests,
        fired=fired,
        failures=[f["itemIdentifier"] for f in response["batchItemFailures"]],
        expected_failures=expected,
        seconds=seconds,
        final=compare(stack.store, account),
        final_failures=[f["itemIdentifier"] for f in again["batchItemFailures"]],
    )


def fault_table(rows: Sequence[FaultRow]) -> str:
    head = (
        "| fault | target field | what happened | stored during the fault | requests "
        "(fault fired) | batchItemFailures | after the fault cleared | outcome |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        sc = r.scenario
        happened = r.error[:110].replace("|", "\\|") if r.error else "retried, succeeded"
        if r.partial:
            stored = f"**{len(r.partial)} partial**"
        elif r.changed == 0:
            stored = "nothing (unchanged)"
        elif sc.persistent:
            stored = f"{r.changed} bucket(s), each = truth"
        else:
            stored = f"{r.changed} bucket(s) = truth"
        failures = (
            "lowest seq of unit"
            if r.failures and r.failures == r.expected_failures
            else ("none" if not r.failures else f"**{r.failures}**")
        )
        final = (
            "= truth"
            if not r.final and not r.final_failures
            else (f"**{len(r.final)} mismatches**")
        )
        lines.append(
            f"| {sc.name} | {sc.field or 'any'} | {happened} ({r.seconds:.1f} s) | {stored} | "
            f"{r.requests} ({r.fired}) | {failures} | {final} | "
            f"{'ok' if r.ok else '**FAIL**'} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- load


@dataclass
class LoadReport:
    seconds: float
    writes: int
    inserts: int
    updates: int
    deletes: int
    late: int
    invocations: int
    failed_invocations: int
    accounts: int
    buckets: int
    mismatches: list[str]
    lags: list[float]
    undelivered: int
    idle_seconds: float
    on_failure: int
    # Summed EMF figures of the stream invocations (issue 9: cost per write).
    source_rows_read: int = 0
    http_requests: int = 0
    fallbacks: int = 0
    # The scheduled reconcile run after quiescence: buckets it corrected (0 when healthy).
    drift_repaired: int = 0
    # Buckets still differing from the truth after it: all, and within its 2-hour window.
    left_after_reconcile: int = 0
    left_in_reconcile_window: int = 0
    # Rechecks (docs/incremental.md): older hours the stream invocations queued, the
    # buckets the delayed recounts corrected, and what still differed once they had run
    # (None: the run did not wait for them).
    rechecks_queued: int = 0
    rechecks_not_queued: int = 0
    recheck_drift: int = 0
    left_after_rechecks: int | None = None
    stream_ms: float = 0.0  # summed duration of the stream invocations

    def percentile(self, p: float) -> float:
        if not self.lags:
            return float("nan")
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        lag = (
            f"lag write -> bucket written by a snapshot that includes it: "
            f"p50 {self.percentile(50):.2f} s, p99 {self.percentile(99):.2f} s, "
            f"max {max(self.lags, default=float('nan')):.2f} s over {len(self.lags)} writes"
        )
        return (
            f"{self.seconds:.0f} s of writes over {self.accounts} accounts x {len(MODELS)} "
            f"models: {self.writes} writes ({self.inserts} inserts, {self.updates} updates, "
            f"{self.deletes} deletes; {self.late} late/back-dated), {self.invocations} "
            f"invocations ({self.failed_invocations} reported failures), quiescent "
            f"{self.idle_seconds:.1f} s after the last write; {self.buckets} stored buckets, "
            f"{len(self.mismatches)} differ from the truth; {self.on_failure} records sent "
            f"to the on-failure list; {self.undelivered} writes never delivered.\n{lag}\n"
            f"{self.writes / max(self.seconds, 1e-9):.1f} writes/s; per write: "
            f"{self.invocations / max(self.writes, 1):.3f} invocations, "
            f"{self.source_rows_read / max(self.writes, 1):.2f} source rows read, "
            f"{self.http_requests / max(self.writes, 1):.2f} HTTP requests; "
            f"{self.fallbacks} hour fallbacks "
            f"({self.fallbacks / max(self.invocations, 1):.2f} per invocation); mean stream "
            f"invocation {self.stream_ms / max(self.invocations, 1):.0f} ms; "
            f"reconcile after quiescence: DriftRepaired "
            f"{self.drift_repaired}, {self.left_after_reconcile} bucket(s) still differing "
            f"({self.left_in_reconcile_window} in its window); rechecks: "
            f"{self.rechecks_queued} hour(s) queued, {self.rechecks_not_queued} not"
            + (
                ""
                if self.left_after_rechecks is None
                else f", DriftRepaired {self.recheck_drift}, {self.left_after_rechecks} "
                "bucket(s) still differing once they ran"
            )
        )


class _Lag:
    """Write times by (model, id, n-th write) and the first successful delivery of each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written: dict[tuple[str, str, int], float] = {}
        self.delivered: dict[tuple[str, str, int], float] = {}
        self.seen: dict[tuple[str, str], int] = {}
        self.ops: dict[tuple[str, str], int] = {}
        self.invocations = 0
        self.failed = 0
        self.rows_read = self.requests = self.fallbacks = 0
        self.stream_ms = 0.0  # summed DurationMs of the stream invocations
        self.rechecks_queued = self.rechecks_not_queued = self.recheck_drift = 0

    def wrote(self, model: str, rid: str, t: float) -> None:
        with self.lock:
            n = self.ops.get((model, rid), 0)
            self.ops[(model, rid)] = n + 1
            self.written[(model, rid, n)] = t

    def record(self, metrics: emf.InvocationMetrics) -> None:
        if metrics.event_kind == "stream":
            with self.lock:
                self.rows_read += metrics.source_rows_read
                self.requests += metrics.http_requests
                self.fallbacks += metrics.derivation_fallbacks
                self.stream_ms += metrics.duration_ms
                self.rechecks_queued += metrics.recheck_hours_queued
                self.rechecks_not_queued += metrics.recheck_hours_not_queued
        elif metrics.event_kind == "sqs":  # the backfill queue's mapping runs the rechecks
            with self.lock:
                self.recheck_drift += metrics.drift_repaired

    def handler(self, invoke: Callable[[dict[str, Any]], Invocation]) -> Handler:
        """The mapping's handler: ``invoke`` (the stack's, in a thread or a sandbox), with
        the invocation's metrics recorded and each delivered write's time taken."""

        def handle(event: dict[str, Any]) -> Any:
            result = invoke(event)
            if result.metrics is not None:
                self.record(result.metrics)
            response = result.response
            if event_kind(event) != "stream":  # the rechecks, from the backfill queue
                return response
            done = time.monotonic()
            failed = [int(f["itemIdentifier"]) for f in response["batchItemFailures"]]
            cut = min(failed) if failed else None
            with self.lock:
                self.invocations += 1
                self.failed += bool(failed)
                for rec in event["Records"]:
                    seq = int(rec["dynamodb"]["SequenceNumber"])
                    if cut is not None and seq >= cut:
                        break
                    model = rec["eventSourceARN"].split("table/")[1].split("-")[0]
                    rid = rec["dynamodb"]["Keys"]["id"]["S"]
                    n = self.seen.get((model, rid), 0)
                    self.seen[(model, rid)] = n + 1
                    self.delivered.setdefault((model, rid, n), done)
            return response

        return handle


def _load_writer(
    endpoint: str,
    api_key: str,
    names: Sequence[str],
    seconds: float,
    seed: int,
    w: int,
    pause: float,
) -> tuple[dict[str, int], list[tuple[str, str, float]]]:
    """One writer process of `run_load`: its tallies and (model, id, monotonic time) of
    every acknowledged write, in order."""
    stop = time.monotonic() + seconds
    rng = Random(seed * 1000 + w)
    mine: list[tuple[str, str]] = []  # (model, id) this writer owns
    counts = {"inserts": 0, "updates": 0, "deletes": 0, "late": 0}
    written: list[tuple[str, str, float]] = []
    with LocalClient(endpoint, api_key) as api:
        while time.monotonic() < stop:
            model = rng.choice(MODELS)
            account = rng.choice(names)
            now = datetime.now(UTC)
            late = rng.random() < 0.1
            at = now - (
                timedelta(hours=rng.randrange(2, 30), minutes=rng.randrange(60))
                if late
                else timedelta(seconds=rng.randrange(0, 5400))
            )
            r = rng.random()
            if r < 0.6 or len(mine) < 5:
                rid = api.create(model, **_fields(model, account, at, rng))["id"]
                mine.append((model, rid))
                counts["inserts"] += 1
            elif r < 0.85:
                model, rid = rng.choice(mine)
                fields = {_ts_field(model): iso(at)}
                if model == "FeedbackItem" and rng.random() < 0.5:
                    fields = {"editedAt": iso(at), "finalAnswerValue": rng.choice(["yes", "no"])}
                api.update(model, rid, **fields)
                counts["updates"] += 1
            else:
                model, rid = mine.pop(rng.randrange(len(mine)))
                api.delete(model, rid)
                counts["deletes"] += 1
            counts["late"] += late
            written.append((model, rid, time.monotonic()))
            if pause:
                time.sleep(pause)
    return counts, written


def run_load(
    stack_factory: Callable[..., LocalStack],
    *,
    seconds: float,
    accounts: int = 3,
    writers: int = 4,
    seed: int = 6,
    pause: float = 0.0,
    busy: int = 0,
    recheck_delay: int | None = None,
    **stack_options: Any,
) -> LoadReport:
    """Sustained writes through the API with the event source mapping on (the default
    batching unless ``stack_options`` say otherwise), then quiescence, then the scheduled
    reconcile of every account (its DriftRepaired is reported).

    ``busy`` records per (model, account) are first put in the previous and current hour and
    recounted, so the load runs into busy hours whose buckets exist (docs/design.md §7: cost
    and freshness must not grow with the hours' volume).

    ``recheck_delay`` (seconds): the rechecks' delay, and wait for them to run after the
    reconcile (their DriftRepaired and what still differs then are reported); None: the
    default delay (120 s), not waited for.
    """
    lag = _Lag()
    holder: dict[str, LocalStack] = {}
    delay = {} if recheck_delay is None else {"recheck_delay_seconds": recheck_delay}
    stack = stack_factory(
        mapping=True,
        handler=lag.handler(
            lambda event: holder["stack"].invoke(event, holder["stack"].config(**delay))
        ),
        **stack_options,
    )
    holder["stack"] = stack
    names = [f"acct-load-{i}" for i in range(accounts)]
    if busy:
        stack.fill_history(names, MODELS, busy, seed=seed)
    totals = {"inserts": 0, "updates": 0, "deletes": 0, "late": 0}
    times: list[float] = []
    # The application's writers are processes of their own (as an app's clients are),
    # so they do not share the aggregator's interpreter lock; CLOCK_MONOTONIC is one
    # clock for every process, so their write times compare with delivery times.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=writers, mp_context=spawn) as pool:
        futures = [
            pool.submit(_load_writer, stack.endpoint, stack.api_key, names, seconds, seed, w, pause)
            for w in range(writers)
        ]
        for future in futures:
            counts, written = future.result()
            for k, v in counts.items():
                totals[k] += v
            for model, rid, at in written:
                lag.wrote(model, rid, at)
                times.append(at)
    idle = stack.wait_idle(300)
    t0, last_write = min(times, default=0.0), max(times, default=0.0)
    idle_seconds = time.monotonic() - last_write
    if not idle:
        raise RuntimeError("the stack did not reach quiescence in 300 s")
    mismatches = [f"{a}: {p}" for a in names for p in compare(stack.store, a)]
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "accountIds": names}
    # With an index lag (`index_lag_ms`), the reconcile reads once the index caught up, as
    # the 5-minute schedule does for all but the last moments.
    time.sleep(stack.index_lag_ms / 1000)
    drift = pipeline.handle_event(scheduled, config=stack.config())["driftRepaired"]
    # What the reconcile left wrong: only hours outside its window (current and previous).
    window = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z")
    left = [p for a in names for p in compare(stack.store, a)]
    left_in_window = [p for p in left if _bucket_start(p) >= window]
    left_after_rechecks = None
    if recheck_delay is not None:
        deadline = time.monotonic() + recheck_delay + 300
        while stack.queues.delayed(BACKFILL_QUEUE) or not stack.wait_idle(1):
            if time.monotonic() > deadline:
                raise RuntimeError("the rechecks did not run within their delay + 300 s")
            time.sleep(0.2)
        left_after_rechecks = sum(len(compare(stack.store, a)) for a in names)
    lags = [lag.delivered[k] - t for k, t in lag.written.items() if k in lag.delivered]
    return LoadReport(
        seconds=last_write - t0,
        writes=sum(totals[k] for k in ("inserts", "updates", "deletes")),
        **totals,
        invocations=lag.invocations,
        failed_invocations=lag.failed,
        accounts=accounts,
        buckets=sum(len(stack.store.all_metrics(a)) for a in names),
        mismatches=mismatches,
        lags=lags,
        undelivered=len(lag.written.keys() - lag.delivered.keys()),
        idle_seconds=idle_seconds,
        on_failure=len(stack.store.failures()),
        source_rows_read=lag.rows_read,
        http_requests=lag.requests,
        fallbacks=lag.fallbacks,
        stream_ms=lag.stream_ms,
        drift_repaired=drift,
        left_after_reconcile=len(left),
        left_in_reconcile_window=len(left_in_window),
        rechecks_queued=lag.rechecks_queued,
        rechecks_not_queued=lag.rechecks_not_queued,
        recheck_drift=lag.recheck_drift,
        left_after_rechecks=left_after_rechecks,
    )


def run_concurrent(
    stack: LocalStack, api: LocalClient, *, rounds: int = 3, threads: int = 4, seed: int = 6
) -> list[str]:
    """Overlapping invocations racing each other and writes; then the state must be exact.

    Each round: writes to one account across all models, then the first half of each batch,
    then the same records delivered by `threads` concurrent invocations (duplicates and
    overlapping windows) while a recount of the whole window runs; the last round's
    delivery settles it.
    """
    rng = Random(seed)
    account = "acct-concurrent"
    stream = Stream(stack)
    ids: list[tuple[str, str]] = []
    failures: list[str] = []
    for rnd in range(rounds + 1):
        now = recent_now()
        for _ in range(25):
            model = rng.choice(MODELS)
            at = now - timedelta(minutes=rng.randrange(90), seconds=rng.randrange(60))
            if ids and rng.random() < 0.3:
                model, rid = ids.pop(rng.randrange(len(ids)))
                api.delete(model, rid)
            elif ids and rng.random() < 0.3:
                model, rid = rng.choice(ids)
                api.update(model, rid, **{_ts_field(model): iso(at)})
            else:
                ids.append((model, api.create(model, **_fields(model, account, at, rng))["id"]))
        events = [{"Records": r} for m in MODELS if (r := stream.take(m))]
        if rnd == rounds:  # settle: every change delivered once more, sequentially
            for e in events:
                resp = pipeline.handle_event(e, config=stack.config())
                failures += [f["itemIdentifier"] for f in resp["batchItemFailures"]]
            break
        jobs: list[Callable[[], Any]] = []
        for e in events:
            # A first half of a batch goes first, as Lambda retries a bisected batch: a
            # prefix racing *after* its full batch is not a delivery order Lambda makes,
            # and its stale INSERT image of a record the full batch deletes would be
            # merged into a later snapshot (docs/design.md §4.3); only a direct recount of that
            # minute's hour (the reconcile) would repair it (docs/design.md §4.8).
            half = {"Records": e["Records"][: max(1, len(e["Records"]) // 2)]}
            resp = pipeline.handle_event(half, config=stack.config())
            failures += [f["itemIdentifier"] for f in resp["batchItemFailures"]]
            jobs += [lambda e=e: pipeline.handle_event(e, config=stack.config())] * threads
        start = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        for model in MODELS:
            spec = {
                "accountId": account,
                "model": model,
                "start": iso(start),
                "end": iso(start + timedelta(hours=3)),
            }
            jobs.append(lambda s=spec: pipeline.handle_event({"recount": s}, config=stack.config()))
        rng.shuffle(jobs)
        results: list[Any] = []
        workers = [threading.Thread(target=lambda j=j, out=results: out.append(j())) for j in jobs]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        for r in results:
            failures += [f["itemIdentifier"] for f in r["batchItemFailures"]]
    problems = compare(stack.store, account)
    return problems + [f"failure reported: {f}" for f in failures]


def lag_stats(lags: Sequence[float]) -> tuple[float, float]:
    if not lags:
        return float("nan"), float("nan")
    q = statistics.quantiles(lags, n=100, method="inclusive")
    return q[49], q[98]


def new_id() -> str:
    return str(uuid.uuid4())
