"""The demo's app writes: a realistic, seeded mix of records planned over a simulated
window, the edge cases that make counting hard (docs/design.md §4), and the one-line mix summary.

Everything here only plans or performs writes; `demo` runs them and checks the result.
"""

from __future__ import annotations

__all__ = ["WritePlan", "api_write", "mix_line", "one_more_item", "plan_writes", "write_edge_cases"]

import random
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_SCORECARDS = {
    "sc-quality": ("score-tone", "score-accuracy"),
    "sc-compliance": ("score-disclosure",),
}


# Status mixes, upstream's values (errorCount counts FAILED, and a procedure's ERROR).
_STATUSES: dict[str, dict[str, int]] = {
    "Task": {"COMPLETED": 80, "RUNNING": 10, "FAILED": 10},
    "Evaluation": {"COMPLETED": 80, "RUNNING": 12, "FAILED": 8},
    "Procedure": {"COMPLETE": 75, "RUNNING": 10, "FAILED": 8, "ERROR": 7},
}


def _random_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def api_write(client: Any, action: str, model: str, fields: Mapping[str, Any]) -> None:
    """One create/update/delete through the API (LocalClient raises on any error)."""
    if action == "create":
        client.create(model, **fields)
    else:
        rest = {k: v for k, v in fields.items() if k != "id"}
        getattr(client, action)(model, fields["id"], **rest)


def _aws_time(dt: datetime, rng: random.Random) -> str:
    """What Amplify clients send (`new Date().toISOString()`): milliseconds and Z.

    Offsets (`+02:00`) are valid AWSDateTime too, but AppSync stores the string as sent,
    so an index range over UTC strings cannot find them: the demo keeps to what clients
    write. (`rng` is kept for a reproducible mix of fraction widths later.)
    """
    del rng
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def one_more_item(account: str, rng: random.Random) -> dict[str, Any]:
    """A prediction Item stamped now: the stream event the demo shows the log of."""
    ts = _aws_time(datetime.now(UTC), rng)
    return {
        "id": _random_id(rng),
        "accountId": account,
        "createdAt": ts,
        "updatedAt": ts,
        "createdByType": "prediction",
        "description": "demo item, shown with its aggregator log",
    }


@dataclass(slots=True)
class WritePlan:
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    mix: Counter[str] = field(default_factory=Counter)


def plan_writes(
    rng: random.Random, account: str, start: datetime, span: timedelta, n: int
) -> WritePlan:
    """n creates with timestamps spread over [start, start + span), in time order."""
    plan = WritePlan()
    weights = {
        "Item": 35,
        "ScoreResult": 25,
        "FeedbackItem": 20,
        "Task": 8,
        "ChatSession": 5,
        "Evaluation": 4,
        "Procedure": 3,
    }
    models = rng.choices(list(weights), weights=list(weights.values()), k=n)
    offsets = sorted(rng.random() for _ in range(n))
    for model, frac in zip(models, offsets, strict=True):
        at = start + span * frac
        ts = _aws_time(at, rng)
        record: dict[str, Any] = {
            "id": _random_id(rng),
            "accountId": account,
        }
        if model == "Item":
            kind = rng.choices(["prediction", "evaluation", None], weights=[50, 30, 20])[0]
            record |= {"createdAt": ts, "updatedAt": ts, "description": "demo item"}
            if kind is not None:
                record["createdByType"] = kind
            plan.mix[f"Item:{kind or 'other'}"] += 1
        elif model == "ScoreResult":
            kind = rng.choices(["prediction", "evaluation"], weights=[60, 40])[0]
            # Upstream's failure marks (errorCount): an HTTP-like code, or status "error".
            code = rng.choices(["200", "500", "404"], weights=[92, 5, 3])[0]
            status = rng.choices(["synced", "error"], weights=[97, 3])[0]
            record |= {
                "createdAt": ts,
                "updatedAt": ts,
                "type": kind,
                "value": rng.choice(["yes", "no"]),
                "code": code,
                "status": status,
            }
            plan.mix["ScoreResult:error"] += code != "200" or status == "error"
        elif model == "FeedbackItem":
            scorecard = rng.choice(list(_SCORECARDS))
            score = rng.choice(_SCORECARDS[scorecard])
            initial = rng.choice(["yes", "no"])
            outcome = rng.choices(
                ["changed", "unchanged", "flagged", "unanswered"], weights=[30, 55, 8, 7]
            )[0]
            final: str | None = {
                "changed": "no" if initial == "yes" else "yes",
                "unanswered": None,
            }.get(outcome, initial)
            created = _aws_time(at - timedelta(minutes=rng.randint(1, 30)), rng)
            record |= {
                "scorecardId": scorecard,
                "scoreId": score,
                "createdAt": created,
                "initialAnswerValue": initial,
                "finalAnswerValue": final,
                "isInvalid": outcome == "flagged",
            }
            if rng.random() < 0.7:  # edited in the UI: editedAt places it
                record |= {"editedAt": ts, "updatedAt": ts, "editorName": "demo"}
            else:
                record["updatedAt"] = ts
            plan.mix[f"FeedbackItem:{outcome}"] += 1
        else:
            record |= {"createdAt": ts, "updatedAt": ts}
            statuses = _STATUSES.get(model)
            if statuses is not None:
                record["status"] = rng.choices(list(statuses), weights=list(statuses.values()))[0]
                plan.mix[f"{model}:error"] += record["status"] in ("FAILED", "ERROR")
        plan.mix[model] += 1
        plan.writes.append((model, record))
    return plan


