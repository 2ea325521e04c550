"""The local stack's Lambda sandboxes: the aggregator in worker processes apart from the
server, as a deployment runs it (`local.server.sandboxes`), and the init that makes the SDK
clients before the first invocation (`lambda_support.prepare`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from metrics_agg.aggregator import pipeline
from metrics_agg.aggregator.activity import DynamoActivityTable, activity_for
from metrics_agg.aggregator.lambda_support import prepare
from metrics_agg.aggregator.recheck import sqs_sink
from metrics_agg.config import Config
from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server._store_tables import table_name
from metrics_agg.local.server.sandboxes import SandboxError, invoke_here
from truth_helpers import assert_matches_truth, iso


def _recount(account: str, model: str = "Item") -> dict[str, object]:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return {"recount": {"accountId": account, "model": model, "start": iso(hour),
                        "end": iso(hour + timedelta(hours=1))}}  # fmt: skip


def _one_item(stack: LocalStack, account: str) -> None:
    with LocalClient(stack.endpoint, stack.api_key) as api:
        api.create("Item", accountId=account, createdAt=iso(datetime.now(UTC)))


def test_stream_delivery_through_sandboxes_ends_exact(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(mapping=True, batch_window=0.1, sandboxes=2)
    for _ in range(3):
        _one_item(stack, "acct-sandbox")
    assert stack.wait_idle(60)
    assert_matches_truth(stack.store, "acct-sandbox")
    assert stack.mapping is not None and stack.mapping.invocations >= 1
    assert stack.sandboxes is not None and stack.sandboxes.cold_starts == 0  # both warm


def test_invoke_returns_the_invocations_metrics(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(sandboxes=1)
    event = _recount("acct-m", "Item")
    sandboxed = stack.invoke(event)
    assert sandboxed.response["status"] == "SUCCESS"
    assert sandboxed.metrics is not None and sandboxed.metrics.event_kind == "recount"
    assert sandboxed.metrics.http_requests > 0
    threaded = invoke_here(event, stack.config())  # the same stack, in this thread
    assert threaded.metrics is not None and threaded.metrics.event_kind == "recount"
    assert threaded.response["status"] == "SUCCESS"


def test_a_raising_handler_fails_the_invocation_with_its_error(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(sandboxes=1)
    with pytest.raises(SandboxError, match=r"^ValueError: .*"):
        stack.invoke({"neither": "stream nor schedule"})
    # The sandbox survives its handler's exception and takes the next invocation warm.
    ok = stack.invoke(_recount("acct-r", "Task"))
    assert ok.response["status"] == "SUCCESS"
    assert stack.sandboxes is not None and stack.sandboxes.cold_starts == 0


def test_a_sandbox_that_dies_fails_its_invocation_and_is_replaced(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(sandboxes=1)
    assert stack.sandboxes is not None
    (victim,) = stack.sandboxes._all
    victim.process.kill()
    victim.process.join(10)
    with pytest.raises(SandboxError, match="ended during the invocation"):
        stack.invoke(_recount("acct-d", "Item"))
    ok = stack.invoke(_recount("acct-d", "Item"))
    assert ok.response["status"] == "SUCCESS"
    assert stack.sandboxes.cold_starts == 1
    assert victim not in stack.sandboxes._all


def test_the_mapping_retries_a_batch_whose_sandbox_died(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(mapping=True, batch_window=0.1, sandboxes=1)
    assert stack.sandboxes is not None
    (victim,) = stack.sandboxes._all
    victim.process.kill()
    victim.process.join(10)
    _one_item(stack, "acct-retry")
    assert stack.wait_idle(60)
    assert_matches_truth(stack.store, "acct-retry")
    (item,) = stack.store.activity([table_name("Item")])
    assert item.failed == 1 and item.invocations == 2  # the crash, then the retry
    assert "ended during the invocation" in (item.last_error or "")


def test_worker_log_records_reach_the_parents_handlers_once_at_its_levels(
    make_local_stack: Callable[..., LocalStack], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    stack = make_local_stack(sandboxes=1)
    stack.invoke(_recount("acct-log", "Item"))
    ours = [r for r in caplog.records if "acct-log" in r.getMessage()]
    assert ours, "no record of the sandbox's invocation arrived before its reply"
    assert all(r.name.split(".")[0] == "metrics_agg" for r in ours)
    assert all(r.levelno >= logging.INFO for r in caplog.records)  # DEBUG stayed there
    messages = [r.getMessage() for r in ours]
    # Once each: the thread-mode invocation of the same event logs the same lines.
    caplog.clear()
    invoke_here(_recount("acct-log", "Item"), stack.config())
    in_thread = [r.getMessage() for r in caplog.records if "acct-log" in r.getMessage()]
    assert len(messages) == len(in_thread), (messages, in_thread)


def test_a_sandbox_killed_mid_invocation_fails_it_and_is_replaced(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(sandboxes=1, latency_ms=1500)  # each request takes 1.5 s
    assert stack.sandboxes is not None
    (victim,) = stack.sandboxes._all
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stack.invoke(_recount("acct-k", "Item"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # the invocation waits on its first request
    victim.process.kill()
    thread.join(30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SandboxError), errors
    assert "ended during the invocation" in str(errors[0])
    ok = stack.invoke(_recount("acct-k", "Item"))
    assert ok.response["status"] == "SUCCESS" and stack.sandboxes.cold_starts == 1


def test_an_event_that_cannot_be_sent_leaves_the_sandbox_warm(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack(sandboxes=1)
    with pytest.raises(SandboxError, match="cannot be sent"):
        stack.invoke({"Records": [lambda: None]})
    stack.invoke(_recount("acct-p", "Item"))
    assert stack.sandboxes is not None and stack.sandboxes.cold_starts == 0


def test_invoke_after_stop_says_so(make_local_stack: Callable[..., LocalStack]) -> None:
    stack = make_local_stack(sandboxes=1)
    sandboxes = stack.sandboxes
    assert sandboxes is not None
    sandboxes.stop()
    with pytest.raises(SandboxError, match="stopped"):
        sandboxes.invoke(_recount("acct-x", "Item"), stack.config())


def test_stop_ends_every_sandbox(make_local_stack: Callable[..., LocalStack]) -> None:
    stack = make_local_stack(sandboxes=2)
    assert stack.sandboxes is not None
    processes = [s.process for s in stack.sandboxes._all]
    stack.stop()
    assert all(not p.is_alive() for p in processes)


def test_prepare_makes_the_clients_before_the_first_invocation(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack()
    config = stack.config()
    assert config.recheck_queue_url and config.activity_table
    prepare(config)
    sink = sqs_sink(config.recheck_queue_url, config.recheck_delay_seconds)
    assert sink._client is not None
    log = activity_for(config)
    assert log is not None and isinstance(log.store, DynamoActivityTable)
    assert log.store._client is not None


def test_prepare_leaves_a_client_it_cannot_make_to_the_invocation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    caplog.set_level(logging.DEBUG, logger="metrics_agg")
    table = f"no-region-{time.monotonic_ns()}"  # a fresh process-wide log
    config = Config(endpoint="https://example.invalid/graphql", activity_table=table)
    prepare(config)  # no region: the DynamoDB client cannot be made, and that is not fatal
    log = activity_for(config)
    assert log is not None and isinstance(log.store, DynamoActivityTable)
    assert log.store._client is None
    assert any("left to the first invocation" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("endpoint", ["not-a-url", "localhost:8000"])
def test_prepare_never_fails_the_init(endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metrics_agg")
    table = f"bad-endpoint-{time.monotonic_ns()}"
    config = Config(
        endpoint="https://example.invalid/graphql",
        region="us-east-1",
        activity_table=table,
        activity_endpoint=endpoint,
        recheck_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/q",
    )
    prepare(config)  # botocore rejects the endpoint: logged, not raised
    assert any("activity table's client is left" in r.getMessage() for r in caplog.records)
    sink = sqs_sink(config.recheck_queue_url or "", config.recheck_delay_seconds)
    assert sink._client is not None  # the other client is still made


def test_handle_event_gives_the_sink_what_it_emits(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    stack = make_local_stack()
    got: list[object] = []
    event = _recount("acct-s", "Item")
    pipeline.handle_event(event, config=stack.config(), metrics_sink=got.append)
    (metrics,) = got
    assert getattr(metrics, "event_kind", None) == "recount"
