"""DynamoDB stream records, shaped exactly like the records of a Lambda stream event.

The store appends one per source-model write (same transaction); the sequence number is
the row id of the `stream` table, zero-padded to 21 digits (DynamoDB's width), and is
stamped in when the record is read.
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT",
    "REGION",
    "build_record",
    "stream_arn",
    "to_attribute_value",
    "with_sequence",
]

import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson

REGION = "local"
ACCOUNT = "000000000000"


def stream_arn(table: str, label: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/{label}"


def to_attribute_value(value: Any) -> dict[str, Any]:
    """A Python value in DynamoDB's AttributeValue form (S, N, BOOL, NULL, M, L)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute_value(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute_value(v) for v in value]}
    raise TypeError(f"no AttributeValue form for {type(value).__name__}")


def _image(item: Mapping[str, Any]) -> dict[str, Any]:
    # Fast path for the common flat string attributes (seeding writes 100k of these).
    return {k: {"S": v} if type(v) is str else to_attribute_value(v) for k, v in item.items()}


def _size(item: Mapping[str, Any] | None) -> int:
    """Approximate DynamoDB item size in bytes (its JSON length is close and cheap)."""
    return len(orjson.dumps(item)) if item else 0


def build_record(
    table: str,
    label: str,
    keys: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One stream record (without SequenceNumber) for a write that turned `old` into `new`."""
    name = "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY")
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": int(time.time()),
        "Keys": _image(keys),
    }
    if new is not None:
        ddb["NewImage"] = _image(new)
    if old is not None:
        ddb["OldImage"] = _image(old)
    ddb["SizeBytes"] = _size(keys) + _size(new) + _size(old)
    ddb["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    return {
        "eventID": secrets.token_hex(16),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": ddb,
        "eventSourceARN": stream_arn(table, label),
    }


def with_sequence(record: dict[str, Any], seq: int) -> dict[str, Any]:
    record["dynamodb"]["SequenceNumber"] = f"{seq:021d}"
    return record
