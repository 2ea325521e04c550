"""Stream event parsing (docs/design.md §4.1) from recorded-style events in tests/events/."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.aggregator.events import (
    decode_attribute,
    decode_image,
    parse_batch,
    table_from_arn,
)

EVENTS = Path(__file__).parent / "events"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def test_insert_batch() -> None:
    batch = parse_batch(load("item_insert"))
    assert (batch.total_records, batch.unknown_tables, batch.malformed) == (3, 0, 0)
    first = batch.changes[0]
    assert (first.model, first.account_id, first.record_id, first.event_name) == (
        "Item",
        "acct-1",
        "item-1",
        "INSERT",
    )
    assert first.new_time == datetime(2024, 5, 1, 12, 10, 5, 123000, tzinfo=UTC)
    assert first.old_time is None and first.old_image is None
    assert first.new_image is not None and first.new_image["createdByType"] == "prediction"
    assert batch.changes[2].account_id == "acct-2"


def test_modify_has_both_times() -> None:
    (change,) = parse_batch(load("item_modify")).changes
    assert change.old_time == datetime(2024, 5, 1, 12, 10, 5, 123000, tzinfo=UTC)
    assert change.new_time == datetime(2024, 5, 1, 9, 59, 59, tzinfo=UTC)


def test_remove_takes_account_from_old_image() -> None:
    (change,) = parse_batch(load("item_remove")).changes
    assert change.event_name == "REMOVE" and change.new_image is None
    assert change.account_id == "acct-1"
    assert change.old_time == datetime(2024, 5, 1, 12, 11, tzinfo=UTC)


def test_unknown_tables_are_matched_exactly_and_counted() -> None:
    batch = parse_batch(load("unknown_table"))
    # "ItemArchive-..." and "Items-..." must not be taken for Item (no substring match).
    assert batch.unknown_tables == 2
    assert [c.record_id for c in batch.changes] == ["item-9"]


def test_malformed_records_are_counted_and_logged_without_contents(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="metrics_agg")
    batch = parse_batch(load("malformed"))
    assert batch.total_records == 7 and batch.malformed == 6
    (good,) = batch.changes
    assert good.record_id == "item-10" and good.new_time is None
    assert batch.invalid_timestamps == 1
    assert "SECRET" not in caplog.text and "2024-05-01" not in caplog.text
    assert "accountId" in caplog.text


def test_feedback_effective_timestamp() -> None:
    batch = parse_batch(load("feedback"))
    by_id = {c.record_id: c for c in batch.changes}
    assert by_id["fb-1"].new_time == datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    # No editedAt: the effective timestamp falls back to updatedAt.
    assert by_id["fb-4"].old_time == datetime(2024, 5, 1, 12, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"S": "x"}, "x"),
        ({"N": "3"}, 3),
        ({"N": "2.5"}, 2.5),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"L": [{"S": "a"}, {"N": "1"}]}, ["a", 1]),
        ({"M": {"k": {"SS": ["a", "b"]}}}, {"k": ["a", "b"]}),
        ({"NS": ["1", "2.5"]}, [1, 2.5]),
    ],
)
def test_decode_attribute(value: dict[str, Any], expected: object) -> None:
    assert decode_attribute(value) == expected


@pytest.mark.parametrize("value", [{"Q": "x"}, {"S": 1}, {"N": "abc"}, {}, {"S": "a", "N": "1"}])
def test_decode_attribute_rejects(value: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        decode_attribute(value)


def test_decode_image_names_the_field_only() -> None:
    with pytest.raises(ValueError, match="'secretField'") as info:
        decode_image({"secretField": {"N": "not-a-number-but-secret"}})
    assert "not-a-number-but-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("arn", "table"),
    [
        (
            "arn:aws:dynamodb:us-east-1:123456789012:table/Item-abc-NONE/stream/2024",
            "Item-abc-NONE",
        ),
        ("arn:aws:dynamodb:local:000000000000:table/Task-local-NONE/stream/x", "Task-local-NONE"),
        ("arn:aws:s3:::bucket/x", None),
        ("nonsense", None),
        (None, None),
    ],
)
def test_table_from_arn(arn: object, table: str | None) -> None:
    assert table_from_arn(arn) == table


def test_not_a_stream_event() -> None:
    with pytest.raises(ValueError, match="Records"):
        parse_batch({"detail-type": "Scheduled Event"})
