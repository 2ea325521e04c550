"""The test side's truth: every bucket implied by the tables, and the comparison of the
stored buckets with it; plus the stream driver and timestamp helpers the end-to-end and
reliability tests share.

The truth is computed from the tables (`Store.all_records`) with `datetime.fromisoformat`
and plain loops: deliberately NOT the package's counter, planner or timestamp parser (nor
`metrics_agg.local.demo.truth`, which the demo uses), so the tests check the package rather than
repeat it. It is written from the data contract alone (docs/design.md §2).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from metrics_agg.aggregator import pipeline
from metrics_agg.local.server import LocalStack, Store

SIZES = (1, 5, 15, 60)
TIMESTAMP = {
    "Item": ("createdAt",),
    "ScoreResult": ("updatedAt",),
    "Task": ("updatedAt",),
    "Evaluation": ("updatedAt",),
    "Procedure": ("updatedAt",),
    "ChatSession": ("updatedAt",),
    "FeedbackItem": ("editedAt", "updatedAt", "createdAt"),
}
BASE_TYPE = {
    "Item": "items",
    "ScoreResult": "scoreResults",
    "Task": "tasks",
    "Evaluation": "evaluations",
    "Procedure": "procedures",
    "ChatSession": "chatSessions",
}
CATEGORY = {
    "Item": ("createdByType", {"prediction": "predictionItems", "evaluation": "evaluationItems"}),
    "ScoreResult": (
        "type",
        {"prediction": "predictionScoreResults", "evaluation": "evaluationScoreResults"},
    ),
}
FEEDBACK_TALLIES = ("changedCount", "unchangedCount", "invalidCount")


def _code_at_least_400(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 400
    return isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 400


# docs/design.md §2, upstream's own failure conventions: which records count in errorCount.
# Models absent here have no errorCount at all (unset, not 0).
IS_ERROR = {
    "Task": lambda r: r.get("status") == "FAILED",
    "Evaluation": lambda r: r.get("status") == "FAILED",
    "Procedure": lambda r: r.get("status") in ("FAILED", "ERROR"),
    "ScoreResult": lambda r: _code_at_least_400(r.get("code")) or r.get("status") == "error",
}
ERROR_TYPES = {
    "tasks",
    "evaluations",
    "procedures",
    "scoreResults",
    "predictionScoreResults",
    "evaluationScoreResults",
}

Truth = dict[str, tuple[int, dict[str, int] | None]]


# --------------------------------------------------------------------------- time


def iso(dt: datetime) -> str:
    """What Amplify clients send: UTC, milliseconds, Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def recent_now() -> datetime:
    """Mid-minute, two minutes ago: records of a test never straddle the wall clock."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=2) + timedelta(seconds=30)


def instant(value: object) -> datetime | None:
    """The UTC instant of an ISO timestamp; None for absent or malformed values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def bucket_start(dt: datetime, minutes: int) -> str:
    """The start of the bucket that holds ``dt``, as stored (`...T12:05:00Z`)."""
    floored = dt.replace(second=0, microsecond=0)
    since_midnight = floored.hour * 60 + floored.minute  # every size divides a day
    start = floored - timedelta(minutes=since_midnight % minutes)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the truth


def _plain_keys(model: str, record: Mapping[str, Any], dt: datetime) -> list[str]:
    """The compositeKeys a record at ``dt`` counts in, at every size: its model's
    recordType and, when its category field maps to one, that category's."""
    types = [BASE_TYPE[model]]
    if model in CATEGORY:
        name, mapping = CATEGORY[model]
        if record.get(name) in mapping:
            types.append(mapping[record[name]])
    return [f"{t}#{bucket_start(dt, n)}#{n}" for n in SIZES for t in types]


