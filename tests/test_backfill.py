"""`metrics-agg backfill`: planning, the SQS path of the handler, the local queues, and the
whole flow against the local stack (exact buckets, idempotent, resumable)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator.queue_events import parse_queue_event
from metrics_agg.backfill.progress import UnitReport
from metrics_agg.backfill.runner import BackfillQueues, Journal, run_backfill
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.backfill.units import (
    BackfillUnit,
    decode_message,
    encode_message,
    plan_backfill,
)
from metrics_agg.local.cli import main
from metrics_agg.local.server import LocalStack, seed_records
from metrics_agg.local.server.queues import LocalQueues
from metrics_agg.local.server.stack import BACKFILL_DLQ, BACKFILL_QUEUE, PROGRESS_QUEUE
from truth_helpers import assert_matches_truth

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


# --------------------------------------------------------------------------- planning


def test_units_are_days_clipped_to_the_range() -> None:
    units = plan_backfill(["a"], ["Item"], T0 + 5 * H + timedelta(minutes=10), T0 + 53 * H)
    assert [(u.start, u.end) for u in units] == [
        (T0 + 5 * H, T0 + 24 * H),
        (T0 + 24 * H, T0 + 48 * H),
        (T0 + 48 * H, T0 + 53 * H),
    ]


def test_a_large_day_is_split_into_hours_and_small_ones_are_not() -> None:
    counts = {("Item", "a"): {T0 + 2 * H: 60, T0 + 3 * H: 50, T0 + 30 * H: 5}}
    units = plan_backfill(
        ["a", "b"], ["Item"], T0, T0 + 48 * H, hourly_counts=counts, max_unit_records=100
    )
    a = [u for u in units if u.account_id == "a"]
    assert len(a) == 24 + 1  # day 1 by hour (110 > 100), day 2 whole
    assert all(u.hours == 1 for u in a[:24]) and a[24].hours == 24
    assert [u.hours for u in units if u.account_id == "b"] == [24, 24]  # no stored buckets


def test_hour_units_on_request() -> None:
    units = plan_backfill(["a"], ["Item"], T0 + 22 * H, T0 + 26 * H, hours_only=True)
    assert [u.hours for u in units] == [1, 1, 1, 1]


def test_plans_are_stable_and_cover_every_pair() -> None:
    args: tuple[Any, ...] = (["a", "b"], ["Item", "Task"], T0, T0 + 72 * H)
    first, again = plan_backfill(*args), plan_backfill(*args)
    assert [u.unit_id for u in first] == [u.unit_id for u in again]
    assert len({u.unit_id for u in first}) == 2 * 2 * 3


@pytest.mark.parametrize(
    ("accounts", "models", "end", "message"),
    [
        (["a"], ["Nope"], T0 + H, "unknown model"),
        ([""], ["Item"], T0 + H, "must not be empty"),
        (["a"], ["Item"], T0, "empty"),
    ],
)
def test_bad_plans_are_refused(accounts: Any, models: Any, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_backfill(accounts, models, T0, end)


def test_message_round_trip_and_refusals() -> None:
    unit = BackfillUnit("Item", "acct", T0, T0 + 24 * H)
    decoded = decode_message(encode_message(unit, "run1"))
    assert decoded.unit == unit and decoded.run_id == "run1"
    for body, why in [
        ("not json", "not JSON"),
        ('{"x": 1}', "not a recount event"),
        ('{"recount": {"model": "Item"}}', "accountId"),
        (
            '{"recount": {"accountId": "a", "model": "Bad", "start": "2026-11-01T00:00Z", '
            '"end": "2026-11-02T00:00Z"}}',
            "unknown model",
        ),
    ]:
        with pytest.raises(ValueError, match=why):
            decode_message(body)


# --------------------------------------------------------------------------- the handler's SQS path


def _sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "2"},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_queue_event_parsing_keeps_refused_bodies_as_failures() -> None:
    good = encode_message(BackfillUnit("Task", "a", T0, T0 + H), "r")
    parsed = parse_queue_event(_sqs_event(good, "garbage"))
    assert parsed[0].unit is not None and parsed[0].receive_count == 2
    assert parsed[1].unit is None and parsed[1].error == "message body is not JSON"


def test_sqs_batch_reports_failed_message_ids_and_progress(local_stack: LocalStack) -> None:
    from metrics_agg.aggregator.pipeline import handle_event

    seed_records(local_stack.store, "Task", "a", 30, T0, T0 + H, stream=False)
    good = encode_message(BackfillUnit("Task", "a", T0, T0 + H), "run-x")
    response = handle_event(_sqs_event(good, "garbage"), config=local_stack.config())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    queues = local_stack.queues
    reports = [UnitReport.decode(m.body) for m in queues.receive(PROGRESS_QUEUE, 10)]
    assert [(r.unit, r.ok, r.records, r.attempt) for r in reports if r] == [
        ("Task|a|2026-11-01T00:00:00Z|2026-11-01T01:00:00Z", True, 30, 2)
    ]
    assert_matches_truth(local_stack.store, "a")


# --------------------------------------------------------------------------- local queues


def test_local_queue_redrives_after_max_receives() -> None:
    q = LocalQueues()
    q.create("dlq")
    q.create("q", visibility_timeout=0, dead_letter="dlq", max_receives=2)
    q.send("q", "body")
    assert [m.receive_count for m in q.receive("q")] == [1]
    assert [m.receive_count for m in q.receive("q")] == [2]
    assert q.receive("q") == []  # the third receive moves it instead
    assert q.counts("q") == (0, 0) and q.counts("dlq") == (1, 0)


def test_local_queue_visibility_and_delete() -> None:
    q = LocalQueues()
    q.create("q", visibility_timeout=60)
    q.send("q", "x")
    (m,) = q.receive("q")
    assert q.receive("q") == [] and q.counts("q") == (0, 1)
    q.delete("q", m.receipt_handle)
    assert q.counts("q") == (0, 0)


def test_botocore_speaks_to_the_local_queues(local_stack: LocalStack) -> None:
    url = local_stack.queue_url(BACKFILL_QUEUE)
    client = QueueClient.for_url(url)
    try:
        attrs = client.attributes(url, ["All"])
        policy = json.loads(attrs["RedrivePolicy"])
        assert policy["maxReceiveCount"] == 3
        assert client.url_of_arn(policy["deadLetterTargetArn"]) == local_stack.queue_url(
            BACKFILL_DLQ
        )
        progress = local_stack.queue_url(PROGRESS_QUEUE)
        client.send(progress, [f"m{i}" for i in range(12)])
        got = client.receive(progress, max_messages=10, wait_seconds=1)
        assert len(got) == 10 and got[0].body == "m0" and got[0].receive_count == 1
        client.delete(progress, [m.receipt_handle for m in got])
        assert local_stack.queues.counts(PROGRESS_QUEUE) == (2, 0)
    finally:
        client.close()


# --------------------------------------------------------------------------- end to end


ACCOUNTS = ("acct-1", "acct-2")
MODELS = ("Item", "FeedbackItem")


def _seed(stack: LocalStack, end: datetime) -> None:
    for i, account in enumerate(ACCOUNTS):
        for j, model in enumerate(MODELS):
            seed_records(
                stack.store,
                model,
                account,
                400,
                end - 50 * H,
                end - H,
                seed=10 * i + j,
                stream=False,
            )


def _metrics(stack: LocalStack) -> dict[str, tuple[Any, ...]]:
    return {
        f"{m['accountId']}|{m['compositeKey']}": (m["count"], m["complete"], m.get("metadata"))
        for m in stack.store.all_metrics()
    }


def _cli(stack: LocalStack, tmp_path: Path, *extra: str) -> int:
    who: tuple[str, ...] = ("--account", ACCOUNTS[0], "--models", MODELS[0])
    if "--since" not in extra:
        extra = ("--since", "3d", "--until", "2026-11-04T00:00Z", *extra)
        who = ("--account", ACCOUNTS[0], "--account", ACCOUNTS[1], "--models", *MODELS)
    if "--all-accounts" in extra:
        who = ("--models", *MODELS)
    return main(
        [
            "backfill",
            "--local",
            "--endpoint",
            stack.endpoint,
            "--api-key",
            stack.api_key,
            *who,
            "--journal",
            str(tmp_path / "journal.jsonl"),
            "--settle",
            "5",
            *extra,
        ]
    )


def test_backfill_end_to_end_exact_and_idempotent(
    make_local_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_local_stack(mapping=True, batch_window=0.05, backfill_concurrency=3)
    _seed(stack, datetime(2026, 11, 4, tzinfo=UTC))
    assert _cli(stack, tmp_path) == 0
    out = capsys.readouterr()
    assert "12 unit(s) done, 0 done before, 0 failed, 0 unreported" in out.out
    assert "units · queued" in out.err  # the progress bar
    for account in ACCOUNTS:
        assert_matches_truth(stack.store, account)
    first = _metrics(stack)
    assert stack.backfill is not None and stack.backfill.peak_concurrency <= 3
    # Same command again: the journal says every unit is done; nothing is sent.
    assert _cli(stack, tmp_path) == 0
    assert "0 unit(s) done, 12 done before" in capsys.readouterr().out
    # Forgetting the journal recounts everything, and ends at the same buckets; the
    # accounts now come from the API (listAccounts: the seeder created their Account rows).
    assert _cli(stack, tmp_path, "--fresh", "--all-accounts") == 0
    out = capsys.readouterr()
    assert "12 unit(s) done, 0 done before" in out.out
    assert "for 2 account(s) x 2 model(s)" in out.err
    assert _metrics(stack) == first


def test_backfill_resumes_after_the_cli_is_interrupted(
    make_local_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_local_stack(mapping=True, batch_window=0.05, backfill_concurrency=2)
    _seed(stack, datetime(2026, 11, 4, tzinfo=UTC))
    units = plan_backfill(
        list(ACCOUNTS),
        list(MODELS),
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 4, tzinfo=UTC),
    )
    queues = BackfillQueues(stack.queue_url(BACKFILL_QUEUE), stack.queue_url(PROGRESS_QUEUE))
    journal = Journal(tmp_path / "journal.jsonl")

    def interrupt(progress: Any) -> None:
        if progress.done >= 3:
            raise KeyboardInterrupt

    client = QueueClient.for_url(queues.units)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_backfill(
                units,
                run_id="resume",
                queues=queues,
                client=client,
                journal=journal,
                on_progress=interrupt,
            )
        done_before = journal.done()
        assert 3 <= len(done_before) < len(units)
        # The queued units keep running meanwhile; the rerun sends only what is not
        # journaled done (some of it twice: harmless, a recount is idempotent).
        progress = run_backfill(
            units,
            run_id="resume",
            queues=queues,
            client=client,
            journal=journal,
            settle_seconds=5,
        )
    finally:
        client.close()
    assert progress.already_done == len(done_before)
    assert progress.complete and progress.done == len(units) - len(done_before)
    assert journal.done() == {u.unit_id for u in units}
    stack.wait_idle(30)
    for account in ACCOUNTS:
        assert_matches_truth(stack.store, account)


def test_failing_units_are_retried_then_dead_lettered_and_rerun(
    make_local_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_local_stack(
        mapping=True, batch_window=0.05, backfill_concurrency=2, backfill_visibility_timeout=0.2
    )
    _seed(stack, datetime(2026, 11, 4, tzinfo=UTC))
    # Every write fails for a while: each unit's attempts fail (reads succeed), SQS
    # redelivers, and after 3 receives the messages go to the dead-letter queue.
    stack.faults.add(field="createAggregatedMetrics", action="http_400", times=None)
    stack.faults.add(field="updateAggregatedMetrics", action="http_400", times=None)
    one = ("--since", "1d", "--until", "2026-11-03T12:00Z")  # two units: a day cut in two
    assert _cli(stack, tmp_path, *one) == 1
    out = capsys.readouterr().out
    assert "0 unit(s) done, 0 done before, 2 failed" in out
    assert "failed (in the dead-letter queue): Item|acct-1|2026-11-02T12:00:00Z|" in out
    deadline = time.monotonic() + 10
    while sum(stack.queues.counts(BACKFILL_DLQ)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the poller moves each message at its next receive
    assert sum(stack.queues.counts(BACKFILL_DLQ)) == 2
    stack.faults.clear()
    assert _cli(stack, tmp_path, *one) == 0
    assert "2 unit(s) done, 0 done before" in capsys.readouterr().out


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sqs_mapping_bounds_concurrency_and_redrives_what_keeps_failing() -> None:
    import threading

    from metrics_agg.local.server.sqs_mapping import SqsEventSourceMapping

    q = LocalQueues()
    q.create("dlq")
    q.create("q", visibility_timeout=0.05, dead_letter="dlq", max_receives=2)
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        (record,) = event["Records"]
        with lock:
            seen.append((record["body"], record["attributes"]["ApproximateReceiveCount"]))
        time.sleep(0.02)
        if record["body"] == "raise":
            raise RuntimeError("boom")
        if record["body"] == "fail":
            return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        if record["body"] == "bad-report":
            return {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}
        return {"batchItemFailures": []}

    mapping = SqsEventSourceMapping(q, "q", handler, max_concurrency=2)
    for body in ["ok"] * 6 + ["fail", "raise", "bad-report"]:
        q.send("q", body)
    mapping.start()
    try:
        assert _wait(lambda: q.counts("q") == (0, 0) and sum(q.counts("dlq")) == 3)
    finally:
        mapping.stop()
    assert mapping.peak_concurrency <= 2
    assert sorted(b for b, _ in seen if b == "ok") == ["ok"] * 6
    for body in ("fail", "raise", "bad-report"):
        assert sorted(n for b, n in seen if b == body) == ["1", "2"]
    assert sorted(m.body for m in q.receive("dlq", 10)) == ["bad-report", "fail", "raise"]


def test_a_recheck_message_keeps_its_reason() -> None:
    body = json.dumps(
        {
            "recount": {
                "accountId": "a",
                "model": "Task",
                "start": "2024-05-01T08:00:00Z",
                "end": "2024-05-01T09:00:00Z",
            },
            "reason": "recheck",
        }
    )
    assert decode_message(body).reason == "recheck" and decode_message(body).run_id is None
    unit = BackfillUnit("Task", "a", decode_message(body).unit.start, decode_message(body).unit.end)
    assert decode_message(encode_message(unit, "run-1")).reason is None
