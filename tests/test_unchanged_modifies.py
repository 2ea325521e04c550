"""A MODIFY that changes nothing the counter reads touches nothing (docs/incremental.md).

"Nothing counted" is the record's `CountedView`: account, placing field with its UTC minute
and local-minute prefix, recordTypes and scopes, feedback class, error verdict. Such a
MODIFY adds no hour and no touched bucket, so a batch of them sends no request and writes
no bucket; the earlier per-unit path (kept for the cost comparison) still recounts them.
A MODIFY without its old image (stream view types other than NEW_AND_OLD_IMAGES) keeps
invalidating its minutes. The race test runs such a MODIFY beside a real change to the
same minute at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes_api import FakeApi, FakeClient, install
from metrics_agg.aggregator import pipeline
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.incremental import STEPS, run_stream_unit
from metrics_agg.aggregator.plan import changes_nothing_counted, plan_units
from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.local.server import LocalStack, seed_records
from metrics_agg.local.server.streams import build_record, with_sequence
from metrics_agg.models import ErrorRule, StreamChange
from recording_client import RecordingClient
from test_derivation_races import (
    ACCOUNT,
    TABLE,
    Clock,
    Scheduler,
    _interleavings,
    _problems,
    aggregate,
)
from truth_helpers import assert_matches_truth

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
TASK_RULES = (ErrorRule("status", ("FAILED",)),)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _modify(model: str, old: dict[str, Any], new: dict[str, Any]) -> StreamChange:
    record = with_sequence(build_record(f"{model}-x-NONE", "x", {"id": old["id"]}, old, new), 7)
    (change,) = parse_batch({"Records": [record]}).changes
    return change


def _task(**fields: Any) -> dict[str, Any]:
    return {"id": "t1", "accountId": "a", "updatedAt": "2026-12-06T10:05:01.000Z"} | fields


def _item(**fields: Any) -> dict[str, Any]:
    base = {"id": "i1", "accountId": "a", "createdAt": "2026-12-06T10:05:01.000Z"}
    return base | {"createdByType": "prediction", "text": "a"} | fields


def _feedback(**fields: Any) -> dict[str, Any]:
    return {
        "id": "f1",
        "accountId": "a",
        "editedAt": "2026-12-06T10:05:01.000Z",
        "updatedAt": "2026-12-06T10:05:01.000Z",
        "scorecardId": "sc1",
        "scoreId": "s1",
        "initialAnswerValue": "yes",
        "finalAnswerValue": "no",
    } | fields


@pytest.mark.parametrize(
    ("model", "old", "new", "rules", "unchanged"),
    [
        # Nothing counted changes.
        ("Item", _item(), _item(text="edited"), (), True),
        ("Task", _task(status="RUNNING"), _task(status="COMPLETED"), TASK_RULES, True),
        (  # same minute, later second: same buckets
            "Task",
            _task(status="RUNNING"),
            _task(status="COMPLETED", updatedAt="2026-12-06T10:05:59.999Z"),
            TASK_RULES,
            True,
        ),
        ("FeedbackItem", _feedback(), _feedback(comment="why", finalAnswerValue="maybe"), (), True),
        (  # FeedbackItem is placed by editedAt: a later updatedAt moves no bucket
            "FeedbackItem",
            _feedback(),
            _feedback(updatedAt="2026-12-06T11:30:00.000Z"),
            (),
            True,
        ),
        # Something counted changes.
        ("Item", _item(), _item(createdByType="evaluation"), (), False),
        ("Item", _item(), _item(createdAt="2026-12-06T10:06:00.000Z"), (), False),
        ("Item", _item(), _item(accountId="b"), (), False),
        (  # the same UTC minute written with another zone: another index position
            "Item",
            _item(),
            _item(createdAt="2026-12-06T12:05:01.000+02:00"),
            (),
            False,
        ),
        ("Item", _item(createdAt="not a time"), _item(createdAt="still not"), (), False),
        (
            "Task",
            _task(status="RUNNING"),
            _task(status="COMPLETED", updatedAt="2026-12-06T10:06:00.000Z"),
            TASK_RULES,
            False,
        ),
        ("Task", _task(status="RUNNING"), _task(status="FAILED"), TASK_RULES, False),
        (  # configured rules decide: COMPLETED is an error under these
            "Task",
            _task(status="RUNNING"),
            _task(status="COMPLETED"),
            (ErrorRule("status", ("COMPLETED",)),),
            False,
        ),
        ("FeedbackItem", _feedback(), _feedback(finalAnswerValue="yes"), (), False),
        ("FeedbackItem", _feedback(), _feedback(isInvalid=True), (), False),
        ("FeedbackItem", _feedback(), _feedback(scoreId="s2"), (), False),
        ("FeedbackItem", _feedback(), _feedback(scorecardId="sc2"), (), False),
        (  # editedAt appears: the placing field changes even in the same minute
            "FeedbackItem",
            _feedback(editedAt=None),
            _feedback(),
            (),
            False,
        ),
    ],
)
def test_which_modifies_change_nothing_counted(
    model: str,
    old: dict[str, Any],
    new: dict[str, Any],
    rules: tuple[ErrorRule, ...],
    unchanged: bool,
) -> None:
    old = {k: v for k, v in old.items() if v is not None}
    new = {k: v for k, v in new.items() if v is not None}
    assert changes_nothing_counted(_modify(model, old, new), rules) is unchanged


def test_inserts_removes_and_modifies_without_an_old_image_always_count() -> None:
    item = _item()
    insert = with_sequence(build_record("Item-x-NONE", "x", {"id": "i1"}, None, item), 1)
    remove = with_sequence(build_record("Item-x-NONE", "x", {"id": "i1"}, item, None), 2)
    new_only = with_sequence(build_record("Item-x-NONE", "x", {"id": "i1"}, item, item), 3)
    del new_only["dynamodb"]["OldImage"]
    new_only["dynamodb"]["StreamViewType"] = "NEW_IMAGE"
    batch = parse_batch({"Records": [insert, remove, new_only]})
    assert [changes_nothing_counted(c, ()) for c in batch.changes] == [False, False, False]
    (unit,) = plan_units(batch, now=NOW, max_hours_back=168, unchanged_rules={})
    assert unit.unchanged == 0 and unit.touched


def test_planning_skips_them_only_when_asked() -> None:
    unchanged = with_sequence(
        build_record("Item-x-NONE", "x", {"id": "i1"}, _item(), _item(text="b")), 1
    )
    moved = with_sequence(
        build_record(
            "Item-x-NONE",
            "x",
            {"id": "i2"},
            _item(id="i2", createdAt="2026-12-06T10:20:00.000Z"),
            _item(id="i2", createdAt="2026-12-06T08:00:00.000Z"),
        ),
        2,
    )
    batch = parse_batch({"Records": [unchanged, moved]})
    (legacy,) = plan_units(batch, now=NOW, max_hours_back=168)
    (unit,) = plan_units(batch, now=NOW, max_hours_back=168, unchanged_rules={})
    assert legacy.unchanged == 0 and unit.unchanged == 1
    # Both records stay in the unit (their images are merged by id like any other) ...
    assert len(unit.changes) == len(legacy.changes) == 2
    # ... but only the moved one touches buckets: 10:05 is the unchanged record's minute.
    minutes = {k.start for k in unit.touched if k.minutes == 1}
    assert minutes == {datetime(2026, 12, 6, h, m, tzinfo=UTC) for h, m in ((8, 0), (10, 20))}
    assert datetime(2026, 12, 6, 10, 5, tzinfo=UTC) in {
        k.start for k in legacy.touched if k.minutes == 1
    }


def _aggregated_stack(
    make_local_stack: Callable[..., LocalStack], model: str, account: str
) -> tuple[LocalStack, dict[str, Any]]:
    """A stack whose current hour of (model, account) is aggregated; one of its records."""
    stack = make_local_stack()
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    seed_records(
        stack.store, model, account, 200, hour - timedelta(hours=1), now, seed=3, stream=False
    )
    recount = {
        "recount": {
            "accountId": account,
            "model": model,
            "start": (hour - timedelta(hours=1)).isoformat(),
            "end": (hour + timedelta(hours=1)).isoformat(),
        }
    }
    assert pipeline.handle_event(recount, config=stack.config())["status"] == "SUCCESS"
    record = max(stack.store.all_records(model, account), key=lambda r: r["updatedAt"])
    return stack, record


@pytest.mark.parametrize(
    ("path", "requests_expected"), [("shared", False), ("per-unit", True)], ids=["new", "old"]
)
def test_a_batch_of_unchanged_modifies_writes_no_bucket(
    make_local_stack: Callable[..., LocalStack], path: str, requests_expected: bool
) -> None:
    stack, record = _aggregated_stack(make_local_stack, "Task", "noop-acct")
    before = {m["compositeKey"]: m["updatedAt"] for m in stack.store.all_metrics("noop-acct")}
    after = stack.store.stream_end("Task-local-NONE")
    # RUNNING -> COMPLETED within the record's own minute: Amplify moves updatedAt, the
    # counter sees the same bucket, no error either way.
    stamp = record["updatedAt"]
    same_minute = stamp[:17] + "59.999Z"
    for status in ("RUNNING", "COMPLETED"):
        stack.store.update("Task", (record["id"],), {"status": status, "updatedAt": same_minute})
    event = {"Records": stack.store.read_stream("Task-local-NONE", after, 10)}
    assert [r["eventName"] for r in event["Records"]] == ["MODIFY", "MODIFY"]
    config = stack.config(invocation_path=path)
    client = RecordingClient(config)
    with client:
        assert pipeline.handle_event(event, config=config, client=client) == {
            "batchItemFailures": []
        }
    written = {
        m["compositeKey"]
        for m in stack.store.all_metrics("noop-acct")
        if before.get(m["compositeKey"]) != m["updatedAt"]
    }
    if requests_expected:
        assert client.request_count > 0 and written  # the earlier path rewrote buckets
    else:
        assert client.request_count == 0 and written == set()
    assert_matches_truth(stack.store, "noop-acct")


# --------------------------------------------------------------------------- the race

CONFIG = Config(endpoint="http://fake")


def _row(at: datetime, rid: str) -> dict[str, Any]:
    return {"id": rid, "accountId": ACCOUNT, "createdAt": _stamp(at), "updatedAt": _stamp(at)}


def test_an_unchanged_modify_beside_a_real_change_every_interleaving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Invocation 0 inserts a record into minute :10; invocation 1's batch holds an edit of
    another record of :10 that changes nothing counted (it touches nothing there) and a
    real insert at :40 of the same hour, so its coarse writes cover :10's 60-minute
    parent. The edit and the insert land in the source at invocation 1's first step.
    Every order of the two invocations' steps ends exact."""
    orders = list(_interleavings(2, len(STEPS)))
    assert len(orders) == 252
    for order in orders:
        fake = install(monkeypatch, FakeApi())
        _race_once(fake, order)
        assert not _problems(fake), (order, _problems(fake))


