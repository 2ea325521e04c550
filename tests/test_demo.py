"""`metrics-agg demo` end to end (small), and its independent check of the tables."""

from __future__ import annotations

import io
from pathlib import Path

from metrics_agg.local.demo.run import run_demo
from metrics_agg.local.demo.truth import TruthBucket, compare_with_tables, direct_counts


class Terminal(io.StringIO):
    """Captured output that, like a UTF-8 terminal, can show ✓ and ▁▂▃."""

    @property
    def encoding(self) -> str:
        return "utf-8"


def test_demo_runs_and_every_bucket_matches(tmp_path: Path) -> None:
    out = Terminal()
    result = run_demo(tmp_path / "demo", records=60, out=out)
    text = out.getvalue()
    assert result.ok, text
    assert result.caught_up and result.buckets_checked > 0 and not result.mismatches
    assert text.rstrip().splitlines()[-1].startswith("✓ every stored bucket matches")
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in text
    assert "feedbackItemsByScore" in text and "invalid createdAt" in text
    # Errors are shown: a column in the overview and in the tasks table (`show`'s form).
    assert "RUNNING -> FAILED" in text
    tasks_table = text.split("tasks · account")[1]
    assert "│ errors │" in text and "errors" in tasks_table.split("\n\n")[1]
    assert (tmp_path / "demo" / "demo.sqlite3").exists()  # --keep keeps the data


def _metric(key: str, count: int, **extra: object) -> dict[str, object]:
    record_type, *_ = key.split("#")
    return {
        "compositeKey": key,
        "recordType": record_type,
        "count": count,
        "complete": True,
        "timeRangeEnd": "2024-05-01T10:01:00Z",
        "updatedAt": "2024-05-01T11:00:00.000000Z",
        **extra,
    }


def test_direct_counts_follow_the_data_contract() -> None:
    truth = direct_counts(
        {
            "Item": [
                {"createdAt": "2024-05-01T10:00:59.999Z", "createdByType": "prediction"},
                {"createdAt": "2024-05-01T10:01:00Z"},
                {"createdAt": "2024-02-30T10:00:00Z"},  # invalid: not counted
                {"createdAt": None},  # missing: not counted
            ],
            "FeedbackItem": [
                {
                    "editedAt": "2024-05-01T10:00:01Z",
                    "updatedAt": "2024-05-01T12:00:00Z",
                    "scorecardId": "sc",
                    "scoreId": "s",
                    "initialAnswerValue": "yes",
                    "finalAnswerValue": "no",
                },
                {
                    "updatedAt": "2024-05-01T10:00:02Z",
                    "scorecardId": "sc",
                    "initialAnswerValue": "yes",
                    "finalAnswerValue": None,
                },
            ],
        }
    )
    assert truth["items#2024-05-01T10:00:00Z#1"] == TruthBucket(1)
    assert truth["items#2024-05-01T10:00:00Z#60"] == TruthBucket(2)
    assert truth["predictionItems#2024-05-01T10:00:00Z#5"] == TruthBucket(1)
    assert "evaluationItems#2024-05-01T10:00:00Z#60" not in truth
    scorecard = truth["feedbackItemsByScorecard#sc#2024-05-01T10:00:00Z#1"]
    assert scorecard == TruthBucket(2, {"changedCount": 1, "unchangedCount": 0, "invalidCount": 1})
    assert truth["feedbackItemsByScore#s#2024-05-01T10:00:00Z#15"].count == 1


def test_direct_counts_count_errors_by_upstream_conventions() -> None:
    at = "2024-05-01T10:00:30Z"
    truth = direct_counts(
        {
            "Task": [{"updatedAt": at, "status": s} for s in ("FAILED", "RUNNING", "failed")],
            "Procedure": [{"updatedAt": at, "status": s} for s in ("ERROR", "FAILED", "DONE")],
            "ScoreResult": [
                {"updatedAt": at, "type": "prediction", "code": "500"},
                {"updatedAt": at, "type": "prediction", "code": "200", "status": "error"},
                {"updatedAt": at, "type": "evaluation", "code": "399"},
            ],
            "ChatSession": [{"updatedAt": at, "status": "ERROR"}],
        }
    )
    assert truth["tasks#2024-05-01T10:00:00Z#1"] == TruthBucket(3, None, 1)
    assert truth["procedures#2024-05-01T10:00:00Z#60"] == TruthBucket(3, None, 2)
    assert truth["predictionScoreResults#2024-05-01T10:00:00Z#5"] == TruthBucket(2, None, 2)
    assert truth["evaluationScoreResults#2024-05-01T10:00:00Z#5"] == TruthBucket(1, None, 0)
    assert truth["chatSessions#2024-05-01T10:00:00Z#1"] == TruthBucket(1)  # no errors defined


def test_compare_finds_wrong_missing_extra_and_incomplete_buckets() -> None:
    truth = {
        "items#2024-05-01T10:00:00Z#1": TruthBucket(2),
        "tasks#2024-05-01T10:00:00Z#1": TruthBucket(1, None, 0),
        "feedbackItems#2024-05-01T10:00:00Z#1": TruthBucket(
            1, {"changedCount": 1, "unchangedCount": 0, "invalidCount": 0}
        ),
    }
    stored = [
        _metric("items#2024-05-01T10:00:00Z#1", 3),
        _metric("chatSessions#2024-05-01T10:00:00Z#1", 0),  # stored zero: fine
        _metric("procedures#2024-05-01T10:00:00Z#1", 1, complete=False, errorCount=0),
        _metric("evaluations#2024-05-01T10:00:00Z#1", 0, errorCount=1),  # no such error
        _metric("chatSessions#2024-05-01T10:05:00Z#1", 0, errorCount=0),  # no errors defined
        _metric(
            "feedbackItems#2024-05-01T10:00:00Z#1",
            1,
            metadata='{"changedCount": 0, "unchangedCount": 1, "invalidCount": 0}',
        ),
    ]
    checked, mismatches = compare_with_tables(stored, truth)
    assert checked == 6
    found = {m.composite_key: m.reason for m in mismatches}
    assert found == {
        "items#2024-05-01T10:00:00Z#1": "count",
        "procedures#2024-05-01T10:00:00Z#1": "count, complete",
        "evaluations#2024-05-01T10:00:00Z#1": "errorCount",
        "chatSessions#2024-05-01T10:05:00Z#1": "errorCount",
        "feedbackItems#2024-05-01T10:00:00Z#1": "metadata",
        "tasks#2024-05-01T10:00:00Z#1": "not stored",
    }
