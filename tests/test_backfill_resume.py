"""`metrics-agg backfill` interrupted and run again never sends a unit twice while a copy of it
is queued or running: the journal records units as they are sent, and the rerun follows them
(docs/deployment.md, "Idempotent and resumable")."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.backfill.runner import (
    BackfillQueues,
    Journal,
    Progress,
    default_journal_path,
    run_backfill,
)
from metrics_agg.backfill.sqs import QueueClient
from metrics_agg.backfill.units import BackfillUnit, decode_message, plan_backfill
from metrics_agg.local.server import LocalStack
from metrics_agg.local.server.stack import BACKFILL_QUEUE, PROGRESS_QUEUE
from test_backfill import ACCOUNTS, MODELS, _seed
from truth_helpers import assert_matches_truth

END = datetime(2026, 11, 4, tzinfo=UTC)


class _Counting:
    """The stack's own handler, counting each backfill unit it runs."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.stack: LocalStack | None = None

    def __call__(self, event: dict[str, Any]) -> Any:
        for record in event.get("Records", []):
            if record.get("eventSource") == "aws:sqs":
                self.runs[decode_message(record["body"]).unit.unit_id] += 1
        assert self.stack is not None
        return self.stack._default_handler(event)


@pytest.fixture
def counted(make_local_stack: Callable[..., LocalStack]) -> tuple[LocalStack, _Counting]:
    counting = _Counting()
    # A visibility timeout no unit outlasts: SQS's own redelivery (at least once) of a slow
    # unit would run it twice whatever the CLI does.
    stack = make_local_stack(
        mapping=True,
        batch_window=0.05,
        backfill_concurrency=2,
        backfill_visibility_timeout=120.0,
        handler=counting,
    )
    counting.stack = stack
    _seed(stack, END)
    return stack, counting


def _units() -> list[BackfillUnit]:
    return plan_backfill(list(ACCOUNTS), list(MODELS), datetime(2026, 11, 1, tzinfo=UTC), END)


def _run(stack: LocalStack, journal: Journal, **kwargs: Any) -> Progress:
    queues = BackfillQueues(stack.queue_url(BACKFILL_QUEUE), stack.queue_url(PROGRESS_QUEUE))
    client = QueueClient.for_url(queues.units)
    try:
        return run_backfill(
            _units(),
            run_id="resume",
            queues=queues,
            client=client,
            journal=journal,
            settle_seconds=2,
            **kwargs,
        )
    finally:
        client.close()


def test_an_interrupted_backfill_runs_every_unit_exactly_once(
    counted: tuple[LocalStack, _Counting], tmp_path: Path
) -> None:
    stack, counting = counted
    units = _units()
    assert len(units) == 12
    journal = Journal(tmp_path / "journal.jsonl")

    def interrupt(progress: Progress) -> None:
        if progress.queued >= 10:  # Ctrl-C once the first 10 of 12 are sent
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(stack, journal, on_progress=interrupt)
    sent = {u for u, e in journal.state().items() if e.status == "sent"}
    assert len(sent) == 10
    progress = _run(stack, journal)
    assert progress.resumed == 10 and progress.resent == 0
    assert progress.queued == 12 and progress.already_done == 0
    assert progress.complete and progress.done == 12
    assert journal.done() == {u.unit_id for u in units}
    assert stack.wait_idle(30)
    assert counting.runs == Counter({u.unit_id: 1 for u in units})  # each unit, once
    for account in ACCOUNTS:
        assert_matches_truth(stack.store, account)
    # Run again: everything is done, nothing is sent or run.
    again = _run(stack, journal)
    assert again.already_done == 12 and again.queued == 0
    assert sum(counting.runs.values()) == 12


def test_a_unit_journaled_as_sent_but_never_queued_is_sent_again(
    counted: tuple[LocalStack, _Counting], tmp_path: Path
) -> None:
    stack, counting = counted
    units = _units()
    journal = Journal(tmp_path / "journal.jsonl")
    # Interrupted between the journal line and the send: two units never reached SQS.
    journal.record_sent(u.unit_id for u in units[:2])
    progress = _run(stack, journal)
    assert progress.resumed == 2 and progress.resent == 2
    assert progress.complete and progress.done == 12
    assert stack.wait_idle(30)
    assert counting.runs == Counter({u.unit_id: 1 for u in units})


def test_a_unit_sent_longer_ago_than_the_queue_keeps_messages_is_sent_again(
    counted: tuple[LocalStack, _Counting], tmp_path: Path
) -> None:
    stack, counting = counted
    units = _units()
    path = tmp_path / "journal.jsonl"
    stale = {"unit": units[0].unit_id, "status": "sent", "at": "2020-01-01T00:00:00.000Z"}
    path.write_text(json.dumps(stale) + "\n", encoding="utf-8")
    progress = _run(stack, Journal(path))
    assert progress.resumed == 0 and progress.queued == 12  # sent at once, not followed
    assert progress.complete
    assert stack.wait_idle(30)
    assert counting.runs == Counter({u.unit_id: 1 for u in units})


def test_failed_units_are_sent_again_and_fresh_sends_everything(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.record_sent(["a", "b", "c"])
    lines = [
        {"unit": "a", "status": "done", "at": "2026-11-04T00:00:00.000Z"},
        {"unit": "b", "status": "failed", "at": "2026-11-04T00:00:00.000Z"},
        "not json",
    ]
    with journal.path.open("a", encoding="utf-8") as f:
        f.write("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    state = journal.state()
    assert {u: e.status for u, e in state.items()} == {"a": "done", "b": "failed", "c": "sent"}
    assert journal.done() == {"a"}
    journal.reset()
    assert journal.state() == {}


def test_the_journal_lives_in_the_user_state_directory(tmp_path: Path) -> None:
    path = default_journal_path("abc", {"XDG_STATE_HOME": str(tmp_path)})
    assert path == tmp_path / "metrics-agg" / "backfill-abc.jsonl"
    home = default_journal_path("abc", {})
    assert home == Path.home() / ".local" / "state" / "metrics-agg" / "backfill-abc.jsonl"