def _race_once(fake: FakeApi, order: tuple[int, ...]) -> None:
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    seeds = [_row(hour + timedelta(minutes=m, seconds=2), f"seed-{m}") for m in (3, 10, 41)]
    for row in seeds:
        fake.add("Item", **row)
    aggregate(ACCOUNT, hour)
    inserted = _row(hour + timedelta(minutes=10, seconds=30), "new-a")
    fake.add("Item", **inserted)
    edited_old = seeds[1]
    edited_new = edited_old | {"text": "edited", "updatedAt": _stamp(now)}
    late = _row(hour + timedelta(minutes=40, seconds=5), "new-b")
    records = [
        with_sequence(build_record(TABLE, "race", {"id": "new-a"}, None, inserted), 101),
        with_sequence(build_record(TABLE, "race", {"id": "seed-10"}, edited_old, edited_new), 102),
        with_sequence(build_record(TABLE, "race", {"id": "new-b"}, None, late), 103),
    ]
    units = [
        unit
        for part in (records[:1], records[1:])
        for unit in plan_units(
            parse_batch({"Records": part}),
            now=now,
            max_hours_back=168,
            unchanged_rules=CONFIG.error_rules(),
        )
    ]
    assert units[1].unchanged == 1
    assert {k.start.minute for k in units[1].touched if k.minutes == 1} == {40}
    scheduler = Scheduler(order)
    clock = Clock(now + timedelta(seconds=1))

    def land_the_edit(pause: Callable[[str], None]) -> Callable[[str], None]:
        def hook(step: str) -> None:
            pause(step)
            if step == STEPS[0]:
                fake.remove("Item", "seed-10")
                fake.add("Item", **edited_new)
                fake.add("Item", **late)

        return hook

    def run(i: int) -> None:
        pause = scheduler.pause(i)
        out = run_stream_unit(
            FakeClient(),  # type: ignore[arg-type]
            units[i],
            config=CONFIG,
            deadline=Deadline(),
            clock=clock,
            pause=land_the_edit(pause) if i == 1 else pause,
        )
        assert out.ok, out.error

    scheduler.run(2, run)
