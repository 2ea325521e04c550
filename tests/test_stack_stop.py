"""LocalStack.stop never closes the store under a running thread (issue 10).

A handler that does not return forces the slow-stop path: the mapping's join times out,
`stop` raises and leaves the store open (the stuck thread keeps using it), and a second
`stop` once the handler has returned shuts everything down in order.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server._store_tables import table_name
from metrics_agg.local.server.store import Store


def test_stop_fails_loudly_and_keeps_the_store_while_a_handler_is_stuck(tmp_path: Path) -> None:
    entered = threading.Event()
    release = threading.Event()

    def stuck(event: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return {"batchItemFailures": []}

    stack = LocalStack(tmp_path / "db.sqlite3", handler=stuck, batch_window=0.0)
    stack.start()
    try:
        with LocalClient(stack.endpoint, stack.api_key) as api:
            api.create("Item", id="i1", accountId="a")
        assert entered.wait(10), "the handler was never called"
        with pytest.raises(RuntimeError, match=r"esm-Item.* still running"):
            stack.stop(timeout=0.2)
        assert stack.store is not None and stack.mapping is not None  # left as they were
    finally:
        release.set()
    stack.stop(timeout=10)
    with pytest.raises(RuntimeError, match="not running"):
        _ = stack.store
    # The delivery that was stuck during the first stop checkpointed before the close.
    reopened = Store(tmp_path / "db.sqlite3")
    try:
        end = reopened.stream_end("Item")
        assert end > 0
        assert reopened.checkpoint(table_name("Item")) == end
    finally:
        reopened.close()


def test_a_failed_start_keeps_its_error_when_stopping_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start failure propagates, with the stop failure as a note rather than in its place."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    def stop_times_out(self: LocalStack, timeout: float = 30.0) -> None:
        raise RuntimeError("the mapping thread is still running")

    monkeypatch.setattr(LocalStack, "stop", stop_times_out)
    stack = LocalStack(tmp_path / "app.sqlite3", port=port, mapping=False)
    try:
        with pytest.raises(OSError, match="pick another --port") as info:
            stack.start()
    finally:
        busy.close()
        monkeypatch.undo()
        stack.stop()
    assert any("the mapping thread is still running" in note for note in info.value.__notes__)
