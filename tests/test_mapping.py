"""The local event source mapping with a fake handler: batching per table, partial-batch
failures, bounded retries to the on-failure list, and a checkpoint that survives restarts."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metrics_agg.local.server import LocalStack
from metrics_agg.local.server.mapping import BATCHING


def task(n: int) -> dict[str, Any]:
    return {
        "id": f"t{n:03d}",
        "accountId": "a",
        "createdAt": "2024-05-01T10:00:00.000Z",
        "updatedAt": "2024-05-01T10:00:00.000Z",
    }


class Recorder:
    """Fake handler: records every batch; `fail(batch_no, seqs)` decides failures."""

    def __init__(self, fail: Callable[[int, list[str]], Any] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        with self.lock:
            self.batches.append(seqs)
            n = len(self.batches)
        failed = self.fail(n, seqs) if self.fail else None
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed or []]}

    @property
    def delivered(self) -> list[str]:
        return [s for b in self.batches for s in b]


def test_batching_defaults_are_the_templates() -> None:
    # The local mapping batches as the template's defaults do (issue 9).
    template = (Path(__file__).parents[1] / "template.yaml").read_text()
    for model, (size, window) in BATCHING.items():
        for name, value in (("BatchSize", size), ("BatchingWindowSeconds", window)):
            found = re.search(
                rf"\n  {model}{name}:\n    Type: Number\n    Default: (\d+)\n", template
            )
            assert found is not None and float(found.group(1)) == value, (model, name)
        assert f"ParallelizationFactor: !Ref {model}ParallelizationFactor" in template


def test_batches_respect_size_and_window(make_local_stack: Callable[..., LocalStack]) -> None:
    rec = Recorder()
    small = {"Item": (10, 0.05), "Task": (1, 0.05)}
    stack = make_local_stack(mapping=True, batching=small, handler=rec)
    stack.store.bulk_insert("Item", [task(n) for n in range(25)])
    stack.store.bulk_insert("Task", [task(n) for n in range(3)])
    assert stack.wait_idle(30)
    item_batches = [b for b in rec.batches if len(b) and int(b[0]) <= 25]
    assert [len(b) for b in item_batches] == [10, 10, 5]
    assert sorted(len(b) for b in rec.batches if b not in item_batches) == [1, 1, 1]
    assert stack.mapping is not None and stack.mapping.idle()


def test_partial_failure_redelivers_from_lowest_reported(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    # Batch 1 fails records 4 and 7 (reported out of order): 1-3 are done, 4.. redelivered.
    rec = Recorder(lambda n, seqs: [seqs[6], seqs[3]] if n == 1 else None)
    stack = make_local_stack(mapping=True, batch_window=0.05, handler=rec)
    stack.store.bulk_insert("Item", [task(n) for n in range(12)])
    assert stack.wait_idle(30)
    first, second = rec.batches[0], rec.batches[1]
    assert second[0] == first[3]
    assert sorted(set(rec.delivered)) == sorted(
        r["dynamodb"]["SequenceNumber"] for r in stack.store.read_stream("Item", None, 100)
    )
    assert stack.store.failures() == []


def test_raising_handler_retries_then_parks_records_on_failure_list(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    calls: list[int] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) <= 3:  # the original attempt and 2 retries fail
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    stack = make_local_stack(
        mapping=True, batching={"Procedure": (1, 0.05)}, handler=handler, max_retries=2
    )
    stack.store.bulk_insert("Procedure", [task(1), task(2)])
    assert stack.wait_idle(30)
    [parked] = stack.store.failures("Procedure-local-NONE")
    assert parked["attempts"] == 3 and "RuntimeError: boom" in parked["error"]
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in parked["records"]] == ["t001"]
    assert calls == [1, 1, 1, 1]  # then the second record went through


class FakePanic(BaseException):
    """Stands in for pyo3's PanicException, which is a BaseException, not an Exception."""


def test_a_panicking_handler_fails_the_batch_and_keeps_the_mapping_alive(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    calls: list[int] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise FakePanic("called `Option::unwrap()` on a `None` value")
        return {"batchItemFailures": []}

    stack = make_local_stack(mapping=True, batch_window=0.05, handler=handler)
    stack.store.bulk_insert("Task", [task(1)])
    assert stack.wait_idle(30)
    assert calls == [1, 1]  # redelivered after the panic, then checkpointed
    assert stack.store.failures() == []


def test_invalid_item_identifier_fails_the_whole_batch(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    rec = Recorder(lambda n, seqs: ["not-a-sequence"] if n == 1 else None)
    stack = make_local_stack(mapping=True, batch_window=0.05, handler=rec)
    stack.store.bulk_insert("Item", [task(n) for n in range(3)])
    assert stack.wait_idle(30)
    assert rec.batches[0] == rec.batches[1]


def test_checkpoint_survives_restart_without_loss_or_duplicates(
    make_local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    db = tmp_path / "restart.sqlite3"
    rec = Recorder()
    first = make_local_stack(db, mapping=True, batch_window=0.05, handler=rec)
    first.store.bulk_insert("ChatSession", [task(n) for n in range(5)])
    assert first.wait_idle(30)
    first.stop()
    # Written while nothing delivers (no mapping), then picked up by the next mapping.
    offline = make_local_stack(db)
    offline.store.bulk_insert("ChatSession", [task(n) for n in range(5, 9)])
    offline.stop()
    second = make_local_stack(db, mapping=True, batch_window=0.05, handler=rec)
    assert second.wait_idle(30)
    all_seqs = [
        r["dynamodb"]["SequenceNumber"] for r in second.store.read_stream("ChatSession", None, 100)
    ]
    assert rec.delivered == all_seqs  # each once, in order
