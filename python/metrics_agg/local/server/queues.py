"""Local SQS: in-memory queues with visibility timeouts and redrive, spoken over SQS's JSON
protocol on the server's own port, so botocore talks to it exactly as to AWS.

Semantics kept from SQS (what a backfill relies on): a received message is invisible for
the visibility timeout and comes back unless deleted; every receive increments
`ApproximateReceiveCount`; with a redrive policy, a message that was received
`maxReceiveCount` times and comes back is moved to the dead-letter queue instead of being
delivered again; a message sent with `DelaySeconds` (0-900; the rechecks of
docs/incremental.md) is received no sooner, and counts as delayed until then. Not kept:
FIFO, a queue's default delay, message attributes, durability across restarts
(a stopped server forgets its queues; a backfill is resumable, docs/deployment.md "Day one").
"""

from __future__ import annotations

__all__ = ["LocalQueues", "QueueMessage", "SqsProtocolError", "handle_sqs_request"]

import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT = "000000000000"
MAX_DELAY_SECONDS = 900


class SqsProtocolError(Exception):
    """An SQS error answer: ``code`` becomes the JSON ``__type`` (botocore's error code)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(slots=True)
class _Message:
    message_id: str
    body: str
    sent_ms: int
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None


@dataclass(slots=True)
class _Queue:
    name: str
    visibility_timeout: float
    dead_letter: str | None = None
    max_receives: int = 0
    messages: dict[str, _Message] = field(default_factory=dict)  # in send order

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.name}"


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A received message, as the SQS event source mapping hands it on."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_ms: int

    @property
    def md5(self) -> str:
        return hashlib.md5(self.body.encode()).hexdigest()


class LocalQueues:
    """Thread-safe named queues; the ASGI app and the SQS mapping share one instance."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.Condition()
        # SQS requests by operation (the cost model's meter): every call over SQS's protocol,
        # plus the local SQS mapping's non-empty receives and delete batches.
        self.requests: Counter[str] = Counter()
        self.messages_sent: Counter[str] = Counter()  # by queue name

    def count_request(self, operation: str) -> None:
        with self._lock:
            self.requests[operation] += 1

    def create(
        self,
        name: str,
        *,
        visibility_timeout: float = 30.0,
        dead_letter: str | None = None,
        max_receives: int = 3,
    ) -> None:
        with self._lock:
            if dead_letter is not None and dead_letter not in self._queues:
                raise ValueError(f"dead-letter queue {dead_letter!r} does not exist")
            self._queues[name] = _Queue(
                name, visibility_timeout, dead_letter, max_receives if dead_letter else 0
            )

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            raise SqsProtocolError("QueueDoesNotExist", "The specified queue does not exist.")
        return q

    def arn(self, name: str) -> str:
        with self._lock:
            return self._queue(name).arn

    def send(self, name: str, body: str, delay_seconds: float = 0.0) -> str:
        if not body:
            raise SqsProtocolError("InvalidParameterValue", "The message body must not be empty.")
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise SqsProtocolError(
                "InvalidParameterValue", f"DelaySeconds must be 0 to {MAX_DELAY_SECONDS}."
            )
        with self._lock:
            q = self._queue(name)
            message_id = str(uuid.uuid4())
            m = _Message(message_id, body, int(time.time() * 1000))
            if delay_seconds:
                m.visible_at = time.monotonic() + delay_seconds  # never received: "delayed"
            q.messages[message_id] = m
            self.messages_sent[name] += 1
            self._lock.notify_all()
            return message_id

    def receive(
        self, name: str, max_messages: int = 1, visibility_timeout: float | None = None
    ) -> list[QueueMessage]:
        """Up to ``max_messages`` visible messages, made invisible; redrives as SQS does."""
        with self._lock:
            q = self._queue(name)
            now = time.monotonic()
            hidden_for = q.visibility_timeout if visibility_timeout is None else visibility_timeout
            out: list[QueueMessage] = []
            for m in list(q.messages.values()):
                if len(out) >= max_messages:
                    break
                if m.visible_at > now:
                    continue
                if q.dead_letter is not None and m.receive_count >= q.max_receives:
                    del q.messages[m.message_id]
                    m.receive_count, m.visible_at, m.receipt = 0, 0.0, None
                    self._queues[q.dead_letter].messages[m.message_id] = m
                    continue
                m.receive_count += 1
                m.visible_at = now + hidden_for
                m.receipt = f"{m.message_id}:{uuid.uuid4().hex}"
                out.append(
                    QueueMessage(m.message_id, m.receipt, m.body, m.receive_count, m.sent_ms)
                )
            return out

    def receive_wait(
        self,
        name: str,
        max_messages: int,
        wait_seconds: float,
        visibility_timeout: float | None = None,
    ) -> list[QueueMessage]:
        """`receive`, waiting up to ``wait_seconds`` for a message (long polling)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            got = self.receive(name, max_messages, visibility_timeout)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            with self._lock:
                self._lock.wait(min(left, 0.05))

    def _by_receipt(self, q: _Queue, receipt: str) -> _Message | None:
        m = q.messages.get(receipt.split(":", 1)[0])
        return m if m is not None and m.receipt == receipt else None

    def delete(self, name: str, receipt: str) -> None:
        with self._lock:
            q = self._queue(name)
            m = self._by_receipt(q, receipt)
            if m is None and not receipt.split(":", 1)[0]:
                raise SqsProtocolError("ReceiptHandleIsInvalid", "The receipt handle is invalid.")
            if m is not None:
                del q.messages[m.message_id]
            self._lock.notify_all()

    def change_visibility(self, name: str, receipt: str, timeout: float) -> None:
        with self._lock:
            m = self._by_receipt(self._queue(name), receipt)
            if m is not None:
                m.visible_at = time.monotonic() + timeout
                self._lock.notify_all()

    def counts(self, name: str) -> tuple[int, int]:
        """(visible, in flight), as SQS's approximate counts report them (delayed
        messages are neither: `delayed`)."""
        with self._lock:
            q = self._queue(name)
            now = time.monotonic()
            visible = sum(1 for m in q.messages.values() if m.visible_at <= now)
            return visible, len(q.messages) - visible - self._delayed(q, now)

    @staticmethod
    def _delayed(q: _Queue, now: float) -> int:
        return sum(1 for m in q.messages.values() if m.receive_count == 0 and m.visible_at > now)

    def delayed(self, name: str) -> int:
        """Messages sent with a delay that has not passed yet."""
        with self._lock:
            return self._delayed(self._queue(name), time.monotonic())

    def attributes(self, name: str) -> dict[str, str]:
        visible, in_flight = self.counts(name)
        delayed = self.delayed(name)
        with self._lock:
            q = self._queue(name)
            attrs = {
                "QueueArn": q.arn,
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": str(in_flight),
                "ApproximateNumberOfMessagesDelayed": str(delayed),
                "VisibilityTimeout": str(int(q.visibility_timeout)),
            }
            if q.dead_letter is not None:
                attrs["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": self._queues[q.dead_letter].arn,
                        "maxReceiveCount": q.max_receives,
                    }
                )
            return attrs

    def purge(self, name: str) -> None:
        with self._lock:
            self._queue(name).messages.clear()
            self._lock.notify_all()


def _name_of(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise SqsProtocolError("MissingParameter", "The request must contain QueueUrl.")
    return url.rstrip("/").rsplit("/", 1)[-1]


def _entries(req: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = req.get("Entries")
    if not isinstance(entries, list) or not entries:
        raise SqsProtocolError("EmptyBatchRequest", "There should be at least one entry.")
    if len(entries) > 10:
        raise SqsProtocolError("TooManyEntriesInBatchRequest", "At most 10 entries.")
    return entries


def _delay(entry: Mapping[str, Any]) -> float:
    raw = entry.get("DelaySeconds") or 0
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise SqsProtocolError("InvalidParameterValue", "DelaySeconds must be a whole number.")
    return float(raw)


def handle_sqs_request(
    queues: LocalQueues, operation: str, req: Mapping[str, Any], base_url: str
) -> dict[str, Any]:
    """One SQS JSON-protocol call (``X-Amz-Target: AmazonSQS.<operation>``) -> its answer.

    Raises:
        SqsProtocolError: what SQS would answer with an error.
    """
    queues.count_request(operation)
    if operation == "GetQueueUrl":
        name = req.get("QueueName")
        if not isinstance(name, str):
            raise SqsProtocolError("MissingParameter", "The request must contain QueueName.")
        queues.arn(name)  # raises when it does not exist
        return {"QueueUrl": f"{base_url}/{ACCOUNT}/{name}"}
    name = _name_of(req.get("QueueUrl"))
    if operation == "SendMessage":
        body = str(req.get("MessageBody", ""))
        mid = queues.send(name, body, _delay(req))
        return {"MessageId": mid, "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest()}
    if operation == "SendMessageBatch":
        ok = []
        for e in _entries(req):
            body = str(e.get("MessageBody", ""))
            mid = queues.send(name, body, _delay(e))
            ok.append(
                {
                    "Id": e.get("Id"),
                    "MessageId": mid,
                    "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest(),
                }
            )
        return {"Successful": ok, "Failed": []}
    if operation == "ReceiveMessage":
        vis = req.get("VisibilityTimeout")
        got = queues.receive(
            name,
            max(1, min(10, int(req.get("MaxNumberOfMessages") or 1))),
            None if vis is None else float(vis),
        )
        return {
            "Messages": [
                {
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt_handle,
                    "MD5OfBody": m.md5,
                    "Body": m.body,
                    "Attributes": {
                        "ApproximateReceiveCount": str(m.receive_count),
                        "SentTimestamp": str(m.sent_ms),
                    },
                }
                for m in got
            ]
        }
    if operation == "DeleteMessage":
        queues.delete(name, str(req.get("ReceiptHandle", "")))
        return {}
    if operation == "DeleteMessageBatch":
        done = []
        for e in _entries(req):
            queues.delete(name, str(e.get("ReceiptHandle", "")))
            done.append({"Id": e.get("Id")})
        return {"Successful": done, "Failed": []}
    if operation == "ChangeMessageVisibility":
        queues.change_visibility(
            name, str(req.get("ReceiptHandle", "")), float(req.get("VisibilityTimeout") or 0)
        )
        return {}
    if operation == "GetQueueAttributes":
        attrs = queues.attributes(name)
        wanted = req.get("AttributeNames") or ["All"]
        if "All" not in wanted:
            attrs = {k: v for k, v in attrs.items() if k in wanted}
        return {"Attributes": attrs}
    if operation == "PurgeQueue":
        queues.purge(name)
        return {}
    raise SqsProtocolError("InvalidAction", f"The action {operation} is not valid locally.")