def truth(store: Store, account: str) -> Truth:
    """compositeKey -> (count, feedback metadata) for every non-empty bucket."""
    counts: Counter[str] = Counter()
    meta: dict[str, Counter[str]] = {}
    for model, fields in TIMESTAMP.items():
        for record in store.all_records(model, account):
            raw = next((record[f] for f in fields if record.get(f) not in (None, "")), None)
            dt = instant(raw)
            if dt is None:
                continue
            if model == "FeedbackItem":
                a, b = record.get("initialAnswerValue"), record.get("finalAnswerValue")
                if record.get("isInvalid") or a is None or b is None:
                    kind = "invalidCount"
                else:
                    kind = "changedCount" if str(a) != str(b) else "unchangedCount"
                scopes = ["feedbackItems"]
                if record.get("scorecardId"):
                    scopes.append(f"feedbackItemsByScorecard#{record['scorecardId']}")
                    if record.get("scoreId"):
                        scopes.append(f"feedbackItemsByScore#{record['scoreId']}")
                for n in SIZES:
                    for scope in scopes:
                        key = f"{scope}#{bucket_start(dt, n)}#{n}"
                        counts[key] += 1
                        meta.setdefault(key, Counter())[kind] += 1
                continue
            for key in _plain_keys(model, record, dt):
                counts[key] += 1
    return {
        k: (v, {n: meta[k][n] for n in FEEDBACK_TALLIES} if k in meta else None)
        for k, v in counts.items()
    }


def error_truth(store: Store, account: str) -> dict[str, int]:
    """compositeKey -> errorCount for every bucket holding an error (docs/design.md §2 defaults)."""
    errors: Counter[str] = Counter()
    for model, is_error in IS_ERROR.items():
        for record in store.all_records(model, account):
            dt = instant(next((record[f] for f in TIMESTAMP[model] if record.get(f)), None))
            if dt is None or not is_error(record):
                continue
            for key in _plain_keys(model, record, dt):
                errors[key] += 1
    return dict(errors)


def truth_problems(
    store: Store, account: str, *, check_complete: bool
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(stored buckets by compositeKey, problems): every stored bucket against the truth
    (absent = 0), every non-empty truth bucket that is not stored and, with
    ``check_complete``, `complete` against "the bucket had ended when it was written"."""
    want = truth(store, account)
    want_errors = error_truth(store, account)
    stored = {m["compositeKey"]: m for m in store.all_metrics(account)}
    problems = []
    for key, item in stored.items():
        count, metadata = want.get(key, (0, None))
        if item["count"] != count:
            problems.append(f"{key}: stored {item['count']}, truth {count}")
        if item["recordType"] in ERROR_TYPES:
            if item.get("errorCount") != want_errors.get(key, 0):
                problems.append(
                    f"{key}: errorCount {item.get('errorCount')}, truth {want_errors.get(key, 0)}"
                )
        elif "errorCount" in item:
            problems.append(f"{key}: errorCount {item['errorCount']} on a model without errors")
        if item["recordType"].startswith("feedbackItems"):
            raw = item.get("metadata")
            have = json.loads(raw) if isinstance(raw, str) else (raw or {})
            expected = metadata or {}
            if any(have.get(n, 0) != expected.get(n, 0) for n in {*FEEDBACK_TALLIES, *have}):
                problems.append(f"{key}: metadata {have}, truth {metadata}")
        if check_complete:
            end, updated = instant(item["timeRangeEnd"]), instant(item["updatedAt"])
            if end is None or updated is None:
                problems.append(f"{key}: timeRangeEnd or updatedAt is not a timestamp")
            elif item["complete"] != (end <= updated):
                problems.append(
                    f"{key}: complete={item['complete']} but ends {end}, wrote {updated}"
                )
    problems += [f"{k}: truth {c}, not stored" for k, (c, _) in want.items() if k not in stored]
    return stored, problems


def assert_matches_truth(store: Store, account: str) -> dict[str, dict[str, Any]]:
    """Every stored bucket equals the truth, `complete` included; returns them by key."""
    stored, problems = truth_problems(store, account, check_complete=True)
    assert not problems, "\n".join(problems[:30])
    return stored


# --------------------------------------------------------------------------- the stream


class Stream:
    """Hands the stack's new stream records to the handler, one event per table (as the
    mapping does), remembering what was delivered."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.cursor: dict[str, int] = {}

    def take(self, model: str) -> list[dict[str, Any]]:
        table = f"{model}-local-NONE"
        records = self.stack.store.read_stream(table, self.cursor.get(table, 0), 100_000)
        if records:
            self.cursor[table] = int(records[-1]["dynamodb"]["SequenceNumber"])
        return records

    def deliver(self, **kwargs: Any) -> list[dict[str, Any]]:
        responses = []
        for model in TIMESTAMP:
            records = self.take(model)
            if records:
                event = {"Records": records}
                responses.append(pipeline.handle_event(event, config=self.stack.config(), **kwargs))
        return responses
