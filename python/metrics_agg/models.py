"""Typed values that cross module boundaries, and the source-model table of DESIGN §2.

Raw Lambda and GraphQL dicts stop at `stream_events` and `graphql/`; everything
else passes these frozen dataclasses.
"""

from __future__ import annotations

__all__ = [
    "BUCKET_SIZES",
    "FEEDBACK_RECORD_TYPES",
    "SOURCE_MODELS",
    "BucketKey",
    "BucketValue",
    "BucketWrite",
    "CountResult",
    "ModelSpec",
    "StoredBucket",
    "model_for_table",
]

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

BUCKET_SIZES: tuple[int, ...] = (1, 5, 15, 60)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How one Amplify model is read and which recordTypes it feeds (DESIGN §2)."""

    name: str
    # Amplify-generated list-by-index queries; FeedbackItem has two, merged by id.
    list_queries: tuple[str, ...]
    # The sort-key field of each list query, in the same order.
    sort_keys: tuple[str, ...]
    # Fields tried in order for the timestamp that places a record.
    timestamp_fields: tuple[str, ...]
    record_type: str
    # Field whose value splits the count into extra recordTypes, and that mapping.
    category_field: str | None = None
    category_record_types: Mapping[str, str] = field(default_factory=dict)

    @property
    def record_types(self) -> tuple[str, ...]:
        if self.name == "FeedbackItem":
            return FEEDBACK_RECORD_TYPES
        return (self.record_type, *self.category_record_types.values())


FEEDBACK_RECORD_TYPES: tuple[str, ...] = (
    "feedbackItems",
    "feedbackItemsByScorecard",
    "feedbackItemsByScore",
)

SOURCE_MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "Item",
            ("listItemByAccountIdAndCreatedAt",),
            ("createdAt",),
            ("createdAt",),
            "items",
            "createdByType",
            {"prediction": "predictionItems", "evaluation": "evaluationItems"},
        ),
        ModelSpec(
            "ScoreResult",
            ("listScoreResultByAccountIdAndUpdatedAt",),
            ("updatedAt",),
            ("updatedAt",),
            "scoreResults",
            "type",
            {"prediction": "predictionScoreResults", "evaluation": "evaluationScoreResults"},
        ),
        ModelSpec("Task", ("listTaskByAccountIdAndUpdatedAt",), ("updatedAt",),
                  ("updatedAt",), "tasks"),
        ModelSpec("Evaluation", ("listEvaluationByAccountIdAndUpdatedAt",), ("updatedAt",),
                  ("updatedAt",), "evaluations"),
        ModelSpec("Procedure", ("listProcedureByAccountIdAndUpdatedAt",), ("updatedAt",),
                  ("updatedAt",), "procedures"),
        ModelSpec("ChatSession", ("listChatSessionByAccountIdAndUpdatedAt",), ("updatedAt",),
                  ("updatedAt",), "chatSessions"),
        ModelSpec(
            "FeedbackItem",
            ("listFeedbackItemByAccountIdAndEditedAt", "listFeedbackItemByAccountIdAndUpdatedAt"),
            ("editedAt", "updatedAt"),
            ("editedAt", "updatedAt", "createdAt"),
            "feedbackItems",
        ),
    )
}


def model_for_table(table_name: str) -> ModelSpec | None:
    """Exact match on the prefix before the first '-' (`Item-abc-NONE` -> Item)."""
    return SOURCE_MODELS.get(table_name.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class CountResult:
    """Outcome of one counting pass (DESIGN §3). Every input is in exactly one tally."""

    window_start: datetime
    window_end: datetime
    sizes: tuple[int, ...]
    processed: int
    missing: int
    invalid: int
    outside_window: int
    # counts[size][i]: bucket i of that size from window_start.
    counts: Mapping[int, list[int]]
    # category_counts[label][size]: same shape; label None = no category.
    category_counts: Mapping[str | None, Mapping[int, list[int]]]
    # A few invalid inputs (repr-truncated) for the log; never the whole batch.
    invalid_examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    """Identity of one AggregatedMetrics record (its `compositeKey` within an account)."""

    account_id: str
    record_type: str
    start: datetime  # aware UTC, aligned to `minutes`
    minutes: int
    scorecard_id: str | None = None  # feedbackItemsByScorecard / feedbackItemsByScore
    score_id: str | None = None  # feedbackItemsByScore

    @property
    def composite_key(self) -> str:
        from metrics_agg.timestamps import format_bucket_time

        ts = format_bucket_time(self.start)
        if self.record_type == "feedbackItemsByScore":
            return f"{self.record_type}#{self.score_id}#{ts}#{self.minutes}"
        if self.record_type == "feedbackItemsByScorecard":
            return f"{self.record_type}#{self.scorecard_id}#{ts}#{self.minutes}"
        return f"{self.record_type}#{ts}#{self.minutes}"


@dataclass(frozen=True, slots=True)
class BucketValue:
    """What a bucket says: the part that is compared to decide whether to write."""

    count: int
    complete: bool
    # Feedback buckets: {"changedCount", "unchangedCount", "invalidCount"}; else None.
    metadata: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class StoredBucket:
    """An AggregatedMetrics record as read back from the API."""

    key: BucketKey
    value: BucketValue
    updated_at: str  # as stored; compared as DynamoDB compares strings
    created_at: str | None = None


@dataclass(frozen=True, slots=True)
class BucketWrite:
    """One conditional create or update of an AggregatedMetrics record."""

    key: BucketKey
    value: BucketValue
    snapshot_time: datetime  # becomes `updatedAt`; the write's condition compares to it
    create: bool  # False: update an existing key
    created_at: datetime | None = None  # for creates; updates keep the stored one
