"""Planning (docs/design.md §4.2): hours per (model, account), limits, touched buckets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.plan import group_hours, plan_recount, plan_units
from metrics_agg.models import Batch, HourRange, UnitKey

EVENTS = Path(__file__).parent / "events"
NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)


def hour(h: int, day: int = 1) -> datetime:
    return datetime(2024, 5, day, h, tzinfo=UTC)


def batch(name: str) -> Batch:
    return parse_batch(json.loads((EVENTS / f"{name}.json").read_text()))


def test_current_and_previous_hour_per_pair() -> None:
    units = plan_units(batch("item_insert"), now=NOW, max_hours_back=168)
    assert [u.key for u in units] == [UnitKey("Item", "acct-1"), UnitKey("Item", "acct-2")]
    assert units[0].ranges == (HourRange(hour(11), hour(13)),)
    assert units[0].lowest_sequence == "4421584500000000017450439091"
    assert [c.record_id for c in units[0].changes] == ["item-1", "item-2"]


def test_old_and_new_hours_become_ranges() -> None:
    (unit,) = plan_units(batch("item_modify"), now=NOW, max_hours_back=168)
    assert unit.ranges == (HourRange(hour(9), hour(10)), HourRange(hour(11), hour(13)))


def test_touched_buckets_cover_both_images_and_categories() -> None:
    (unit,) = plan_units(batch("item_modify"), now=NOW, max_hours_back=168)
    keys = {k.composite_key for k in unit.touched}
    assert "items#2024-05-01T12:10:00Z#1" in keys
    assert "predictionItems#2024-05-01T12:10:00Z#5" in keys
    assert "items#2024-05-01T09:59:00Z#1" in keys
    assert "items#2024-05-01T09:00:00Z#60" in keys
    assert not any(k.startswith("evaluationItems") for k in keys)
    assert len(keys) == 2 * 2 * 4  # 2 images x 2 recordTypes x 4 sizes


def test_feedback_touched_scopes() -> None:
    units = plan_units(batch("feedback"), now=NOW, max_hours_back=168)
    keys = {k.composite_key for u in units for k in u.touched}
    assert "feedbackItemsByScorecard#sc-1#2024-05-01T12:05:00Z#1" in keys
    assert "feedbackItemsByScore#score-1#2024-05-01T12:00:00Z#60" in keys
    assert "feedbackItems#2024-05-01T11:07:00Z#1" in keys  # old image of the MODIFY


def test_limits_report_hours_beyond() -> None:
    from dataclasses import replace

    (change,) = batch("item_modify").changes
    old = replace(change, new_time=NOW - 200 * H, old_time=NOW + 30 * H)
    (unit,) = plan_units(Batch((old,), 1), now=NOW, max_hours_back=168)
    assert unit.ranges == (HourRange(hour(11), hour(13)),)
    assert unit.skipped_hours == (floor(NOW - 200 * H), floor(NOW + 30 * H))
    assert not unit.touched
    ahead = replace(change, new_time=NOW + 5 * H, old_time=None)
    (unit,) = plan_units(Batch((ahead,), 1), now=NOW, max_hours_back=168)
    assert unit.ranges == (HourRange(hour(11), hour(13)), HourRange(hour(17), hour(18)))


def floor(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def test_group_hours() -> None:
    hours = [hour(5), hour(3), hour(4), hour(8), hour(4)]
    assert group_hours(hours) == (HourRange(hour(3), hour(6)), HourRange(hour(8), hour(9)))
    assert group_hours([]) == ()


def test_recount_aligns_outward() -> None:
    unit = plan_recount(
        "Task",
        "a",
        datetime(2024, 5, 1, 3, 15, tzinfo=UTC),
        datetime(2024, 5, 1, 5, 0, 1, tzinfo=UTC),
    )
    assert unit.ranges == (HourRange(hour(3), hour(6)),)
    assert unit.changes == () and unit.lowest_sequence is None


@pytest.mark.parametrize(
    ("model", "start", "end"),
    [
        ("Nope", hour(1), hour(2)),
        ("Item", hour(2), hour(2)),
        ("Item", datetime(2024, 5, 1), hour(2)),
    ],
)
def test_recount_rejects(model: str, start: datetime, end: datetime) -> None:
    with pytest.raises(ValueError):
        plan_recount(model, "a", start, end)


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError):
        plan_units(batch("item_insert"), now=datetime(2024, 5, 1), max_hours_back=1)
