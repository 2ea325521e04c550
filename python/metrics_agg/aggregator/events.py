"""DynamoDB stream event -> `Batch` (docs/design.md §4.1): the edge where Lambda dicts stop.

Each record is either turned into a typed `StreamChange` or counted and skipped:
unknown tables (a table whose prefix is not a source model) and malformed records
(wrong shape, no account, no id, undecodable image). Skipped records are logged with
their sequence number and the field that was wrong, never with image contents.

AttributeValue images are decoded by a small local decoder rather than boto3's
`TypeDeserializer`: importing boto3 costs far more cold-start time than the whole
handler budget of docs/design.md §7 allows, and the images here only use S/N/BOOL/NULL/M/L/SS/NS
(B/BS are kept as the raw base64 string, which nothing downstream reads).
"""

from __future__ import annotations

__all__ = ["decode_attribute", "decode_image", "parse_batch", "table_from_arn"]

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from metrics_agg.aggregator.zones import merge_offsets, scan_offsets
from metrics_agg.models import (
    SOURCE_MODELS,
    Batch,
    ModelSpec,
    OffsetTimestamps,
    StreamChange,
    model_for_table,
)
from metrics_agg.timestamps import parse_instant_or_none

_log = logging.getLogger("metrics_agg")

_EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
_MAX_LOGGED = 5  # examples per kind of problem, so a poison batch cannot flood the log


class _Malformed(ValueError):
    """Internal: the record cannot be used; the message names the field (never a value)."""


def table_from_arn(arn: object) -> str | None:
    """`arn:aws:dynamodb:<region>:<acct>:table/<Table>/stream/<label>` -> `<Table>`."""
    if not isinstance(arn, str):
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "dynamodb":
        return None
    resource = parts[5].split("/")
    if len(resource) < 2 or resource[0] != "table" or not resource[1]:
        return None
    return resource[1]


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def decode_attribute(value: object) -> object:
    """One AttributeValue (`{"S": "x"}`, `{"M": {...}}`, ...) -> a plain Python value.

    Raises:
        ValueError: not a single-key AttributeValue of a known type.
    """
    if not isinstance(value, Mapping) or len(value) != 1:
        raise _Malformed("attribute value is not a one-key mapping")
    ((tag, inner),) = value.items()
    if tag in ("S", "B"):
        if not isinstance(inner, str):
            raise _Malformed(f"{tag} value is not a string")
        return inner
    if tag == "N":
        if not isinstance(inner, str):
            raise _Malformed("N value is not a string")
        try:
            return _number(inner)
        except ValueError:
            raise _Malformed("N value is not a number") from None
    if tag == "BOOL":
        if not isinstance(inner, bool):
            raise _Malformed("BOOL value is not a boolean")
        return inner
    if tag == "NULL":
        return None
    if tag == "M":
        return decode_image(inner)
    if tag == "L":
        if not isinstance(inner, list):
            raise _Malformed("L value is not a list")
        return [decode_attribute(v) for v in inner]
    if tag in ("SS", "NS", "BS"):
        if not isinstance(inner, list) or not all(isinstance(v, str) for v in inner):
            raise _Malformed(f"{tag} value is not a list of strings")
        return [_number(v) for v in inner] if tag == "NS" else list(inner)
    raise _Malformed(f"unknown attribute type {tag!r}")


def decode_image(image: object) -> dict[str, object]:
    """`NewImage`/`OldImage` (name -> AttributeValue) -> plain dict.

    Raises:
        ValueError: the image or one of its attributes is malformed.
    """
    if not isinstance(image, Mapping):
        raise _Malformed("image is not a mapping")
    out: dict[str, object] = {}
    for name, value in image.items():
        try:
            out[str(name)] = decode_attribute(value)
        except _Malformed as exc:
            raise _Malformed(f"attribute {name!r}: {exc}") from None
    return out


def _placing_time(
    image: Mapping[str, object] | None, spec: ModelSpec
) -> tuple[datetime | None, bool]:
    """(instant, invalid): the first present, non-empty timestamp field decides.

    See docs/design.md §3.
    """
    if image is None:
        return None, False
    for name in spec.timestamp_fields:
        raw = image.get(name)
        if raw is None or raw == "":
            continue
        dt = parse_instant_or_none(raw)
        return dt, dt is None
    return None, False


