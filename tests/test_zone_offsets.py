"""Zone offsets in timestamps (docs/design.md §4.3): the read margin, and detection when short.

The index sorts `"…T03:10:00.000+02:00"` (01:10 UTC) among the 03:10 keys. With
`zone_margin_minutes` >= every offset, every stored bucket must equal the truth computed
from the tables (`truth_helpers.truth`: `datetime.fromisoformat`, plain loops), through
stream batches, non-adjacent hour ranges whose widened reads overlap, small pages split
into sub-ranges, and an index-only scheduled pass. With margin 0, a recount misses such
records (their buckets are undercounted by exactly them, never overcounted), and the
invocation warns and emits `OffsetTimestampsBeyondMargin`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator import emf, pipeline
from metrics_agg.aggregator.events import parse_batch
from metrics_agg.aggregator.zones import offset_warning, scan_offsets, suggested_margin
from metrics_agg.config import Config, ConfigError
from metrics_agg.local.cli._recount import print_verify
from metrics_agg.local.server import LocalClient, LocalStack, Store
from metrics_agg.models import SOURCE_MODELS, VerifyReport
from metrics_agg.timestamps import zone_offset_minutes
from truth_helpers import TIMESTAMP, Stream, assert_matches_truth, truth

ACCOUNT = "acct-e2e"
HOUR = timedelta(hours=1)


def _local(dt: datetime, offset_minutes: int) -> str:
    """``dt`` written in a zone ``offset_minutes`` east of UTC (AWSDateTime, ms)."""
    zoned = dt.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = zoned.strftime("%Y-%m-%dT%H:%M:%S.") + f"{zoned.microsecond // 1000:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hh:02d}:{mm:02d}"


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2026-11-26T03:10:00.000Z", 0),
        ("2026-11-26T03:10:00z", 0),
        ("2026-11-26T03:10:00+00:00", 0),
        ("2026-11-26T03:10:00-00:00", 0),
        ("2026-11-26T03:10:00+0000", 0),
        ("2026-11-26T03:10", 0),
        ("2026-11-26T03:10:00.000+02:00", 120),
        ("2026-11-26T03:10:00-0530", -330),
        ("2026-11-26T03:10:00+23:59", 1439),
        ("2026-11-26T03:10:00+24:00", None),
        ("not a time", None),
    ],
)
def test_zone_offset_minutes(text: str, offset: int | None) -> None:
    assert zone_offset_minutes(text) == offset


def test_scan_counts_offsets_beyond_the_margin_only() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "z", "updatedAt": "2026-11-26T03:10:00Z"},
        {"id": "utc", "updatedAt": "2026-11-26T03:10:00+00:00"},
        {"id": "p2", "updatedAt": "2026-11-26T03:10:00+02:00"},
        {"id": "m5", "updatedAt": "2026-11-26T03:10:00-05:30"},
        {"id": "bad", "updatedAt": "2026-11-26T03:10:00+99:00"},
        {"updatedAt": "2026-11-26T03:10:00+01:00"},
        {"id": "none", "updatedAt": None},
    ]
    found = scan_offsets("Task", rows, ("updatedAt",), 0)
    assert found is not None
    assert found.ids == {"p2", "m5"} and found.unnamed == 1 and found.count == 3
    assert found.max_offset_minutes == 330
    found = scan_offsets("Task", rows, ("updatedAt",), 120)
    assert found is not None and found.ids == {"m5"} and found.unnamed == 0
    assert scan_offsets("Task", rows, ("updatedAt",), 330) is None
    # FeedbackItem: the first present field places the record (editedAt here).
    feedback = [
        {"id": "f", "editedAt": "2026-11-26T03:10:00+01:00", "updatedAt": "2026-11-26T05:10:00Z"}
    ]
    spec = SOURCE_MODELS["FeedbackItem"]
    assert scan_offsets("FeedbackItem", feedback, spec.timestamp_fields, 0) is not None
    assert scan_offsets("FeedbackItem", feedback, spec.timestamp_fields, 60) is None


def test_warning_names_model_count_ids_and_the_setting() -> None:
    found = scan_offsets(
        "Item",
        [
            {"id": f"id-{i}", "createdAt": _local(datetime(2026, 11, 26, 3, tzinfo=UTC), 330)}
            for i in range(7)
        ],
        ("createdAt",),
        0,
    )
    assert found is not None
    text = offset_warning(found, 0)
    assert text.startswith("Item: 7 record(s)")
    assert "ids id-0, id-1, id-2, id-3, id-4 and 2 more" in text and "id-5" not in text
    assert "METRICS_AGG_ZONE_MARGIN_MINUTES=360" in text and "±05:30" in text
    assert suggested_margin(120) == 120 and suggested_margin(1439) == 1439


def test_config_knob() -> None:
    env = {"PLEXUS_API_URL": "https://x"}
    assert Config.from_env(env).zone_margin_minutes == 0
    assert (
        Config.from_env({**env, "METRICS_AGG_ZONE_MARGIN_MINUTES": "840"}).zone_margin_minutes
        == 840
    )
    for bad in ("two hours", "-60", "1440"):
        with pytest.raises(ConfigError, match="METRICS_AGG_ZONE_MARGIN_MINUTES"):
            Config.from_env({**env, "METRICS_AGG_ZONE_MARGIN_MINUTES": bad})


def _stream_event(*images: dict[str, Any]) -> dict[str, Any]:
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/Task-abc-NONE/stream/2026-01-01"
    return {
        "Records": [
            {
                "eventName": "INSERT",
                "eventSourceARN": arn,
                "dynamodb": {
                    "SequenceNumber": str(100 + i),
                    "Keys": {"id": {"S": img["id"]}},
                    "NewImage": {k: {"S": v} for k, v in img.items()},
                },
            }
            for i, img in enumerate(images)
        ]
    }


def test_parse_batch_counts_offset_images_beyond_the_margin() -> None:
    event = _stream_event(
        {"id": "a", "accountId": "acct", "updatedAt": "2026-11-26T03:10:00.000+02:00"},
        {"id": "b", "accountId": "acct", "updatedAt": "2026-11-26T03:10:00.000Z"},
        {"id": "c", "accountId": "acct", "updatedAt": "2026-11-26T03:10:00.000-00:00"},
    )
    batch = parse_batch(event)
    assert sum(o.count for o in batch.offsets) == 1
    ((found),) = batch.offsets
    assert found.model == "Task" and found.ids == {"a"} and found.max_offset_minutes == 120
    assert parse_batch(event, zone_margin_minutes=120).offsets == ()


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "zones.sqlite3", mapping=False) as s:
        yield s


@pytest.fixture
def api(stack: LocalStack) -> Iterator[LocalClient]:
    with LocalClient(stack.endpoint, stack.api_key) as client:
        yield client


@pytest.fixture
def now() -> datetime:
    # In the past, mid-minute: no record of a test straddles "now".
    return datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=2)


def _hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def _emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def _deliver(stream: Stream, config: Config, now: datetime) -> None:
    """One invocation per table, as the mapping does; every unit must succeed."""
    for model in TIMESTAMP:
        records = stream.take(model)
        if records:
            response = pipeline.handle_event({"Records": records}, config=config, now=now)
            assert response == {"batchItemFailures": []}


def _scheduled(stack: LocalStack, config: Config, now: datetime) -> dict[str, Any]:
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "accountIds": [ACCOUNT]}
    response = pipeline.handle_event(event, config=config, now=now)
    assert response["status"] == "SUCCESS", response
    return response


OFFSETS = (120, -180, 330, -330, 0)  # +02:00, -03:00, +05:30, -05:30 and UTC


def _seed(api: LocalClient, now: datetime) -> set[str]:
    """Records across seven hours, near hour boundaries, in several zones; the offset ids."""
    offset_ids: set[str] = set()
    base = _hour(now)
    # Minutes into each hour: both edges of the hour and its middle.
    instants = [
        base - HOUR * h + timedelta(minutes=m, seconds=7)
        for h in (6, 3, 1, 0)
        for m in (0, 1, 29, 58, 59)
    ]
    instants = [t for t in instants if t <= now]
    for i, at in enumerate(instants):
        offset = OFFSETS[i % len(OFFSETS)]
        item = api.create(
            "Item",
            accountId=ACCOUNT,
            createdAt=_local(at, offset),
            createdByType=("prediction", "evaluation", None)[i % 3] or "manual",
        )
        task = api.create("Task", accountId=ACCOUNT, updatedAt=_local(at, -offset))
        edited = {"editedAt": _local(at, offset)} if i % 2 else {}
        feedback = api.create(
            "FeedbackItem",
            accountId=ACCOUNT,
            scorecardId="sc-1",
            scoreId="s-1",
            initialAnswerValue="yes",
            finalAnswerValue="no" if i % 3 else "yes",
            createdAt=_local(at - 3 * HOUR, 0),
            updatedAt=_local(at, offset),
            **edited,
        )
        if offset:
            offset_ids.update(r["id"] for r in (item, task, feedback))
    return offset_ids


def test_margin_covering_the_offsets_keeps_every_bucket_exact(
    stack: LocalStack,
    api: LocalClient,
    now: datetime,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METRICS_AGG_EMF", "1")
    caplog.set_level(logging.WARNING, logger="metrics_agg")
    stream = Stream(stack)
    # Small pages and several readers: the widened reads are split into sub-ranges.
    config = stack.config(zone_margin_minutes=330, page_limit=4, read_parallelism=3)
    ids = _seed(api, now)
    assert ids
    # Hours 6, 3 and (1, 0) ago: non-adjacent ranges whose 5.5 h-widened reads overlap.
    _deliver(stream, config, now)
    assert_matches_truth(stack.store, ACCOUNT)

    # Move an offset record across an hour and a zone, delete another, add one at the
    # far edge of the margin; deliver, then let the index alone repair a lost batch.
    item = next(r for r in stack.store.all_records("Item", ACCOUNT) if r["id"] in ids)
    api.update(
        "Item",
        item["id"],
        createdAt=_local(_hour(now) - HOUR + timedelta(minutes=59, seconds=59), -330),
    )
    task = next(r for r in stack.store.all_records("Task", ACCOUNT) if r["id"] in ids)
    api.delete("Task", task["id"])
    api.create(
        "Task", accountId=ACCOUNT, updatedAt=_local(_hour(now) - HOUR + timedelta(seconds=1), 330)
    )
    _deliver(stream, config, now)
    assert_matches_truth(stack.store, ACCOUNT)

    # Never delivered: only the index tells the scheduled pass about these.
    api.create(
        "Task", accountId=ACCOUNT, updatedAt=_local(_hour(now) - HOUR + timedelta(minutes=2), -330)
    )
    api.create("Item", accountId=ACCOUNT, createdAt=_local(now - timedelta(minutes=1), 330))
    gone = next(
        r
        for r in stack.store.all_records("Item", ACCOUNT)
        if r["id"] in ids
        and r["id"] != item["id"]
        and _hour(now) - HOUR <= datetime.fromisoformat(r["createdAt"]) <= now
    )
    api.delete("Item", gone["id"])
    _scheduled(stack, stack.config(zone_margin_minutes=330, page_limit=3), now)
    assert_matches_truth(stack.store, ACCOUNT)

    report = pipeline.verify(
        config=stack.config(zone_margin_minutes=330),
        account_id=ACCOUNT,
        start=_hour(now) - 8 * HOUR,
        end=_hour(now) + HOUR,
    )
    assert report.mismatches == () and report.offsets == ()
    assert "zone offset" not in caplog.text
    assert {doc["OffsetTimestampsBeyondMargin"] for doc in _emf_lines(capsys)} == {0}


def test_margin_zero_warns_and_undercounts_only_the_offset_records(
    stack: LocalStack,
    api: LocalClient,
    now: datetime,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METRICS_AGG_EMF", "1")
    caplog.set_level(logging.WARNING, logger="metrics_agg")
    stream = Stream(stack)
    config = stack.config()
    assert config.zone_margin_minutes == 0
    ids = _seed(api, now)
    _deliver(stream, config, now)
    # The stream invocation merges its own images, so it still counts them right ...
    assert_matches_truth(stack.store, ACCOUNT)
    # ... and warns, once per model, with the count, example ids and the setting.
    warnings = [r.getMessage() for r in caplog.records if "zone offset" in r.getMessage()]
    assert sorted(w.split(":")[0].lstrip("⚠ ") for w in warnings) == [
        "FeedbackItem",
        "Item",
        "Task",
    ]
    assert all("METRICS_AGG_ZONE_MARGIN_MINUTES=360" in w for w in warnings)
    docs = _emf_lines(capsys)
    assert sum(d["OffsetTimestampsBeyondMargin"] for d in docs) == len(ids)

    # The index-only scheduled pass reads [H - 1 h, H + 1 h) through the UTC string range
    # (plus the 1-minute margin): an offset record whose string falls outside it is
    # missed, and its buckets lose exactly those records; no bucket gains any.
    caplog.clear()
    start, end = _hour(now) - HOUR, _hour(now) + HOUR
    missed = _unreadable(stack.store, start, end)
    assert missed and missed <= ids
    _scheduled(stack, config, now)
    (doc,) = _emf_lines(capsys)
    assert doc["OffsetTimestampsBeyondMargin"] > 0  # it read offset rows of other hours
    assert any("zone offset" in r.getMessage() for r in caplog.records)
    _assert_undercounted_by(stack.store, missed, start, end)

    # verify recounts from the same index: it warns (and its truth is as blind).
    caplog.clear()
    report = pipeline.verify(
        config=config, account_id=ACCOUNT, start=_hour(now) - HOUR, end=_hour(now) + HOUR
    )
    assert {o.model for o in report.offsets} == {"FeedbackItem", "Item", "Task"}
    assert any("zone offset" in r.getMessage() for r in caplog.records)


def _unreadable(store: Store, start: datetime, end: datetime) -> set[str]:
    """Ids of the records placed in [start, end) whose timestamp string (local time) has
    its minute outside [start - 1 min, end + 1 min): what a UTC string read cannot see."""
    lo = (start - timedelta(minutes=1)).replace(tzinfo=None)
    hi = (end + timedelta(minutes=1)).replace(tzinfo=None)
    out = set()
    for model, fields in TIMESTAMP.items():
        for record in store.all_records(model, ACCOUNT):
            raw = next(record[f] for f in fields if record.get(f))
            written = datetime.fromisoformat(raw)
            local_minute = written.replace(tzinfo=None, second=0, microsecond=0)
            if start <= written < end and not lo <= local_minute < hi:
                out.add(record["id"])
    return out


def _assert_undercounted_by(
    store: Store, offset_ids: set[str], start: datetime, end: datetime
) -> None:
    """Inside [start, end): stored = truth without the offset records. Outside: truth."""
    full = truth(store, ACCOUNT)
    hidden = _without(store, offset_ids)
    stored = {m["compositeKey"]: m["count"] for m in store.all_metrics(ACCOUNT)}
    for key in set(full) | set(stored):
        bucket = datetime.fromisoformat(key.split("#")[-2])
        want = (hidden if start <= bucket < end else full).get(key, (0, None))[0]
        assert stored.get(key, 0) == want, key
    assert any(stored.get(k, 0) < c for k, (c, _) in full.items()), "nothing was missed"


def _without(store: Store, ids: set[str]) -> dict[str, tuple[int, dict[str, int] | None]]:
    class Filtered:
        def all_records(self, model: str, account: str) -> list[dict[str, Any]]:
            return [r for r in store.all_records(model, account) if r["id"] not in ids]

    return truth(Filtered(), ACCOUNT)  # type: ignore[arg-type]


def test_emf_line_carries_the_figure() -> None:
    m = emf.InvocationMetrics("stream", 1, 2, 0, 1.5, 0, 3, offset_timestamps_beyond_margin=4)
    assert json.loads(emf.render(m))["OffsetTimestampsBeyondMargin"] == 4


def test_cli_verify_warns_and_fails_on_offsets_beyond_the_margin() -> None:
    found = scan_offsets(
        "Task", [{"id": "t1", "updatedAt": "2026-11-26T03:10:00+02:00"}], ("updatedAt",), 0
    )
    assert found is not None
    out = io.StringIO()
    clean = VerifyReport((), buckets_checked=4, records_counted=1)
    assert print_verify(clean, out) == 0
    warned = VerifyReport((), buckets_checked=4, records_counted=1, offsets=(found,))
    assert print_verify(warned, out) == 1
    assert "Task: 1 record(s)" in out.getvalue()
    assert "METRICS_AGG_ZONE_MARGIN_MINUTES=120" in out.getvalue()
