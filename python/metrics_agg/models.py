"""Typed values that cross module boundaries, and the one registry of source models
(`SOURCE_MODELS`, docs/design.md §2).

Everything model-specific the runtime and the local stack need is a field of its
`ModelSpec`: queries and sort keys, timestamp fields, recordTypes (category types, or
scopes for FeedbackItem) and the default stream batching. Adding a model is a new spec here,
its list queries in `graphql/documents/` (then codegen), its table's mapping in
`template.yaml` and its record fields in `local/server/seeding.py`; `tests/test_registry.py`
fails until all of them exist.

Raw Lambda and GraphQL dicts stop at `stream_events` and `graphql/`; everything
else passes these frozen dataclasses.
"""

from __future__ import annotations

__all__ = [
    "BUCKET_SIZES",
    "ERROR_FIELDS",
    "FEEDBACK_RECORD_TYPES",
    "MODEL_OF_RECORD_TYPE",
    "SCOPE_OF",
    "SOURCE_MODELS",
    "Batch",
    "BucketDifference",
    "BucketKey",
    "BucketValue",
    "BucketWrite",
    "CountResult",
    "ErrorRule",
    "ErrorRules",
    "HourRange",
    "ModelSpec",
    "OffsetTimestamps",
    "RangeRecords",
    "ScopeSpec",
    "Snapshot",
    "SourceRead",
    "StoredBucket",
    "StreamChange",
    "UnitCounts",
    "UnitKey",
    "UnitOutcome",
    "VerifyReport",
    "WorkUnit",
    "WriteOutcome",
    "model_for_table",
]

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

BUCKET_SIZES: tuple[int, ...] = (1, 5, 15, 60)


@dataclass(frozen=True, slots=True)
class ScopeSpec:
    """One scoped recordType: counted over all records, per scorecard, or per score.

    Scoped models count all their scopes in one labelled pass, with the answer-class
    metadata (`count.feedback_class`) on every bucket (docs/design.md §4.4).
    """

    record_type: str
    by_scorecard: bool = False  # compositeKey carries the scorecardId
    by_score: bool = False  # compositeKey carries the scoreId (one scope per scoreId)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One way a record counts as an error (`errorCount`, docs/design.md §2): its `field` holds

    - a `str` equal to one of `values` (exactly, case included), or
    - with `at_least`, a whole number >= it: an `int` (not a bool), or a `str` of ASCII
      digits only (ScoreResult.code is a string such as "500").

    Anything else (absent, None, other types, "5xx", " 500") does not match. The Rust and
    the Python counters evaluate these rules in their single pass over the records.
    """

    field: str
    values: tuple[str, ...] = ()
    at_least: int | None = None


# A record is an error when any rule matches; () means the model has no error predicate
# and its buckets carry no errorCount at all (unset, not 0).
ErrorRules = tuple[ErrorRule, ...]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How one Amplify model is read and which recordTypes it feeds (docs/design.md §2)."""

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
    # Scoped recordTypes instead of category ones (FeedbackItem); the first is over all.
    scopes: tuple[ScopeSpec, ...] = ()
    # The stream mapping's default (BatchSize, MaximumBatchingWindowInSeconds): the local
    # mapping uses it, template.yaml's `<Model>BatchSize` / `<Model>BatchingWindowSeconds`
    # defaults must match it (docs/design.md §6). An invocation's cost follows the change
    # (§4.8), so batches are not throttled: a 1 s window keeps lag within seconds.
    batching: tuple[int, float] = (1000, 1.0)
    # Upstream's own failure conventions (AnthusAI/Plexus dashboard/amplify/data/resource.ts
    # and its task/procedure components); `Config.errors` overrides them per model.
    errors: ErrorRules = ()

    @property
    def record_types(self) -> tuple[str, ...]:
        if self.scopes:
            return tuple(s.record_type for s in self.scopes)
        return (self.record_type, *self.category_record_types.values())

    def scopes_of(self, record: Mapping[str, object]) -> list[tuple[str, str | None, str | None]]:
        """(recordType, scorecardId, scoreId) of every scope a record of a scoped model
        counts in: all records; per scorecard when it has one; per score when it has one."""
        sc, score = record.get("scorecardId"), record.get("scoreId")
        sc_id = sc if isinstance(sc, str) and sc else None
        score_id = score if isinstance(score, str) and score else None
        out: list[tuple[str, str | None, str | None]] = []
        for scope in self.scopes:
            if scope.by_score:
                if score_id is not None:
                    out.append((scope.record_type, sc_id, score_id))
            elif scope.by_scorecard:
                if sc_id is not None:
                    out.append((scope.record_type, sc_id, None))
            else:
                out.append((scope.record_type, None, None))
        return out


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
            # An HTTP-like response code ("500") or the sync status "error".
            errors=(ErrorRule("code", at_least=400), ErrorRule("status", ("error",))),
        ),
        ModelSpec(
            "Task",
            ("listTaskByAccountIdAndUpdatedAt",),
            ("updatedAt",),
            ("updatedAt",),
            "tasks",
            errors=(ErrorRule("status", ("FAILED",)),),
        ),
        ModelSpec(
            "Evaluation",
            ("listEvaluationByAccountIdAndUpdatedAt",),
            ("updatedAt",),
            ("updatedAt",),
            "evaluations",
            errors=(ErrorRule("status", ("FAILED",)),),
        ),
        ModelSpec(
            "Procedure",
            ("listProcedureByAccountIdAndUpdatedAt",),
            ("updatedAt",),
            ("updatedAt",),
            "procedures",
            errors=(ErrorRule("status", ("FAILED", "ERROR")),),
        ),
        ModelSpec(
            "ChatSession",
            ("listChatSessionByAccountIdAndUpdatedAt",),
            ("updatedAt",),
            ("updatedAt",),
            "chatSessions",
        ),
        ModelSpec(
            "FeedbackItem",
            ("listFeedbackItemByAccountIdAndEditedAt", "listFeedbackItemByAccountIdAndUpdatedAt"),
            ("editedAt", "updatedAt"),
            ("editedAt", "updatedAt", "createdAt"),
            "feedbackItems",
            scopes=(
                ScopeSpec("feedbackItems"),
                ScopeSpec("feedbackItemsByScorecard", by_scorecard=True),
                ScopeSpec("feedbackItemsByScore", by_scorecard=True, by_score=True),
            ),
        ),
    )
}
# recordType -> the model it counts (the scheduled pass maps discovered recordTypes back).
MODEL_OF_RECORD_TYPE: Mapping[str, str] = {
    rt: spec.name for spec in SOURCE_MODELS.values() for rt in spec.record_types
}

