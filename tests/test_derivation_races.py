"""Derived 5/15/60-minute buckets stay exact when invocations interleave (docs/design.md §4.8).

Two or three stream invocations touch different minutes of one hour. Each runs in its own
thread against the in-memory fake api, and a scheduler lets exactly one of them run one
step at a time (stored read, source read, 1-minute writes, derivation read, coarser
writes: `incremental.STEPS`), in a given order. Every order of two invocations is run,
and a seeded sample of the orders of three; each must end with every stored bucket equal
to a count of the source records made here with plain loops.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator import pipeline
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.incremental import STEPS, run_stream_unit
from metrics_agg.aggregator.plan import plan_units
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import TransportError
from metrics_agg.local.server.streams import build_record, with_sequence
from metrics_agg.models import UnitKey, WorkUnit

CONFIG = Config(endpoint="http://fake")
ACCOUNT = "acct-race"
TABLE = "Item-race-NONE"
CATEGORY = {"prediction": "predictionItems", "evaluation": "evaluationItems"}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _truth(rows: Sequence[dict[str, Any]]) -> Counter[str]:
    """Count per composite key, every size, with datetime and plain loops."""
    out: Counter[str] = Counter()
    for row in rows:
        at = datetime.fromisoformat(row["createdAt"].replace("Z", "+00:00"))
        types = ["items"]
        if row.get("createdByType") in CATEGORY:
            types.append(CATEGORY[row["createdByType"]])
        for size in (1, 5, 15, 60):
            start = at.replace(second=0, microsecond=0)
            start -= timedelta(minutes=(start.hour * 60 + start.minute) % size)
            for t in types:
                out[f"{t}#{start:%Y-%m-%dT%H:%M:%S}Z#{size}"] += 1
    return out


def _problems(fake: FakeApi) -> list[str]:
    truth = _truth([r for r in fake.records.get("Item", []) if r["accountId"] == ACCOUNT])
    stored = {ck: sb.value.count for (acct, ck), sb in fake.stored.items() if acct == ACCOUNT}
    keys = set(stored) | {k for k, v in truth.items() if v}
    return sorted(
        f"{k}: stored {stored.get(k)}, truth {truth.get(k, 0)}"
        for k in keys
        if stored.get(k, 0) != truth.get(k, 0)
    )


class Clock:
    """Strictly increasing snapshot/read times (one microsecond apart per call)."""

    def __init__(self, start: datetime) -> None:
        self._next = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._next += timedelta(microseconds=1)
            return self._next


class Scheduler:
    """Runs the steps of several invocations one at a time, in ``order`` (invocation
    indices). A step runs from the `pause` call naming it to that invocation's next
    `pause` call (or its end); steps named in ``merge`` continue the previous one."""

    def __init__(self, order: Sequence[int], merge: frozenset[str] = frozenset()) -> None:
        self.order = list(order)
        self.merge = merge
        self.pos = 0
        self.running: int | None = None
        self.done: set[int] = set()
        self.cond = threading.Condition()

    def _skip_finished(self) -> None:
        while self.pos < len(self.order) and self.order[self.pos] in self.done:
            self.pos += 1

    def pause(self, who: int) -> Callable[[str], None]:
        def hook(step: str) -> None:
            if step in self.merge:
                return
            with self.cond:
                if self.running == who:
                    self.running = None
                    self.cond.notify_all()

                def my_turn() -> bool:
                    self._skip_finished()
                    return self.running is None and (
                        self.pos >= len(self.order) or self.order[self.pos] == who
                    )

                assert self.cond.wait_for(my_turn, timeout=10), "scheduler stuck"
                self.running = who
                self.pos += 1

        return hook

    def finish(self, who: int) -> None:
        with self.cond:
            self.done.add(who)
            if self.running == who:
                self.running = None
            self.cond.notify_all()

    def run(self, count: int, body: Callable[[int], None]) -> None:
        """``body(i)`` for each of ``count`` invocations, each in its own thread, taking
        turns by ``order``; the first error any of them raised is raised here."""
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                body(i)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                self.finish(i)

        threads = [threading.Thread(target=one, args=(i,), name=f"inv-{i}") for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if errors:
            raise errors[0]


def _interleavings(n: int, steps: int) -> Iterator[tuple[int, ...]]:
    """Every order of ``n`` invocations of ``steps`` steps each (multiset permutations)."""
    slots = n * steps
    if n == 1:
        yield (0,) * steps
        return
    for mine in itertools.combinations(range(slots), steps):
        for rest in _interleavings(n - 1, steps):
            it = iter(rest)
            yield tuple(0 if i in mine else next(it) + 1 for i in range(slots))


def _record(at: datetime, rid: str, kind: str | None = None) -> dict[str, Any]:
    row = {"id": rid, "accountId": ACCOUNT, "createdAt": _iso(at), "updatedAt": _iso(at)}
    if kind:
        row["createdByType"] = kind
    return row


def _unit(
    old: dict[str, Any] | None, new: dict[str, Any] | None, seq: int, now: datetime
) -> WorkUnit:
    record = with_sequence(
        build_record(TABLE, "race", {"id": (new or old or {})["id"]}, old, new), seq
    )
    (unit,) = plan_units(parse_batch({"Records": [record]}), now=now, max_hours_back=168)
    assert unit.key == UnitKey("Item", ACCOUNT)
    return unit


def aggregate(account: str, hour: datetime) -> None:
    """Recount ``hour`` of ``account``'s Items directly, as the reconcile would."""
    outcome = pipeline.recount(
        config=CONFIG,
        account_id=account,
        model="Item",
        start=hour,
        end=hour + timedelta(hours=1),
        client=FakeClient(),  # type: ignore[arg-type]
    )
    assert outcome.ok


