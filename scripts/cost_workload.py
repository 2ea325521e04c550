"""The workload of scripts/cost_model.py: a seeded sequence of source writes, and the
warmed-up database each run starts from (docs/cost.md "What is measured").
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

from metrics_agg.local.server import LocalStack

MODELS = ("Item", "ScoreResult", "Task")
# The share of each kind of write (the rest: inserts).
MIX = {"modify_counted": 0.2, "modify_noop": 0.2, "delete": 0.1}
CATEGORY = {"Item": "createdByType", "ScoreResult": "type"}


@dataclass(frozen=True)
class Workload:
    rate: float  # source writes per second
    accounts: int
    window: float  # batching window, seconds
    seconds: float
    models: tuple[str, ...] = MODELS
    late: float = 0.05  # share of inserts back-dated 2-30 hours (never-aggregated hours)
    seed: int = 18
    warm: int = 20  # records per (model, account) already counted in the last two hours

    @property
    def label(self) -> str:
        return f"{self.rate:g} w/s x {self.accounts} acct x {self.window:g} s"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _minute(stamp: str) -> str:
    return stamp[:16]


def _new_fields(model: str, account: str, at: datetime, rng: Random) -> dict[str, Any]:
    stamp = _stamp(at)
    item: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "accountId": account,
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    if model in CATEGORY:
        item[CATEGORY[model]] = rng.choice(["prediction", "evaluation"])
    if model == "Task":
        item["status"] = rng.choice(["RUNNING", "COMPLETED", "FAILED"])
    if model == "ScoreResult":
        item["value"] = "yes"
    return item


class Writer:
    """The seeded sequence of source writes of one workload, written into a store."""

    def __init__(self, workload: Workload, store: Any, accounts: list[str]) -> None:
        self.w = workload
        self.store = store
        self.accounts = accounts
        self.rng = Random(workload.seed)
        self.pool: dict[str, dict[str, dict[str, Any]]] = {
            m: {r["id"]: r for r in store.all_records(m)} for m in workload.models
        }
        self.counts = {"insert": 0, "modify_counted": 0, "modify_noop": 0, "delete": 0}
        self.late = 0  # inserts into hours the warm-up never aggregated

    def _pick(self, model: str) -> dict[str, Any] | None:
        pool = self.pool[model]
        if not pool:
            return None
        return pool[self.rng.choice(sorted(pool))]

    def one(self) -> None:
        rng = self.rng
        model = rng.choice(self.w.models)
        now = datetime.now(UTC)
        r = rng.random()
        kind = "insert"
        edge = 0.0
        for name, share in MIX.items():
            edge += share
            if r < edge:
                kind = name
                break
        target = None if kind == "insert" else self._pick(model)
        if target is None:
            kind = "insert"
        if kind == "insert":
            at = now
            if rng.random() < self.w.late:
                at = now - timedelta(hours=rng.randrange(2, 30), minutes=rng.randrange(60))
                self.late += 1
            item = self.store.create(model, _new_fields(model, rng.choice(self.accounts), at, rng))
            self.pool[model][item["id"]] = item
        elif kind == "delete":
            assert target is not None
            self.store.delete(model, [target["id"]])
            del self.pool[model][target["id"]]
        else:
            assert target is not None
            self.pool[model][target["id"]] = self.store.update(
                model, [target["id"]], self._modify(model, target, now, kind)
            )
        self.counts[kind] += 1

    @staticmethod
    def _modify(model: str, old: dict[str, Any], now: datetime, kind: str) -> dict[str, Any]:
        stamp = _stamp(now)
        if kind == "modify_counted":
            if model == "Task":  # the error verdict flips
                return {
                    "updatedAt": stamp,
                    "status": "COMPLETED" if old.get("status") == "FAILED" else "FAILED",
                }
            other = "evaluation" if old.get(CATEGORY[model]) == "prediction" else "prediction"
            changes: dict[str, Any] = {CATEGORY[model]: other}
            if model != "Item":
                changes["updatedAt"] = stamp
            return changes
        # Nothing counted changes: a non-counted field, the placing timestamp kept in its
        # minute (a record updated twice within a minute; Item is placed by createdAt).
        kept = old["updatedAt"] if _minute(old["updatedAt"]) != _minute(stamp) else stamp
        if model == "Item":
            return {"updatedAt": stamp, "description": f"edited {stamp}"}
        if model == "Task":
            status = old.get("status")
            return {
                "updatedAt": kept,
                "status": "FAILED"
                if status == "FAILED"
                else ("COMPLETED" if status == "RUNNING" else "RUNNING"),
            }
        return {"updatedAt": kept, "explanation": f"edited {stamp}"}


def accounts(n: int) -> list[str]:
    return [f"acct-cost-{i:03d}" for i in range(n)]


def warm_database(path: Path, workload: Workload) -> None:
    """Seed `warm` records per (model, account) over the previous and current hour and
    recount them, so the measured writes land in hours whose buckets exist (steady state)."""
    with LocalStack(path, mapping=False) as stack:
        stack.fill_history(
            accounts(workload.accounts), workload.models, workload.warm, seed=workload.seed
        )


def copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
