"""The local SQS event source mapping: backfill queue -> handler, as Lambda polls SQS.

`max_concurrency` pollers (the mapping's `ScalingConfig.MaximumConcurrency`) each receive
up to `batch_size` messages, invoke the handler with an SQS event and, with
`ReportBatchItemFailures` semantics, delete the messages it did not report failed. A
failed message stays invisible until its visibility timeout passes and is then received
again; after the queue's `maxReceiveCount` receives it goes to the dead-letter queue
(`queues.LocalQueues`). A raising handler fails every message of its batch.
"""

from __future__ import annotations

__all__ = ["SqsEventSourceMapping"]

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metrics_agg.local.server.mapping import join_pollers
from metrics_agg.local.server.queues import REGION, LocalQueues, QueueMessage

log = logging.getLogger("metrics_agg.local.server.mapping")


class SqsEventSourceMapping:
    """Background pollers delivering one queue's messages to ``handler``."""

    def __init__(
        self,
        queues: LocalQueues,
        queue: str,
        handler: Callable[[dict[str, Any]], Any],
        *,
        max_concurrency: int = 5,
        batch_size: int = 1,
    ) -> None:
        if max_concurrency < 1 or batch_size < 1:
            raise ValueError("max_concurrency and batch_size must be at least 1")
        self.queues = queues
        self.queue = queue
        self.handler = handler
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self.invocations = 0
        self.peak_concurrency = 0
        self._running = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.max_concurrency):
            t = threading.Thread(target=self._run, name=f"sqs-esm-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; batches in flight finish first.

        Raises:
            RuntimeError: a poller is still running after `timeout` seconds (its handler is
                stuck); it stays registered, so `stop` can be called again, and the caller
                must not close the store under it (as `mapping.EventSourceMapping.stop`).
        """
        self._stopping.set()
        join_pollers(self._threads, timeout, "SQS mapping")

    def idle(self) -> bool:
        """Nothing waiting, nothing in flight (a message whose delay has not passed, a
        recheck, is neither: waiting for it would hold every caller for minutes)."""
        return self.queues.counts(self.queue) == (0, 0)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                got = self.queues.receive_wait(self.queue, self.batch_size, 0.2)
                if got:
                    # Billed like the mapping's calls on AWS (empty long polls are not counted).
                    self.queues.count_request("ReceiveMessage")
                    self._deliver(got)
            except Exception:  # keep the poller alive; log and poll again
                log.exception("SQS event source mapping for %s failed; retrying", self.queue)
                self._stopping.wait(0.2)

    def _deliver(self, messages: Sequence[QueueMessage]) -> None:
        arn = self.queues.arn(self.queue)
        event = {
            "Records": [
                {
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": {
                        "ApproximateReceiveCount": str(m.receive_count),
                        "SentTimestamp": str(m.sent_ms),
                        "SenderId": "local",
                    },
                    "messageAttributes": {},
                    "md5OfBody": m.md5,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }
        with self._lock:
            self.invocations += 1
            self._running += 1
            self.peak_concurrency = max(self.peak_concurrency, self._running)
        try:
            failed = _failed_ids(self.handler(event), messages)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            log.warning("%s: handler raised on %d message(s): %s", self.queue, len(messages), exc)
            failed = {m.message_id for m in messages}
        finally:
            with self._lock:
                self._running -= 1
        done = [m for m in messages if m.message_id not in failed]
        for m in done:
            self.queues.delete(self.queue, m.receipt_handle)
        if done:
            self.queues.count_request("DeleteMessageBatch")


def _failed_ids(response: Any, messages: Sequence[QueueMessage]) -> set[str]:
    """ReportBatchItemFailures for SQS: the listed message ids; a bad report fails them all."""
    ids = {m.message_id for m in messages}
    if not isinstance(response, Mapping):
        return set()
    failures = response.get("batchItemFailures") or []
    out: set[str] = set()
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, Mapping) else None
        if ident not in ids:
            return ids
        out.add(str(ident))
    return out