# The recordTypes of scoped models: their buckets carry the answer-class metadata.
FEEDBACK_RECORD_TYPES: tuple[str, ...] = tuple(
    rt for spec in SOURCE_MODELS.values() if spec.scopes for rt in spec.record_types
)
# recordType -> its scope, for the scoped ones (compositeKey and decoding).
SCOPE_OF: Mapping[str, ScopeSpec] = {
    s.record_type: s for spec in SOURCE_MODELS.values() for s in spec.scopes
}


# The fields error rules may test, per model: the string fields the source reads select
# (graphql/documents/list_source_records.graphql) besides timestamps and ids. A rule on
# any other field would never see a value, so `Config` refuses it.
ERROR_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Item": ("createdByType",),
    "ScoreResult": ("code", "status", "type"),
    "Task": ("status",),
    "Evaluation": ("status",),
    "Procedure": ("status",),
    "ChatSession": ("status",),
    "FeedbackItem": ("initialAnswerValue", "finalAnswerValue"),
}


def model_for_table(table_name: str) -> ModelSpec | None:
    """Exact match on the prefix before the first '-' (`Item-abc-NONE` -> Item)."""
    return SOURCE_MODELS.get(table_name.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class CountResult:
    """Outcome of one counting pass (docs/design.md §3). Every input is in exactly one tally."""

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
    # With error rules (`count_records(errors=...)`): the processed records that are
    # errors, shaped like `counts` / `category_counts`; None / {} without rules.
    error_counts: Mapping[int, list[int]] | None = None
    category_error_counts: Mapping[str | None, Mapping[int, list[int]]] = field(
        default_factory=dict
    )


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
        scope = SCOPE_OF.get(self.record_type)
        if scope is not None and scope.by_score:
            return f"{self.record_type}#{self.score_id}#{ts}#{self.minutes}"
        if scope is not None and scope.by_scorecard:
            return f"{self.record_type}#{self.scorecard_id}#{ts}#{self.minutes}"
        return f"{self.record_type}#{ts}#{self.minutes}"


@dataclass(frozen=True, slots=True)
class BucketValue:
    """What a bucket says: the part that is compared to decide whether to write."""

    count: int
    complete: bool
    # Feedback buckets: {"changedCount", "unchangedCount", "invalidCount"}; else None.
    metadata: Mapping[str, int] | None = None
    # Records matching the model's error rules; None: the model has none (left unset).
    error_count: int | None = None


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
    # An update retried after a false conflict: the stored `updatedAt` string it found to be
    # an older instant; the write is then conditional on exactly that value (see
    # `graphql.writes.update_condition`).
    expected_updated_at: str | None = None


# --- Stage values (docs/design.md §4): event -> plan -> read -> count -> write -> report ---


@dataclass(frozen=True, slots=True)
class StreamChange:
    """One usable DynamoDB stream record, decoded (docs/design.md §4.1)."""

    model: str
    account_id: str
    record_id: str
    event_name: str  # "INSERT" | "MODIFY" | "REMOVE"
    sequence_number: str  # decimal digits; compare with `int()`
    # The placing timestamp of each image (ModelSpec.timestamp_fields, first present wins);
    # None when the image is absent or its timestamp is missing or invalid.
    old_time: datetime | None
    new_time: datetime | None
    old_image: Mapping[str, object] | None
    new_image: Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class OffsetTimestamps:
    """Records of one model whose placing timestamp has a zone offset beyond the read margin.

    docs/design.md §4.3: the index sorts the timestamp string (local time), the reads cover UTC
    ranges widened by `Config.zone_margin_minutes`, so such a record can sit outside the
    read of its own hour: a recount may miss it. Seen in a batch's images or in the rows
    a read returned; ids only, never contents.
    """

    model: str
    ids: frozenset[str]
    max_offset_minutes: int  # the largest |offset| seen
    unnamed: int = 0  # such records without a string id (counted, cannot be named)

    @property
    def count(self) -> int:
        return len(self.ids) + self.unnamed

    def merged(self, other: OffsetTimestamps) -> OffsetTimestamps:
        """Both sightings as one (a record seen twice, by id, counts once)."""
        return OffsetTimestamps(
            self.model,
            self.ids | other.ids,
            max(self.max_offset_minutes, other.max_offset_minutes),
            self.unnamed + other.unnamed,
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """A parsed stream event: the usable changes plus tallies of what was skipped."""

    changes: tuple[StreamChange, ...]
    total_records: int
    unknown_tables: int = 0
    malformed: int = 0
    invalid_timestamps: int = 0  # images whose timestamp is present but not of the grammar
    # Per model: records with an image whose timestamp's zone offset exceeds the margin.
    offsets: tuple[OffsetTimestamps, ...] = ()
    # The oldest `ApproximateCreationDateTime` of the batch (any record, even one skipped):
    # what `FreshnessSeconds` measures from. None when no record carries one.
    oldest_created: datetime | None = None


@dataclass(frozen=True, slots=True, order=True)
class UnitKey:
    """One (model, account) pair: the unit of reading, writing and failure (docs/design.md §4.6)."""

    model: str
    account_id: str


@dataclass(frozen=True, slots=True, order=True)
class HourRange:
    """``[start, end)``, both aware UTC and aligned to whole hours (the incremental path,
    docs/design.md §4.8, also reads minute-aligned spans of this type: `hours` is then 0)."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start).total_seconds()) // 3600


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """What to recount for one (model, account), and why (docs/design.md §4.2)."""

    key: UnitKey
    ranges: tuple[HourRange, ...]  # sorted, disjoint, non-adjacent
    changes: tuple[StreamChange, ...] = ()  # this unit's batch records, in sequence order
    # docs/design.md §4.5: buckets holding an old or new timestamp of a batch record; always
    # written.
    touched: frozenset[BucketKey] = frozenset()
    # Hours a batch record points at but outside the limits: reported, not recounted.
    skipped_hours: tuple[datetime, ...] = ()
    # MODIFYs of ``changes`` that change nothing counted: they touch no bucket.
    unchanged: int = 0

    @property
    def lowest_sequence(self) -> str | None:
        if not self.changes:
            return None
        return min((c.sequence_number for c in self.changes), key=int)


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One list query of a model over ``[start, end)``, and how much it is expected to hold.

    ``hour_counts``: one entry per hour from ``start``, the records that hour held at the
    last write (its stored 60-minute bucket), None when unknown; it only sizes the read.
    """

    query_index: int
    start: datetime
    end: datetime
    hour_counts: tuple[int | None, ...] = ()


@dataclass(frozen=True, slots=True)
class RangeRecords:
    """The source records read for one hour range (plain dicts, as the counter takes them)."""

    range: HourRange
    records: tuple[Mapping[str, object], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A unit's records as of ``snapshot_time`` (taken just before the reads started)."""

    unit: WorkUnit
    snapshot_time: datetime
    ranges: tuple[RangeRecords, ...]
    records_read: int  # rows returned by the list queries, before merging
    merged_from_batch: int  # batch images that replaced or added a record
    removed_by_batch: int  # ids the batch REMOVEd that the index still showed
    # Rows read whose timestamp has a zone offset beyond the read margin (None: none).
    offsets: OffsetTimestamps | None = None


@dataclass(frozen=True, slots=True)
class UnitCounts:
    """Desired bucket values of every recordType of a unit (docs/design.md §4.4)."""

    unit: WorkUnit
    snapshot_time: datetime
    desired: Mapping[BucketKey, BucketValue]
    processed: int
    missing: int
    invalid: int
    outside_window: int
    one_minute_total: int  # sum of the 1-minute buckets of the main recordType (cross-check)
    invalid_examples: tuple[str, ...] = ()
    errors: bool = False  # the model has error rules: every bucket written carries errorCount


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What writing one unit did (docs/design.md §4.5)."""

    compared: int  # desired plus stored buckets looked at
    created: int
    updated: int
    superseded: int  # a newer snapshot had already written the bucket: not a failure
    rounds: int
    # Composite keys of the superseded writes (the incremental path derives from the rest).
    superseded_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class BucketDifference:
    """A stored bucket that disagrees with the truth (``verify``)."""

    key: BucketKey
    stored: BucketValue | None  # None: no record stored (readers take it as 0)
    truth: BucketValue  # count 0 when no record of the snapshot falls in the bucket
    fields: tuple[str, ...]  # which of "count", "complete", "metadata" differ

    @property
    def reason(self) -> str:
        return ", ".join(self.fields)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``pipeline.verify``: every stored bucket that differs from a fresh count."""

    mismatches: tuple[BucketDifference, ...]
    buckets_checked: int
    records_counted: int
    # Per model: rows read with a zone offset beyond the margin. The truth above is a
    # recount from the same index, so it may miss such records as well (docs/design.md §4.3).
    offsets: tuple[OffsetTimestamps, ...] = ()
    zone_margin_minutes: int = 0  # the margin the reads used


@dataclass(frozen=True, slots=True)
class UnitOutcome:
    """The report of one unit: counted and written, or failed and retried from ``sequence``."""

    key: UnitKey
    ok: bool
    error: str | None = None  # error class and message; never payloads
    sequence: str | None = None  # lowest SequenceNumber of the unit's batch records
    records_counted: int = 0
    invalid: int = 0
    missing: int = 0
    buckets_written: int = 0
    buckets_planned: int = 0  # dry runs: what would have been written
    superseded: int = 0
    offsets: OffsetTimestamps | None = None  # rows read with a zone offset beyond the margin
    records_read: int = 0  # source rows the list queries returned
    # docs/design.md §4.8: hours whose stored rows disagreed, so every minute of them was recounted.
    fallback_hours: int = 0
    derived: int = 0  # 5/15/60-minute buckets written as sums of stored 1-minute rows
    # docs/design.md §4.8: buckets a direct recount found wrong (count or metadata; not `complete`).
    drift_repaired: int = 0
    # Stream units: hours this unit recounted or derived that no scheduled reconcile is sure
    # to reread (`aggregator.recheck`); the pipeline hands them over for a delayed recount.
    recheck_hours: tuple[datetime, ...] = ()
    # The structured log's per-unit fields (`report.log_report`): HTTP requests this unit's
    # work was in (a shared request counts for every unit in it; retries not counted), the
    # hours it recounted or derived, minutes recounted from source records, and wall time.
    requests: int = 0
    hours: int = 0
    minutes_recounted: int = 0
    seconds: float = 0.0