def mix_line(mix: Counter[str]) -> str:
    items = ", ".join(
        f"{mix[f'Item:{k}']} {k}" for k in ("prediction", "evaluation", "other") if mix[f"Item:{k}"]
    )
    feedback = ", ".join(
        f"{mix[f'FeedbackItem:{k}']} {k}"
        for k in ("changed", "unchanged", "flagged", "unanswered")
        if mix[f"FeedbackItem:{k}"]
    )
    parts = [
        f"Item {mix['Item']} ({items})",
        f"ScoreResult {mix['ScoreResult']} ({mix['ScoreResult:error']} errors)",
        f"FeedbackItem {mix['FeedbackItem']} ({feedback})",
    ]
    for m in ("Task", "ChatSession", "Evaluation", "Procedure"):
        if mix[m]:
            errors = f" ({mix[m + ':error']} failed)" if m != "ChatSession" else ""
            parts.append(f"{m} {mix[m]}{errors}")
    return " · ".join(parts)


def write_edge_cases(
    client: Any, store: Any, rng: random.Random, account: str, now: datetime, plan: WritePlan
) -> str:
    """The records that make counting hard, written after the mix (docs/design.md §4)."""
    ms = timedelta(milliseconds=1)
    # A task created RUNNING, then FAILED: it moves 5 minutes later (MODIFY) and into
    # the error counts.
    task_id = _random_id(rng)
    first = _aws_time(now - timedelta(minutes=8), rng)
    api_write(
        client,
        "create",
        "Task",
        {
            "id": task_id,
            "accountId": account,
            "createdAt": first,
            "updatedAt": first,
            "status": "RUNNING",
        },
    )
    api_write(
        client,
        "update",
        "Task",
        {
            "id": task_id,
            "status": "FAILED",
            "updatedAt": _aws_time(now - timedelta(minutes=3), rng),
        },
    )
    # An item deleted again (REMOVE: its bucket must go back down).
    victim = next(r for m, r in plan.writes if m == "Item")
    api_write(client, "delete", "Item", {"id": victim["id"]})
    # A reviewer changes an answer: the feedback item moves to "now" and to "changed".
    feedback = next((r for m, r in plan.writes if m == "FeedbackItem"), None)
    if feedback is not None:
        initial = feedback.get("initialAnswerValue") or "yes"
        api_write(
            client,
            "update",
            "FeedbackItem",
            {
                "id": feedback["id"],
                "finalAnswerValue": "no" if initial == "yes" else "yes",
                "isInvalid": False,
                "editedAt": _aws_time(now - ms, rng),
            },
        )
    # An item that arrives three hours late (its old hour must be recounted).
    late = _aws_time(now - timedelta(hours=3, minutes=rng.randint(0, 50)), rng)
    api_write(
        client,
        "create",
        "Item",
        {
            "id": _random_id(rng),
            "accountId": account,
            "createdAt": late,
            "updatedAt": late,
            "createdByType": "prediction",
        },
    )
    # A timestamp AppSync would reject today, from data written before validation existed:
    # it goes straight into the table (and its stream), and must be counted as invalid.
    stamp = _aws_time(now, rng)
    store.create(
        "Item",
        {
            "id": _random_id(rng),
            "accountId": account,
            "createdAt": "2024-02-30T10:00:00Z",
            "updatedAt": stamp,
            "createdByType": "prediction",
            "description": "legacy import",
        },
    )
    return (
        "1 task RUNNING -> FAILED 5 min later (update), 1 item deleted, 1 answer changed, "
        f"1 item 3 h late ({late[11:16]} UTC), 1 invalid createdAt (2024-02-30, written "
        "to the table directly as legacy data)"
    )
