"""Counting a snapshot into desired bucket values (docs/design.md §4.4)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg.aggregator.count import count_unit, cross_check, feedback_class
from metrics_agg.models import BucketKey, HourRange, RangeRecords, Snapshot, UnitKey, WorkUnit

H11 = datetime(2024, 5, 1, 11, tzinfo=UTC)
R = HourRange(H11, H11 + timedelta(hours=2))
SNAP = datetime(2024, 5, 1, 12, 30, 0, 1, tzinfo=UTC)


def snapshot(model: str, records: list[dict[str, Any]], r: HourRange = R) -> Snapshot:
    unit = WorkUnit(UnitKey(model, "a"), (r,))
    return Snapshot(unit, SNAP, (RangeRecords(r, tuple(records)),), len(records), 0, 0)


def by_ck(desired: Any) -> dict[str, Any]:
    return {k.composite_key: v for k, v in desired.items()}


def test_items_all_record_types_in_one_pass() -> None:
    rows = [
        {"id": "1", "createdAt": "2024-05-01T11:00:00Z", "createdByType": "prediction"},
        {"id": "2", "createdAt": "2024-05-01T11:04:59.999Z", "createdByType": "evaluation"},
        {"id": "3", "createdAt": "2024-05-01T12:29:00+00:00"},
        {"id": "4", "createdAt": "2024-05-01T13:00:00Z"},  # outside [11:00, 13:00)
        {"id": "5", "createdAt": "bad"},
        {"id": "6"},
    ]
    counts = count_unit(snapshot("Item", rows))
    d = by_ck(counts.desired)
    assert (counts.processed, counts.invalid, counts.missing, counts.outside_window) == (3, 1, 1, 1)
    assert counts.one_minute_total == 3
    assert d["items#2024-05-01T11:00:00Z#5"].count == 2
    assert d["predictionItems#2024-05-01T11:00:00Z#5"].count == 1
    assert d["evaluationItems#2024-05-01T11:04:00Z#1"].count == 1
    assert d["items#2024-05-01T12:00:00Z#60"].count == 1
    # zeros are desired too (so a stored bucket that became empty is compared against 0)
    assert d["evaluationItems#2024-05-01T12:00:00Z#60"].count == 0
    assert len(d) == 3 * 2 * (60 + 12 + 4 + 1)
    # complete: bucket end <= snapshot time (12:30:00.000001)
    assert d["items#2024-05-01T12:25:00Z#5"].complete
    assert not d["items#2024-05-01T12:30:00Z#1"].complete
    assert not d["items#2024-05-01T12:00:00Z#60"].complete
    assert d["items#2024-05-01T11:00:00Z#60"].complete
    assert all(v.metadata is None for v in d.values())


def test_score_results_use_type_field() -> None:
    rows = [{"id": "1", "updatedAt": "2024-05-01T12:01:00Z", "type": "prediction"}]
    d = by_ck(count_unit(snapshot("ScoreResult", rows)).desired)
    assert d["predictionScoreResults#2024-05-01T12:00:00Z#15"].count == 1
    assert d["scoreResults#2024-05-01T12:00:00Z#15"].count == 1


@pytest.mark.parametrize(
    ("row", "cls"),
    [
        ({"initialAnswerValue": "Yes", "finalAnswerValue": "No"}, "changed"),
        ({"initialAnswerValue": "Yes", "finalAnswerValue": "Yes"}, "unchanged"),
        ({"initialAnswerValue": 1, "finalAnswerValue": "1"}, "unchanged"),
        ({"initialAnswerValue": "Yes", "finalAnswerValue": None}, "invalid"),
        ({"initialAnswerValue": "Yes", "finalAnswerValue": "No", "isInvalid": True}, "invalid"),
        ({"finalAnswerValue": "No"}, "invalid"),
    ],
)
def test_feedback_class(row: dict[str, Any], cls: str) -> None:
    assert feedback_class(row) == cls


def fb(
    i: str, edited: str | None, sc: str | None, score: str | None, ini: Any, fin: Any, **extra: Any
) -> dict[str, Any]:
    row = {
        "id": i,
        "editedAt": edited,
        "updatedAt": "2024-05-01T11:30:00Z",
        "createdAt": "2024-05-01T11:00:00Z",
        "scorecardId": sc,
        "scoreId": score,
        "initialAnswerValue": ini,
        "finalAnswerValue": fin,
    }
    row.update(extra)
    return row


def test_feedback_scopes_and_metadata() -> None:
    rows = [
        fb("1", "2024-05-01T12:05:00Z", "sc1", "s1", "Y", "N"),
        fb("2", "2024-05-01T12:06:00Z", "sc1", "s2", "Y", "Y"),
        fb("3", "2024-05-01T12:07:00Z", "sc2", "s3", "Y", None),
        fb("4", None, "sc1", "s1", "N", "N"),  # effective = updatedAt 11:30
        fb("5", "", None, None, "N", "N", updatedAt=""),  # effective = createdAt 11:00
    ]
    counts = count_unit(snapshot("FeedbackItem", rows))
    d = by_ck(counts.desired)
    assert counts.processed == 5
    hour12 = d["feedbackItems#2024-05-01T12:00:00Z#60"]
    assert hour12.count == 3
    assert hour12.metadata == {"changedCount": 1, "unchangedCount": 1, "invalidCount": 1}
    sc1 = d["feedbackItemsByScorecard#sc1#2024-05-01T12:00:00Z#60"]
    assert (sc1.count, sc1.metadata) == (
        2,
        {"changedCount": 1, "unchangedCount": 1, "invalidCount": 0},
    )
    assert d["feedbackItemsByScore#s1#2024-05-01T11:30:00Z#1"].count == 1
    assert d["feedbackItemsByScore#s1#2024-05-01T11:00:00Z#60"].metadata == {
        "changedCount": 0,
        "unchangedCount": 1,
        "invalidCount": 0,
    }
    assert d["feedbackItems#2024-05-01T11:00:00Z#1"].count == 1
    # scoped recordTypes: only non-empty buckets; the unscoped one: every bucket
    assert "feedbackItemsByScorecard#sc2#2024-05-01T11:00:00Z#60" not in d
    assert d["feedbackItems#2024-05-01T11:45:00Z#15"].count == 0
    assert d["feedbackItems#2024-05-01T11:45:00Z#15"].metadata == {
        "changedCount": 0,
        "unchangedCount": 0,
        "invalidCount": 0,
    }
    by_score = [k for k in counts.desired if k.record_type == "feedbackItemsByScore"]
    assert {k.scorecard_id for k in by_score if k.score_id == "s3"} == {"sc2"}


def test_ranges_must_be_whole_hours() -> None:
    bad = HourRange(H11 + timedelta(minutes=15), H11 + timedelta(hours=1))
    with pytest.raises(ValueError):
        count_unit(snapshot("Task", [], bad))


def test_key_types() -> None:
    counts = count_unit(snapshot("Task", []))
    key = next(iter(counts.desired))
    assert isinstance(key, BucketKey) and key.account_id == "a"
    assert {k.record_type for k in counts.desired} == {"tasks"}


def test_cross_check_is_the_units_verdict() -> None:
    rows = [{"id": "1", "createdAt": "2024-05-01T11:00:00Z"}, {"id": "2", "createdAt": "bad"}]
    counts = count_unit(snapshot("Item", rows))
    assert cross_check(counts)
    # A counter that lost (or doubled) a record in the 1-minute buckets fails the unit.
    assert not cross_check(dataclasses.replace(counts, one_minute_total=counts.processed - 1))
    assert not cross_check(dataclasses.replace(counts, one_minute_total=counts.processed + 1))
