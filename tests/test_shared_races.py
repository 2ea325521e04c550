"""Shared requests stay exact when invocations interleave (docs/incremental.md "Shared requests").

Two stream invocations, each touching two accounts, run the shared path
(`shared.run_shared_units`): the units of one invocation share every request. A scheduler
(`test_derivation_races.Scheduler`) lets one invocation run one step at a time (shared
read, 1-minute writes, derivation read, coarser writes: `shared.SHARED_STEPS`), in every
order of the two. Each order must end with every stored bucket of both accounts equal to a
count of the source records made with plain loops. With one unit failing part-way (an
alias of its 1-minute writes, or of the shared read), the other unit of the same
invocation must still end exact, the failed one must have written nothing after its
failure, and its retry (as Lambda sends it) must end exact too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.plan import plan_units
from metrics_agg.aggregator.shared import SHARED_STEPS, run_shared_units
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.local.server.streams import build_record, with_sequence
from metrics_agg.models import UnitOutcome, WorkUnit
from test_derivation_races import TABLE, Clock, Scheduler, _interleavings, _truth, aggregate

CONFIG = Config(endpoint="http://fake")
ACCOUNTS = ("acct-s1", "acct-s2")


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _record(account: str, at: datetime, rid: str, kind: str | None = None) -> dict[str, Any]:
    row = {"id": rid, "accountId": account, "createdAt": _iso(at), "updatedAt": _iso(at)}
    if kind:
        row["createdByType"] = kind
    return row


def _problems(fake: FakeApi) -> list[str]:
    out = []
    for account in ACCOUNTS:
        rows = [r for r in fake.records.get("Item", []) if r["accountId"] == account]
        truth = _truth(rows)
        stored = {ck: sb.value.count for (a, ck), sb in fake.stored.items() if a == account}
        for k in set(stored) | {k for k, v in truth.items() if v}:
            if stored.get(k, 0) != truth.get(k, 0):
                out.append(f"{account} {k}: stored {stored.get(k)}, truth {truth.get(k, 0)}")
    return sorted(out)


def _batch(records: Sequence[dict[str, Any]], now: datetime) -> list[WorkUnit]:
    units = plan_units(parse_batch({"Records": list(records)}), now=now, max_hours_back=168)
    assert sorted(u.key.account_id for u in units) == sorted(ACCOUNTS)
    return units


def _scenario(fake: FakeApi) -> tuple[list[WorkUnit], list[WorkUnit]]:
    """Both accounts aggregated over one hour; then two invocations, each changing both
    accounts in different minutes (the source is updated first): X inserts at :10 (s1)
    and deletes at :20 (s2); Y moves :30 -> :41 (s1) and inserts at :10 (s2)."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    seeds: dict[str, list[dict[str, Any]]] = {}
    for account in ACCOUNTS:
        seeds[account] = [
            _record(account, hour + timedelta(minutes=m, seconds=s), f"{account}-{m}", kind)
            for m, s, kind in [(5, 1, "prediction"), (20, 10, "evaluation"), (30, 5, None)]
        ]
        for row in seeds[account]:
            fake.add("Item", **row)
        aggregate(account, hour)
    assert not _problems(fake)

    def change(old: dict[str, Any] | None, new: dict[str, Any] | None, seq: int) -> Any:
        rid = (new or old or {})["id"]
        return with_sequence(build_record(TABLE, "race", {"id": rid}, old, new), seq)

    s1, s2 = ACCOUNTS
    x_insert = _record(s1, hour + timedelta(minutes=10, seconds=30), "x-new", "prediction")
    fake.add("Item", **x_insert)
    x_removed = seeds[s2][1]
    fake.remove("Item", x_removed["id"])
    x = _batch([change(None, x_insert, 101), change(x_removed, None, 102)], now)
    y_old = seeds[s1][2]
    y_new = {**y_old, "createdAt": _iso(hour + timedelta(minutes=41))}
    fake.remove("Item", y_old["id"])
    fake.add("Item", **y_new)
    y_insert = _record(s2, hour + timedelta(minutes=10, seconds=45), "y-new", "evaluation")
    fake.add("Item", **y_insert)
    y = _batch([change(y_old, y_new, 201), change(None, y_insert, 202)], now)
    return x, y


