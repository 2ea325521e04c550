"""SQS event -> queued recount units (the backfill queue's mapping onto the function).

Each SQS record's body is a recount event (docs/design.md §4), usually one unit of a
`metrics-agg backfill` run (`backfill.units`). A body that cannot be used is not skipped:
it is reported failed, so SQS redrives it to the dead-letter queue after its last receive
and nobody loses the request. Logs name the message id and the field, never the body.
"""

from __future__ import annotations

__all__ = ["QueuedRecount", "is_queue_event", "parse_queue_event"]

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metrics_agg.backfill.units import BackfillUnit, decode_message

_log = logging.getLogger("metrics_agg")


@dataclass(frozen=True, slots=True)
class QueuedRecount:
    """One SQS record: its unit, or why its body was refused."""

    message_id: str
    receive_count: int  # ApproximateReceiveCount: 1 on the first delivery
    unit: BackfillUnit | None
    run_id: str | None = None
    reason: str | None = None  # "recheck": a delayed recount a stream invocation handed over
    error: str | None = None


def is_queue_event(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, Sequence)
        and not isinstance(records, (str, bytes))
        and len(records) > 0
        and isinstance(records[0], Mapping)
        and records[0].get("eventSource") == "aws:sqs"
    )


def _receive_count(record: Mapping[str, Any]) -> int:
    attrs = record.get("attributes")
    raw = attrs.get("ApproximateReceiveCount") if isinstance(attrs, Mapping) else None
    try:
        return max(1, int(str(raw)))
    except ValueError:
        return 1


def parse_queue_event(event: Mapping[str, Any]) -> list[QueuedRecount]:
    """Every record of an SQS event, in order.

    Raises:
        ValueError: the event has no `Records` list, or a record has no messageId (Lambda
            could not be told which message failed).
    """
    records = event.get("Records")
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise ValueError("expected an SQS event: {'Records': [...]}")
    out: list[QueuedRecount] = []
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("SQS record without a messageId")
        count = _receive_count(record)
        body = record.get("body")
        try:
            if not isinstance(body, str):
                raise ValueError("message has no string body")
            message = decode_message(body)
        except ValueError as exc:
            _log.error(
                "refused SQS message %s: %s (kept for the dead-letter queue)", message_id, exc
            )
            out.append(QueuedRecount(message_id, count, None, error=str(exc)))
            continue
        out.append(
            QueuedRecount(message_id, count, message.unit, message.run_id, reason=message.reason)
        )
    return out
