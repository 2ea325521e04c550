"""The local event source mapping: stream records -> handler, as Lambda delivers them.

Per table (docs/design.md §6): batches of up to `batch_size` records, or fewer once the
oldest waiting record has waited `batch_window` seconds (counted from its arrival, also
when it arrived while a batch was in flight); one batch in flight per table (a
ParallelizationFactor of 1), tables in parallel (one thread each), as Lambda delivers one
shard. The defaults are the registry's (`ModelSpec.batching`), which are the template's
(`<Model>BatchSize`, `<Model>BatchingWindowSeconds`). `ReportBatchItemFailures` semantics:
the checkpoint moves to just before the lowest reported sequence number and delivery
resumes there; a raising handler fails the whole batch. After `max_retries` retries of
the same position the records go to the on-failure list (like the SQS destination) and
the mapping moves on. The checkpoint is committed in SQLite after the handler returned,
so a restart resumes where it was: at least once, never skipping.
"""

from __future__ import annotations

__all__ = ["BATCHING", "EventSourceMapping", "Handler", "join_pollers"]

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metrics_agg.local.server._store_tables import table_name
from metrics_agg.local.server.store import Store
from metrics_agg.models import SOURCE_MODELS

log = logging.getLogger("metrics_agg.local.server.mapping")

Handler = Callable[[dict[str, Any]], Any]

# docs/design.md §6: (batch size, batching window in seconds) per source table, as the
# registry gives them (template.yaml's mappings carry the same, tests/test_registry.py).
BATCHING: Mapping[str, tuple[int, float]] = {
    name: spec.batching for name, spec in SOURCE_MODELS.items()
}


class _Poller:
    """One table's delivery loop state."""

    def __init__(self, model: str, batch_size: int, window: float) -> None:
        self.model = model
        self.table = table_name(model)
        self.batch_size = batch_size
        self.window = window
        self.first_seen: float | None = None
        # When the oldest record not yet in a delivered batch was appended (monotonic):
        # the window counts from there, also for records that arrived while a batch of
        # this table was in flight (they have been waiting since).
        self.arrived: float | None = None
        self.in_flight = False
        self.attempts: dict[int, int] = {}


def join_pollers(threads: list[threading.Thread], timeout: float, what: str) -> None:
    """Join a mapping's poller threads within one `timeout`; keep only the live ones.

    Shared by both local mappings, so a stuck handler is reported the same way.

    Raises:
        RuntimeError: a thread is still running after `timeout` seconds; it stays in
            `threads`, so the caller can try again and must not close the store under it.
    """
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    threads[:] = [t for t in threads if t.is_alive()]
    if threads:
        names = ", ".join(t.name for t in threads)
        raise RuntimeError(
            f"{what} thread(s) {names} still running after {timeout:g} s "
            "(a handler call has not returned)"
        )