def _parse_record(record: Mapping[str, Any], spec: ModelSpec) -> tuple[StreamChange, int]:
    event_name = record.get("eventName")
    if event_name not in _EVENT_NAMES:
        raise _Malformed("eventName")
    ddb = record.get("dynamodb")
    if not isinstance(ddb, Mapping):
        raise _Malformed("dynamodb")
    seq = ddb.get("SequenceNumber")
    if not isinstance(seq, str) or not seq.isascii() or not seq.isdigit():
        raise _Malformed("dynamodb.SequenceNumber")
    new = decode_image(ddb["NewImage"]) if ddb.get("NewImage") is not None else None
    old = decode_image(ddb["OldImage"]) if ddb.get("OldImage") is not None else None
    if event_name == "REMOVE" and old is None:
        raise _Malformed("dynamodb.OldImage")  # a REMOVE says nothing without its old image
    if event_name != "REMOVE" and new is None:
        raise _Malformed("dynamodb.NewImage")
    account = (new or {}).get("accountId") or (old or {}).get("accountId")
    if not isinstance(account, str) or not account:
        raise _Malformed("accountId")
    keys = decode_image(ddb["Keys"]) if ddb.get("Keys") is not None else {}
    record_id = keys.get("id") or (new or {}).get("id") or (old or {}).get("id")
    if not isinstance(record_id, str) or not record_id:
        raise _Malformed("id")
    old_time, old_bad = _placing_time(old, spec)
    new_time, new_bad = _placing_time(new, spec)
    change = StreamChange(
        model=spec.name,
        account_id=account,
        record_id=record_id,
        event_name=event_name,
        sequence_number=seq,
        old_time=old_time,
        new_time=new_time,
        old_image=old,
        new_image=new,
    )
    return change, int(old_bad) + int(new_bad)


def _sequence_for_log(record: object) -> str:
    if isinstance(record, Mapping):
        ddb = record.get("dynamodb")
        if isinstance(ddb, Mapping) and isinstance(ddb.get("SequenceNumber"), str):
            return str(ddb["SequenceNumber"])[:40]
    return "?"


def _offsets(change: StreamChange, margin_minutes: int) -> OffsetTimestamps | None:
    spec = SOURCE_MODELS.get(change.model)
    images = [img for img in (change.old_image, change.new_image) if img is not None]
    if spec is None or not images:
        return None
    found = scan_offsets(change.model, images, spec.timestamp_fields, margin_minutes)
    if found is None or change.record_id in found.ids:
        return found
    # The images' own `id` may be absent (REMOVE images can be keys only): name the key.
    return OffsetTimestamps(change.model, frozenset({change.record_id}), found.max_offset_minutes)


def _created_at(record: Mapping[str, Any]) -> float | None:
    """`dynamodb.ApproximateCreationDateTime` (epoch seconds, a JSON number), if usable."""
    ddb = record.get("dynamodb")
    value = ddb.get("ApproximateCreationDateTime") if isinstance(ddb, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def parse_batch(event: Mapping[str, Any], *, zone_margin_minutes: int = 0) -> Batch:
    """A DynamoDB stream event (`{"Records": [...]}`) -> `Batch`.

    Bad records are counted and skipped, never raised: one poison record must not block
    the shard (docs/design.md §4.1). Records with an image whose timestamp has a zone offset of
    more than ``zone_margin_minutes`` are counted per model (`Batch.offsets`, `zones`).

    Raises:
        ValueError: the event has no `Records` list (not a stream event at all).
    """
    records = event.get("Records")
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise ValueError("expected a DynamoDB stream event: {'Records': [...]}")
    changes: list[StreamChange] = []
    unknown: dict[str, int] = {}
    malformed = invalid = 0
    created: list[float] = []
    for record in records:
        if not isinstance(record, Mapping):
            malformed += 1
            if malformed <= _MAX_LOGGED:
                _log.warning("skipped malformed stream record: not an object")
            continue
        at = _created_at(record)
        if at is not None:
            created.append(at)
        table = table_from_arn(record.get("eventSourceARN"))
        if table is None:
            malformed += 1
            if malformed <= _MAX_LOGGED:
                _log.warning(
                    "skipped malformed stream record %s: eventSourceARN", _sequence_for_log(record)
                )
            continue
        spec = model_for_table(table)
        if spec is None:
            unknown[table] = unknown.get(table, 0) + 1
            continue
        try:
            change, bad = _parse_record(record, spec)
        except _Malformed as exc:
            malformed += 1
            if malformed <= _MAX_LOGGED:
                _log.warning(
                    "skipped malformed %s stream record %s: %s",
                    spec.name,
                    _sequence_for_log(record),
                    exc,
                )
            continue
        invalid += bad
        changes.append(change)
    for table, n in sorted(unknown.items()):
        _log.warning("skipped %d stream record(s) of unknown table %s", n, table)
    return Batch(
        changes=tuple(changes),
        total_records=len(records),
        unknown_tables=sum(unknown.values()),
        malformed=malformed,
        invalid_timestamps=invalid,
        offsets=merge_offsets(_offsets(c, zone_margin_minutes) for c in changes),
        oldest_created=datetime.fromtimestamp(min(created), UTC) if created else None,
    )