def _run(
    invocations: Sequence[Sequence[WorkUnit]], order: Sequence[int]
) -> list[list[UnitOutcome]]:
    scheduler = Scheduler(order)
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    results: list[list[UnitOutcome]] = [[] for _ in invocations]

    def run(i: int) -> None:
        results[i] = run_shared_units(
            FakeClient(),  # type: ignore[arg-type]
            invocations[i],
            config=CONFIG,
            deadline=Deadline(),
            clock=clock,
            pause=scheduler.pause(i),
        )

    scheduler.run(len(invocations), run)
    return results


ORDERS = list(_interleavings(2, len(SHARED_STEPS)))


def test_every_interleaving_of_two_shared_invocations_ends_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(ORDERS) == 70
    for order in ORDERS:
        fake = install(monkeypatch, FakeApi())
        x, y = _scenario(fake)
        results = _run([x, y], order)
        assert all(o.ok for r in results for o in r), (order, results)
        assert not _problems(fake), (order, _problems(fake))


def _one_failing(monkeypatch: pytest.MonkeyPatch, stage: str, order: Sequence[int]) -> None:
    fake = install(monkeypatch, FakeApi())
    x, y = _scenario(fake)
    s1, s2 = ACCOUNTS
    (failing,) = [u for u in x if u.key.account_id == s2]
    minute20 = next(
        k.composite_key for k in failing.touched if k.minutes == 1 and k.record_type == "items"
    )
    writers: list[tuple[str, str]] = []  # (invocation thread, account) of each write
    original_write = fake.write_buckets
    original_read = fake.read_units

    def write(client: Any, writes: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        first = not any(n == name for n, _ in writers)
        writers.extend((name, w.key.account_id) for w in writes)
        # X's first write request: its s2 unit's write of minute :20 fails (one alias).
        fake.alias_error = (
            minute20 if stage == "minute-writes" and name == "inv-0" and first else None
        )
        return original_write(client, writes, **kwargs)

    def read_once(*args: Any, **kwargs: Any) -> Any:
        # s2's aliases of the first shared read fail (whichever invocation sends it first);
        # the other invocation's read of s2 succeeds.
        out = original_read(*args, **kwargs)
        fake.alias_error_accounts = set()
        return out

    monkeypatch.setattr(fake, "write_buckets", write)
    if stage == "read":
        fake.alias_error_accounts = {s2}
        monkeypatch.setattr(fake, "read_units", read_once)
    results = _run([x, y], order)
    failed = [o for r in results for o in r if not o.ok]
    assert len(failed) == 1 and failed[0].key.account_id == s2, (order, results)
    sequence = int(failed[0].sequence or 0)
    # Its own lowest sequence number: X's s2 change is 102, Y's 202.
    assert sequence == 102 if stage == "minute-writes" else sequence in (102, 202)
    assert len([o for r in results for o in r if o.ok and o.key.account_id == s1]) == 2
    failed_inv = f"inv-{0 if sequence == 102 else 1}"
    if stage == "read":  # the unit whose read failed wrote nothing
        assert (failed_inv, s2) not in writers, (order, writers)
    # The other unit of the failed request went on to its writes.
    assert (failed_inv, s1) in writers
    # The retry of the failed unit, as Lambda sends it.
    fake.alias_error = None
    fake.alias_error_accounts = set()
    retry = next(u for u in (*x, *y) if u.lowest_sequence == failed[0].sequence)
    (outcome,) = run_shared_units(
        FakeClient(),  # type: ignore[arg-type]
        [retry],
        config=CONFIG,
        deadline=Deadline(),
        clock=Clock(datetime.now(UTC) + timedelta(seconds=5)),  # after the runs' clock
    )
    assert outcome.ok
    assert not _problems(fake), (stage, order, _problems(fake))


@pytest.mark.parametrize("stage", ["minute-writes", "read"])
def test_one_unit_failing_mid_request_leaves_the_other_exact(
    monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """X's s2 unit fails in a shared request (one alias) while X's s1 unit, in the same
    request, succeeds; Y runs interleaved, in every order. Only the failed unit is
    reported, by its own lowest sequence number; a unit whose read failed writes nothing;
    after its retry every bucket is exact."""
    for order in ORDERS:
        _one_failing(monkeypatch, stage, order)