class EventSourceMapping:
    """Background threads (one per table) delivering stream records to `handler`."""

    def __init__(
        self,
        store: Store,
        handler: Handler,
        *,
        batch_window: float | None = None,
        batching: Mapping[str, tuple[int, float]] | None = None,
        max_retries: int = 3,
        poll_interval: float = 0.25,
        retry_delay: float = 0.05,
    ) -> None:
        self.store = store
        self.handler = handler
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.invocations = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._pollers = [
            _Poller(m, size, window if batch_window is None else batch_window)
            for m, (size, window) in (batching or BATCHING).items()
        ]
        self._by_table = {p.table: p for p in self._pollers}
        store.on_write(self.notify)

    def notify(self, table: str | None = None) -> None:
        p = self._by_table.get(table) if table is not None else None
        if p is not None and p.arrived is None:
            p.arrived = time.monotonic()
        with self._wake:
            self._wake.notify_all()

    def start(self) -> None:
        for p in self._pollers:
            t = threading.Thread(target=self._run, args=(p,), name=f"esm-{p.model}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; a batch in flight finishes (and checkpoints) first.

        Raises:
            RuntimeError: a delivery thread is still running after `timeout` seconds (its
                handler is stuck). It stays registered, so `stop` can be called again; the
                caller must not close the store under it (issue 10).
        """
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        join_pollers(self._threads, timeout, "event source mapping")

    def idle(self) -> bool:
        """Every table's checkpoint is at its stream's end and nothing is in flight."""
        return all(
            not p.in_flight and self.store.checkpoint(p.table) >= self.store.stream_end(p.table)
            for p in self._pollers
        )

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.idle():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._wake:
                self._wake.wait(min(left, 0.02))

    def _sleep(self, seconds: float) -> None:
        with self._wake:
            if not self._stopping:
                self._wake.wait(seconds)

    def _run(self, p: _Poller) -> None:
        while not self._stopping:
            try:
                waited = self._step(p)
            except Exception:  # keep the mapping alive across store hiccups; log and retry
                log.exception("event source mapping for %s failed; retrying", p.table)
                waited = False
            if not waited:
                self._sleep(self.poll_interval)

    def _step(self, p: _Poller) -> bool:
        """One poll; True when it delivered (so the loop polls again at once)."""
        position = self.store.checkpoint(p.table)
        records = self.store.read_stream(p.table, position, p.batch_size)
        if not records:
            p.first_seen = None
            return False
        if len(records) < p.batch_size:
            now = time.monotonic()
            if p.first_seen is None:
                p.first_seen = min(now, p.arrived) if p.arrived is not None else now
            if now - p.first_seen < p.window:
                self._sleep(min(self.poll_interval, p.first_seen + p.window - now))
                return True
        p.first_seen = None
        # Records appended from here on arrive during the flight; if the batch was cut at
        # its size, those left behind have been waiting at least since now.
        p.arrived = time.monotonic() if len(records) >= p.batch_size else None
        p.in_flight = True
        try:
            self._deliver(p, position, records)
        finally:
            p.in_flight = False
            self.notify()
        return True

    def _deliver(self, p: _Poller, position: int, records: Sequence[dict[str, Any]]) -> None:
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        self.invocations += 1
        failed_from: int | None = None
        error = ""
        try:
            response = self.handler({"Records": list(records)})
        except BaseException as exc:
            # A raising handler fails the whole batch, as in Lambda; that includes a pyo3
            # PanicException from the extension, which derives from BaseException.
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            failed_from, error = seqs[0], f"{type(exc).__name__}: {exc}"
            log.warning("%s: handler raised on %d records: %s", p.table, len(records), error)
        else:
            failed_from, error = _lowest_failure(response, seqs)
        written = min(float(r["dynamodb"].get("ApproximateCreationDateTime", 0)) for r in records)
        self.store.record_delivery(
            p.table,
            len(records),
            failed=failed_from is not None,
            lag=max(0.0, time.time() - written) if written else None,
            error=error or None,
        )
        if failed_from is None:
            self.store.set_checkpoint(p.table, seqs[-1])
            p.attempts.clear()
            return
        done = [s for s in seqs if s < failed_from]
        if done:
            self.store.set_checkpoint(p.table, done[-1])
            p.attempts.clear()
        attempts = p.attempts.get(failed_from, 0) + 1
        p.attempts = {failed_from: attempts}
        if attempts > self.max_retries:
            rest = [r for r, s in zip(records, seqs, strict=True) if s >= failed_from]
            log.error(
                "%s: giving up on sequence numbers %d..%d after %d attempts (%s); records "
                "moved to the on-failure list",
                p.table,
                failed_from,
                seqs[-1],
                attempts,
                error,
            )
            self.store.add_failure(p.table, rest, attempts, error, checkpoint=seqs[-1])
            p.attempts.clear()
            return
        log.info(
            "%s: retrying from sequence number %d (attempt %d of %d)",
            p.table,
            failed_from,
            attempts + 1,
            self.max_retries + 1,
        )
        self._sleep(min(1.0, self.retry_delay * 2 ** (attempts - 1)))


def _lowest_failure(response: Any, seqs: Sequence[int]) -> tuple[int | None, str]:
    """ReportBatchItemFailures: lowest reported sequence number; bad reports fail it all."""
    if not isinstance(response, Mapping):
        return None, ""
    failures = response.get("batchItemFailures")
    if not failures:
        return None, ""
    lowest: int | None = None
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, Mapping) else None
        try:
            seq = int(str(ident))
        except ValueError:
            return seqs[0], f"invalid itemIdentifier {ident!r}: whole batch failed"
        if seq not in seqs:
            return seqs[0], f"itemIdentifier {ident!r} not in batch: whole batch failed"
        lowest = seq if lowest is None else min(lowest, seq)
    return lowest, f"batchItemFailures from {lowest}"