def _scenario(fake: FakeApi, which: Sequence[int] = (0, 1, 2)) -> list[WorkUnit]:
    """An aggregated hour, then changes in different minutes (the source updated first):
    0 inserts at :10, 1 deletes at :20, 2 moves a record from :30 to :41. Returns the
    units of the changes in ``which``."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    seeds = [
        _record(hour + timedelta(minutes=m, seconds=s), f"seed-{m}-{s}", kind)
        for m, s, kind in [
            (5, 1, "prediction"),
            (10, 2, None),
            (20, 10, "evaluation"),
            (20, 30, None),
            (30, 5, None),
            (44, 0, "prediction"),
        ]
    ]
    for row in seeds:
        fake.add("Item", **row)
    aggregate(ACCOUNT, hour)
    assert not _problems(fake)
    units = []
    for i in which:
        if i == 0:
            inserted = _record(hour + timedelta(minutes=10, seconds=30), "new-a", "prediction")
            fake.add("Item", **inserted)
            units.append(_unit(None, inserted, 101, now))
        elif i == 1:
            removed = next(r for r in seeds if r["id"] == "seed-20-10")
            fake.remove("Item", removed["id"])
            units.append(_unit(removed, None, 102, now))
        else:
            old = next(r for r in seeds if r["id"] == "seed-30-5")
            new = {**old, "createdAt": _iso(hour + timedelta(minutes=41))}
            fake.remove("Item", old["id"])
            fake.add("Item", **new)
            units.append(_unit(old, new, 103, now))
    return units


def _run(
    fake: FakeApi, units: Sequence[WorkUnit], order: Sequence[int], merge: frozenset[str]
) -> None:
    scheduler = Scheduler(order, merge)
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))

    def run(i: int) -> None:
        out = run_stream_unit(
            FakeClient(),
            units[i],
            config=CONFIG,
            deadline=Deadline(),
            clock=clock,
            pause=scheduler.pause(i),
        )
        assert out.ok, out.error

    scheduler.run(len(units), run)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    return install(monkeypatch, FakeApi())


def test_two_invocations_every_interleaving_ends_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    orders = list(_interleavings(2, len(STEPS)))
    assert len(orders) == 252
    for pair in ((0, 1), (1, 2), (0, 2)):
        for order in orders:
            fake = install(monkeypatch, FakeApi())
            _run(fake, _scenario(fake, pair), order, frozenset())
            assert not _problems(fake), (pair, order, _problems(fake))


def test_three_invocations_sampled_interleavings_end_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reads merged into one step: 4 steps each, 34,650 orders; a seeded sample of them.
    merge = frozenset({"source-read"})
    orders = list(_interleavings(3, len(STEPS) - 1))
    assert len(orders) == 34650
    for order in Random(9).sample(orders, 300):
        fake = install(monkeypatch, FakeApi())
        _run(fake, _scenario(fake), order, merge)
        assert not _problems(fake), (order, _problems(fake))


def test_self_check_falls_back_when_the_hour_disagrees(fake: FakeApi) -> None:
    units = _scenario(fake)
    # Another writer left the 60-minute row off by one: the hour is recounted in full.
    (key,) = [k for (a, k) in fake.stored if k.startswith("items#") and k.endswith("#60")]
    sb = fake.stored[(ACCOUNT, key)]
    fake.put_stored(sb.key, type(sb.value)(sb.value.count + 1, sb.value.complete), sb.updated_at)
    out = run_stream_unit(FakeClient(), units[0], config=CONFIG, deadline=Deadline())
    assert out.ok and out.fallback_hours == 1
    assert not _problems(fake)
    # The repaired hour agrees again: the next invocation derives.
    out = run_stream_unit(FakeClient(), units[1], config=CONFIG, deadline=Deadline())
    assert out.ok and out.fallback_hours == 0 and out.derived > 0
    assert not _problems(fake)


def test_steady_state_reads_only_the_touched_minute(fake: FakeApi) -> None:
    units = _scenario(fake, (0,))
    out = run_stream_unit(FakeClient(), units[0], config=CONFIG, deadline=Deadline())
    # The fake widens every read by a minute on each side: minutes 9-11 hold 2 records,
    # the batch's own image is merged in; the hour holds 6.
    assert out.ok and out.fallback_hours == 0
    assert out.records_read <= 2
    assert not _problems(fake)


def test_a_whole_hour_derivation_that_failed_part_way_is_recounted_on_retry(
    fake: FakeApi,
) -> None:
    """A fallback writes every coarser row of the hour; if one alias fails, the retry's
    self-check must see that row (far from the touched minute) and recount the hour again."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for m in (5, 30):  # in the source, never aggregated: the hour has no stored rows
        fake.add("Item", **_record(hour + timedelta(minutes=m, seconds=1), f"seed-{m}"))
    new = _record(hour + timedelta(minutes=10, seconds=3), "new-a")
    fake.add("Item", **new)
    unit = _unit(None, new, 101, now)
    fake.alias_error = f"items#{hour + timedelta(minutes=30):%Y-%m-%dT%H:%M:%S}Z#5"
    with pytest.raises(TransportError):
        run_stream_unit(FakeClient(), unit, config=CONFIG, deadline=Deadline())
    fake.alias_error = None
    out = run_stream_unit(FakeClient(), unit, config=CONFIG, deadline=Deadline())  # the retry
    assert out.ok and out.fallback_hours == 1
    assert not _problems(fake)
