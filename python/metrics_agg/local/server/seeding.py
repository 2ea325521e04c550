"""Realistic records for the seven source models, written in bulk through the store.

Ids depend on the seed, the model and the account: seeding a second account (or model)
with the same seed adds new records; the same seed twice for one account repeats ids, which
the store refuses. Timestamps are uniform in [start, end) and written in that order (stream
order = write order). `late_fraction` of the records carry a timestamp 1-6 hours older than
their write position (late data); `invalid_fraction` carry a timestamp string outside the
accepted grammar (docs/design.md §3) that still sorts inside its hour, so a reader's key range
finds it and must count it invalid: zone offsets with seconds (valid for AppSync's
AWSDateTime, invalid for the grammar), 10-digit fractions, minute 61, a trailing space.
The seed writes through the store, as data that predates validation would be stored.
"""

from __future__ import annotations

__all__ = ["SEEDERS", "SeedResult", "generate_records", "seed_accounts", "seed_records"]

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metrics_agg.local.server.store import Store
from metrics_agg.models import SOURCE_MODELS

Item = dict[str, Any]
_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class SeedResult:
    model: str
    count: int
    late: int
    invalid: int
    seconds: float


_MINUTES: dict[int, str] = {}


def _fmt(ms: int) -> str:
    """AppSync's fixed-width UTC form with milliseconds: YYYY-MM-DDTHH:MM:SS.sssZ."""
    minute, rest = divmod(ms, 60_000)
    prefix = _MINUTES.get(minute)
    if prefix is None:
        prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
        if len(_MINUTES) > 100_000:
            _MINUTES.clear()
        _MINUTES[minute] = prefix
    sec, milli = divmod(rest, 1000)
    return f"{prefix}{sec:02d}.{milli:03d}Z"


def _id_salt(model: str, account_id: str) -> int:
    """Mixed into every id, so one seed gives different ids for each (model, account)."""
    return int.from_bytes(hashlib.sha256(f"{model}\0{account_id}".encode()).digest()[:16])


def _uuid(rng: random.Random, salt: int = 0) -> str:
    h = f"{rng.getrandbits(128) ^ salt:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _invalid(ms: int, kind: int) -> str:
    base = _fmt(ms)
    if kind == 0:
        return base[:-1] + "+00:00:00"  # AWSDateTime accepts ±hh:mm:ss; the grammar does not
    if kind == 1:
        return base[:-1] + "1234567Z"  # 10 fraction digits
    if kind == 2:
        return base[:14] + "61" + base[16:]  # minute 61 (sorts inside its hour)
    return base + " "  # surrounding whitespace


