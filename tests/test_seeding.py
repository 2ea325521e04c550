"""Seeding: realistic, reproducible records written in bulk (no timing asserts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics_agg.local.server import Store
from metrics_agg.local.server.seeding import generate_records, seed_records
from metrics_agg.models import SOURCE_MODELS
from metrics_agg.timestamps import parse_instant_or_none

START = datetime(2024, 5, 1, 10, tzinfo=UTC)
END = datetime(2024, 5, 1, 11, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "seed.sqlite3")
    yield s
    s.close()


@pytest.mark.parametrize("model", sorted(SOURCE_MODELS))
def test_every_model_seeds_with_stream_records(store: Store, model: str) -> None:
    result = seed_records(store, model, "acct", 300, START, END, seed=7)
    assert result.count == 300 and result.late == result.invalid == 0
    records = store.all_records(model, "acct")
    assert len(records) == 300
    field = SOURCE_MODELS[model].timestamp_fields[0]
    for rec in records:
        ts = rec.get(field) or rec["updatedAt"]
        instant = parse_instant_or_none(ts)
        assert instant is not None and START <= instant < END
    stream = store.read_stream(model, None, 1000)
    assert len(stream) == 300 and {r["eventName"] for r in stream} == {"INSERT"}


def test_same_seed_same_records() -> None:
    a = list(generate_records("FeedbackItem", "x", 50, START, END, seed=3))
    b = list(generate_records("FeedbackItem", "x", 50, START, END, seed=3))
    c = list(generate_records("FeedbackItem", "x", 50, START, END, seed=4))
    assert a == b and a != c


def test_categories_and_feedback_values_are_realistic() -> None:
    items = list(generate_records("Item", "x", 2000, START, END))
    kinds = Counter(i["createdByType"] for i in items)
    assert set(kinds) == {"prediction", "evaluation", "other"}
    scores = list(generate_records("ScoreResult", "x", 2000, START, END))
    assert {"prediction", "evaluation"} <= {s["type"] for s in scores}
    fb = list(generate_records("FeedbackItem", "x", 2000, START, END))
    assert 1 < len({f["scorecardId"] for f in fb}) <= 5
    assert any(f["initialAnswerValue"] != f["finalAnswerValue"] for f in fb)
    assert any(f["initialAnswerValue"] is None or f["finalAnswerValue"] is None for f in fb)
    assert any(f["isInvalid"] for f in fb)
    edited = [f for f in fb if "editedAt" in f]
    assert 0 < len(edited) < len(fb)


def test_late_and_invalid_fractions(store: Store) -> None:
    result = seed_records(
        store,
        "Task",
        "acct",
        2000,
        START,
        END,
        late_fraction=0.1,
        invalid_fraction=0.1,
        stream=False,
    )
    assert 100 < result.late < 300 and 100 < result.invalid < 300
    stamps = [r["updatedAt"] for r in store.all_records("Task")]
    parsed = [parse_instant_or_none(s) for s in stamps]
    assert sum(p is None for p in parsed) == result.invalid
    assert sum(p is not None and p < START for p in parsed) == result.late
    # Invalid strings still sort inside the window's string range, so readers find them.
    assert all(
        "2024-05-01T09" <= s < "2024-05-01T11"
        for s, p in zip(stamps, parsed, strict=True)
        if p is None
    )
    assert store.read_stream("Task", None, 10) == []  # --no-stream


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        next(generate_records("Nope", "x", 1, START, END))
    with pytest.raises(ValueError, match="start < end"):
        next(generate_records("Item", "x", 1, END, START))
    with pytest.raises(ValueError, match="fractions"):
        next(generate_records("Item", "x", 1, START, END, late_fraction=0.8, invalid_fraction=0.5))