def _choice(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    r = rng.random()
    for value, w in weighted:
        r -= w
        if r < 0:
            return value
    return weighted[-1][0]


@dataclass(frozen=True, slots=True)
class _Draw:
    """What a model's seeder draws from: the generator, the index and the two timestamps."""

    rng: random.Random
    i: int
    ts: str  # the timestamp that places the record (maybe late or invalid)
    created: str  # up to an hour before it


_SCORECARDS = tuple(f"scorecard-{i}" for i in range(3))
_SCORES = {sc: tuple(f"{sc}-score-{j}" for j in range(4)) for sc in _SCORECARDS}


def _seed_item(d: _Draw, rec: Item) -> None:
    by = _choice(d.rng, (("prediction", 0.5), ("evaluation", 0.3), ("other", 0.2)))
    rec.update(
        createdAt=d.ts,
        updatedAt=d.ts,
        externalId=f"ext-{d.i}",
        createdByType=by,
        description=f"seeded item {d.i}",
    )
    if by == "evaluation":
        rec["evaluationId"] = f"evaluation-{d.i % 7}"


def _seed_feedback_item(d: _Draw, rec: Item) -> None:
    rng = d.rng
    sc = rng.choice(_SCORECARDS)
    answers = ("Yes", "No", "NA")
    initial: str | None = rng.choice(answers)
    final: str | None = rng.choice(answers) if rng.random() < 0.3 else initial
    if rng.random() < 0.05:
        initial = None
    elif rng.random() < 0.05:
        final = None
    rec.update(
        scorecardId=sc,
        scoreId=rng.choice(_SCORES[sc]),
        itemId=f"item-{d.i}",
        initialAnswerValue=initial,
        finalAnswerValue=final,
        isInvalid=rng.random() < 0.05,
        createdAt=d.created,
        updatedAt=d.ts,
    )
    if rng.random() < 0.6:
        rec.update(editedAt=d.ts, editorName="seed", editCommentValue="changed")


def _seed_score_result(d: _Draw, rec: Item) -> None:
    rng = d.rng
    rec.update(createdAt=d.created, updatedAt=d.ts)
    sc = rng.choice(_SCORECARDS)
    rec.update(
        itemId=f"item-{d.i}",
        scorecardId=sc,
        scoreId=rng.choice(_SCORES[sc]),
        value=rng.choice(("Yes", "No")),
        code="200",
        type=_choice(rng, (("prediction", 0.6), ("evaluation", 0.3), ("other", 0.1))),
    )


def _seed_task(d: _Draw, rec: Item) -> None:
    rec.update(createdAt=d.created, updatedAt=d.ts)
    rec.update(
        type="evaluation",
        status=d.rng.choice(("PENDING", "RUNNING", "COMPLETED", "FAILED")),
        target=f"scorecard-{d.i % 3}",
        command="plexus evaluate",
    )


def _seed_evaluation(d: _Draw, rec: Item) -> None:
    rec.update(createdAt=d.created, updatedAt=d.ts)
    sc = d.rng.choice(_SCORECARDS)
    rec.update(
        type=d.rng.choice(("accuracy", "consistency")),
        status="COMPLETED",
        scorecardId=sc,
        scoreId=d.rng.choice(_SCORES[sc]),
    )


def _seed_procedure(d: _Draw, rec: Item) -> None:
    rec.update(createdAt=d.created, updatedAt=d.ts)
    rec.update(name=f"procedure-{d.i % 11}", status="ACTIVE")


def _seed_chat_session(d: _Draw, rec: Item) -> None:
    rec.update(createdAt=d.created, updatedAt=d.ts)
    rec.update(name=f"chat-{d.i}", status="OPEN", procedureId=f"procedure-{d.i % 11}")


# One seeder per model of the registry (`models.SOURCE_MODELS`); no catch-all, so a new
# model without one is an error here and in tests/test_registry.py, not silent filler.
SEEDERS: Mapping[str, Callable[[_Draw, Item], None]] = {
    "Item": _seed_item,
    "ScoreResult": _seed_score_result,
    "Task": _seed_task,
    "Evaluation": _seed_evaluation,
    "Procedure": _seed_procedure,
    "ChatSession": _seed_chat_session,
    "FeedbackItem": _seed_feedback_item,
}


def generate_records(
    model: str,
    account_id: str,
    count: int,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    late_fraction: float = 0.0,
    invalid_fraction: float = 0.0,
    kinds: Counter[str] | None = None,
) -> Iterator[Item]:
    """Yield `count` records of `model` in write order (see the module docstring); when
    `kinds` is given, each late or invalid record adds one to its "late" or "invalid".

    Raises:
        ValueError: unknown model, naive or empty window, fractions outside [0, 1].
    """
    if model not in SOURCE_MODELS:
        raise ValueError(f"unknown model {model!r}; one of {', '.join(SOURCE_MODELS)}")
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError("start and end must be aware datetimes with start < end")
    if not (
        0 <= late_fraction <= 1
        and 0 <= invalid_fraction <= 1
        and late_fraction + invalid_fraction <= 1
    ):
        raise ValueError("late and invalid fractions must be in [0, 1] and sum to at most 1")
    rng = random.Random(seed)
    lo = int(start.timestamp() * 1000)
    span = int(end.timestamp() * 1000) - lo
    stamps = sorted(lo + int(rng.random() * span) for _ in range(count))
    fill = SEEDERS.get(model)
    if fill is None:
        raise ValueError(f"no seeder for model {model!r}: add one to SEEDERS (seeding.py)")
    hour_ms = 3_600_000
    salt = _id_salt(model, account_id)
    for i, ms in enumerate(stamps):
        r = rng.random()
        ts_ms = ms - rng.randrange(hour_ms, 6 * hour_ms) if r < late_fraction else ms
        ts = _fmt(ts_ms)
        kind = "late" if r < late_fraction else ""
        if late_fraction <= r < late_fraction + invalid_fraction:
            ts, kind = _invalid(ts_ms, i % 4), "invalid"
        created = _fmt(ts_ms - rng.randrange(0, hour_ms))
        rid = _uuid(rng, salt)
        rec: Item = {"id": rid, "accountId": account_id}
        fill(_Draw(rng, i, ts, created), rec)
        if kinds is not None and kind:
            kinds[kind] += 1
        yield rec


def seed_accounts(store: Store, account_ids: Iterable[str]) -> int:
    """Create the Account rows of ``account_ids`` that do not exist yet; returns how many.

    A Plexus app has an Account for every accountId its records carry; the scheduled pass
    finds accounts through ``listAccounts``, so seeded data needs them too.
    """
    now = _fmt(int(time.time() * 1000))
    new = [
        {"id": a, "name": a, "key": a, "createdAt": now, "updatedAt": now}
        for a in dict.fromkeys(account_ids)
        if store.get("Account", [a]) is None
    ]
    return store.bulk_insert("Account", new) if new else 0


def seed_records(
    store: Store,
    model: str,
    account_id: str,
    count: int,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    stream: bool = True,
    late_fraction: float = 0.0,
    invalid_fraction: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> SeedResult:
    """Write `count` generated records in bulk transactions (with stream records unless
    `stream=False`); `progress(done, count)` after each chunk.

    Raises:
        ValueError: as `generate_records`.
        sqlite3.Error: the write failed; chunks already committed stay.
    """
    t0 = time.perf_counter()
    done = 0
    kinds: Counter[str] = Counter()
    chunk: list[Item] = []

    def flush() -> None:
        nonlocal done
        done += store.bulk_insert(model, chunk, stream=stream)
        chunk.clear()
        if progress is not None:
            progress(done, count)

    records = generate_records(
        model,
        account_id,
        count,
        start,
        end,
        seed=seed,
        late_fraction=late_fraction,
        invalid_fraction=invalid_fraction,
        kinds=kinds,
    )
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= _CHUNK:
            flush()
    if chunk or done == 0:
        flush()
    seed_accounts(store, [account_id])
    return SeedResult(model, done, kinds["late"], kinds["invalid"], time.perf_counter() - t0)


def parse_window(start: str, end: str) -> tuple[datetime, datetime]:
    """CLI helper: two timestamps of the accepted grammar -> aware datetimes.

    Raises:
        ValueError: either is not of the accepted form, or end <= start.
    """
    from metrics_agg.timestamps import parse_instant

    s, e = parse_instant(start), parse_instant(end)
    if e <= s:
        raise ValueError(f"--end ({end}) must be after --start ({start})")
    return s, e
