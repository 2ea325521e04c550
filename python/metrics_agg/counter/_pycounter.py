"""Pure-Python counting loop: the same names, signatures and results as ``_rust_counter``.

Only the loop lives here; ``buckets`` validates arguments and builds ``CountResult``.
Speed comes from memoising the two halves of the common shape
``YYYY-MM-DDThh:mm:ss`` + ``[.fff…][zone]``: the first half maps to a local epoch minute,
the second to a zone offset, each validated once by the grammar of ``timestamps``.
Every other shape (no seconds, invalid, non-str) takes the slow path, which applies the
full grammar. Both caches are bounded and only ever hold fully validated entries.
"""

from __future__ import annotations

__all__ = [
    "ErrorRuleData",
    "RawCount",
    "build_profile",
    "count_records",
    "count_strings",
    "is_error",
]

import enum
import re
from collections.abc import Collection, Sequence
from datetime import date
from typing import Final, TypeAlias

from metrics_agg.timestamps import parse_epoch_minute

RawCount: TypeAlias = tuple[
    int,  # processed
    int,  # missing
    int,  # invalid
    int,  # outside_window
    list[list[int]],  # counts, one list per size
    list[tuple[str | None, list[list[int]]]],  # (category, counts) in first-counted order
    list[object],  # the first few invalid values
    list[list[int]] | None,  # error counts like `counts`; None without error rules
    list[list[list[int]]],  # per category (same order) like its counts; [] without rules
]
# (field, accepted str values, whole-number threshold or None): `models.ErrorRule` as data.
ErrorRuleData: TypeAlias = tuple[str, Collection[str], int | None]

build_profile: Final = "python"

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HEAD = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})", re.ASCII
)
_REST = re.compile(r"(?:\.[0-9]{1,9})?(?:[Zz]|([+-])([0-9]{2}):?([0-9]{2}))?", re.ASCII)
_CACHE_LIMIT = 1 << 16
# Same bound as the extension's MAX_CELLS: per-minute cells of one pass (all labels).
_MAX_CELLS = 1 << 27
_I64_MAX = (1 << 63) - 1  # the extension's minutes are i64
# "YYYY-MM-DDThh:mm:ss" -> local epoch minute; only valid heads are stored.
_heads: dict[str, int] = {}
# What follows the seconds -> zone offset in minutes east of UTC; only valid rests.
_rests: dict[str, int] = {}


class _Tag(enum.Enum):
    MISSING = "missing"  # what `_classify` returns for None and ""


_MISSING: Final = _Tag.MISSING


def _learn_head(head: str) -> int | None:
    m = _HEAD.fullmatch(head)
    if m is None:
        return None
    y, mo, d, h, mi, s = map(int, m.groups())
    if h > 23 or mi > 59 or s > 60:
        return None
    try:
        days = date(y, mo, d).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    minute = days * 1440 + h * 60 + mi
    if len(_heads) >= _CACHE_LIMIT:
        _heads.clear()
    _heads[head] = minute
    return minute


def _learn_rest(rest: str) -> int | None:
    m = _REST.fullmatch(rest)
    if m is None:
        return None
    sign, zh, zm = m.groups()
    offset = 0
    if sign is not None:
        hours, minutes = int(zh), int(zm)
        if hours > 23 or minutes > 59:
            return None
        offset = hours * 60 + minutes
        if sign == "-":
            offset = -offset
    if len(_rests) >= _CACHE_LIMIT:
        _rests.clear()
    _rests[rest] = offset
    return offset


def _classify(value: object) -> int | _Tag | None:
    """Epoch minute (int), ``_MISSING``, or ``None`` for invalid: the slow path."""
    if value is None:
        return _MISSING
    if type(value) is not str:
        if not issubclass(type(value), str):
            return None
        # A subclass counts by its characters, as the extension reads them.
        value = str.__str__(value)
    if not value:
        return _MISSING
    if len(value) >= 19:
        # Teach the caches the common shape so the next such string takes the fast path.
        head = _learn_head(value[:19])
        rest = _learn_rest(value[19:]) if head is not None else None
        if head is not None and rest is not None:
            return head - rest
    return parse_epoch_minute(value)


def _label(value: object) -> str | None:
    """A category label as an exact ``str``, as the extension hands labels back: a subclass
    by its characters (so none of its methods run on the result's keys), else ``None``."""
    if type(value) is str:
        return value
    return str.__str__(value) if issubclass(type(value), str) else None


def _changed_size(what: str) -> RuntimeError:
    """The extension's error for a list that changed size while it was counted."""
    return RuntimeError(
        f"{what} changed size during counting (Python code run by an item modified the list)"
    )


def _check(start_minute: int, end_minute: int, sizes: Sequence[int]) -> list[int]:
    """The argument rules of the Rust ``Counter::new`` (same messages)."""
    if end_minute <= start_minute:
        raise ValueError(
            f"window end (epoch minute {end_minute}) must be after its start "
            f"(epoch minute {start_minute})"
        )
    checked = [int(size) for size in sizes]
    if not checked:
        raise ValueError("at least one bucket size is required")
    for size in checked:
        if size <= 0:
            raise ValueError(f"bucket sizes must be positive minutes, got {size}")
        if start_minute % size or end_minute % size:
            raise ValueError(
                f"window [{start_minute}, {end_minute}) in epoch minutes is not aligned to "
                f"the {size}-minute buckets: start and end must be multiples of every size"
            )
    if end_minute - start_minute > _I64_MAX:
        raise ValueError(
            f"window [{start_minute}, {end_minute}) in epoch minutes is longer than "
            f"{_I64_MAX} minutes"
        )
    _room(end_minute - start_minute, 1)
    return checked


def _room(span: int, labels: int) -> None:
    if span * labels > _MAX_CELLS:
        raise MemoryError(
            f"window of {span} minutes x {labels} categories is too large to count in memory"
        )


def _sum_sizes(minutes: list[int], sizes: list[int]) -> list[list[int]]:
    return [[sum(minutes[i : i + size]) for i in range(0, len(minutes), size)] for size in sizes]


def count_strings(
    timestamps: list[object],
    categories: list[object] | None = None,
    /,
    *,
    start_minute: int,
    end_minute: int,
    sizes: Sequence[int],
    max_examples: int = 5,
) -> RawCount:
    """Count timestamp values (and optional parallel category labels) into buckets."""
    checked = _check(start_minute, end_minute, sizes)
    span = end_minute - start_minute
    if categories is not None and len(categories) != len(timestamps):
        raise ValueError(
            f"categories has {len(categories)} items but timestamps has {len(timestamps)}"
        )
    n = len(timestamps)
    missing = invalid = outside = processed = 0
    examples: list[object] = []
    heads, rests = _heads.get, _rests.get
    if categories is None:
        minutes = [0] * span
        for text in timestamps:
            if type(text) is str:
                local = heads(text[:19])
                if local is not None:
                    offset = rests(text[19:])
                    if offset is not None:
                        index = local - start_minute
                        if offset:  # most zones are Z / +00:00: skip a big-int subtraction
                            index -= offset
                        if 0 <= index < span:
                            minutes[index] += 1
                        else:
                            outside += 1
                        continue
            minute = _classify(text)
            if minute is None:
                invalid += 1
                if len(examples) < max_examples:
                    examples.append(text)
            elif minute is _Tag.MISSING:
                missing += 1
            elif 0 <= (index := minute - start_minute) < span:
                minutes[index] += 1
            else:
                outside += 1
        # An iteration that ended early or late (the list changed size meanwhile) did not
        # count n items: raise as the extension does, never count part of a list.
        if len(timestamps) != n or missing + invalid + outside + sum(minutes) != n:
            raise _changed_size("timestamps")
        processed = n - missing - invalid - outside
        totals = _sum_sizes(minutes, checked)
        return processed, missing, invalid, outside, totals, [], examples, None, []

    per_label: dict[str | None, list[int]] = {}
    for text, label in zip(timestamps, categories):  # noqa: B905 (sizes checked after)
        minute = None
        if type(text) is str:
            local = heads(text[:19])
            if local is not None:
                offset = rests(text[19:])
                if offset is not None:
                    minute = local - offset
        if minute is None:
            classified = _classify(text)
            if classified is None:
                invalid += 1
                if len(examples) < max_examples:
                    examples.append(text)
                continue
            if classified is _Tag.MISSING:
                missing += 1
                continue
            minute = classified
        index = minute - start_minute
        if not 0 <= index < span:
            outside += 1
            continue
        key = label if type(label) is str else _label(label)
        counts = per_label.get(key)
        if counts is None:
            _room(span, sum(k is not None for k in per_label) + 2)
            counts = per_label[key] = [0] * span
        counts[index] += 1
        processed += 1
    if len(timestamps) != n or processed + missing + invalid + outside != n:
        raise _changed_size("timestamps")
    if len(categories) != n:
        raise _changed_size("categories")
    return _finish(processed, missing, invalid, outside, per_label, span, checked, examples)


def _totals(per_label: dict[str | None, list[int]], span: int) -> list[int]:
    totals = [0] * span
    for counts in per_label.values():
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    return totals


def _finish(
    processed: int,
    missing: int,
    invalid: int,
    outside: int,
    per_label: dict[str | None, list[int]],
    span: int,
    sizes: list[int],
    examples: list[object],
    errors: dict[str | None, list[int]] | None = None,
) -> RawCount:
    totals = _sum_sizes(_totals(per_label, span), sizes)
    categories = [(label, _sum_sizes(counts, sizes)) for label, counts in per_label.items()]
    if errors is None:
        return processed, missing, invalid, outside, totals, categories, examples, None, []
    error_totals = _sum_sizes(_totals(errors, span), sizes)
    per_category = [_sum_sizes(errors[label], sizes) for label in per_label]
    return (
        processed,
        missing,
        invalid,
        outside,
        totals,
        categories,
        examples,
        error_totals,
        per_category,
    )


def _digits_at_least(text: str, at_least: int) -> bool:
    """``int(text) >= at_least`` for ASCII digits of any length, as the extension's
    saturating parse: every threshold fits in 64 bits (19 digits), so 20 significant digits
    always win, and ``int()`` never meets its 4300-digit limit."""
    digits = text.lstrip("0")
    return len(digits) >= 20 or int(digits or "0") >= at_least


def is_error(record: object, rules: Sequence[ErrorRuleData]) -> bool:
    """Whether a (mapping) record matches any error rule (`models.ErrorRule` semantics).

    Types are read with ``type()``, as the extension reads them (``__class__`` cannot
    disguise a value), and a ``str`` subclass by its characters.
    """
    kind = type(record)
    if kind is dict:
        getter = record.get  # type: ignore[attr-defined]
    else:
        getter = dict.get.__get__(record) if issubclass(kind, dict) else record.get  # type: ignore[attr-defined]
    for field, values, at_least in rules:
        value = getter(field)
        if value is None:
            continue
        kind = type(value)
        if kind is str or issubclass(kind, str):
            text = str.__str__(value)
            if text in values or (
                at_least is not None
                and text.isascii()
                and text.isdigit()
                and _digits_at_least(text, at_least)
            ):
                return True
        elif (
            at_least is not None
            and issubclass(kind, int)
            and not issubclass(kind, bool)
            and value >= at_least
        ):
            return True
    return False


def _record_value(record: object, fields: list[str]) -> tuple[object, bool]:
    """(timestamp value, is a mapping): the first field not absent, None or ""."""
    if issubclass(type(record), dict):
        getter = dict.get.__get__(record)
    elif hasattr(record, "get"):
        getter = record.get
    else:
        return record, False
    for field in fields:
        value = getter(field)
        if value is not None and not (issubclass(type(value), str) and not str.__len__(value)):
            return value, True
    return None, True


def _record_label(record: object, category_field: str) -> str | None:
    if issubclass(type(record), dict):
        label = dict.get(record, category_field)  # type: ignore[call-overload]
    else:
        label = record.get(category_field)  # type: ignore[attr-defined]
    return _label(label)


def count_records(
    records: list[object],
    /,
    *,
    fields: Sequence[str],
    category_field: str | None,
    start_minute: int,
    end_minute: int,
    sizes: Sequence[int],
    max_examples: int = 5,
    errors: Sequence[ErrorRuleData] | None = None,
) -> RawCount:
    """Count records (dicts, or objects with a mapping ``get``) by their first timestamp
    field whose value is not absent, ``None`` or ``""``; with ``errors``, also those of
    them that match a rule, in the same pass."""
    checked = _check(start_minute, end_minute, sizes)
    span = end_minute - start_minute
    names = list(fields)
    if not names:
        raise ValueError("at least one timestamp field is required")
    first = names[0]
    missing = invalid = outside = 0
    examples: list[object] = []
    heads, rests = _heads.get, _rests.get
    per_label: dict[str | None, list[int]] = {}
    n = len(records)
    rules = [(str(f), frozenset(v), a) for f, v, a in errors] if errors is not None else []
    error_cells: dict[str | None, list[int]] | None = {} if errors is not None else None
    for record in records:
        # Fast path: a plain dict whose first field is a string of the common shape.
        minute = None
        if type(record) is dict:
            text = record.get(first)
            if type(text) is str:
                local = heads(text[:19])
                if local is not None:
                    offset = rests(text[19:])
                    if offset is not None:
                        minute = local - offset
        if minute is None:
            value, is_mapping = _record_value(record, names)
            if not is_mapping:
                invalid += 1
                if len(examples) < max_examples:
                    examples.append(record)
                continue
            classified = _classify(value)
            if classified is None:
                invalid += 1
                if len(examples) < max_examples:
                    examples.append(value)
                continue
            if classified is _Tag.MISSING:
                missing += 1
                continue
            minute = classified
        index = minute - start_minute
        if not 0 <= index < span:
            outside += 1
            continue
        if category_field is None:
            key = None
        elif type(record) is dict:
            key = record.get(category_field)
            if type(key) is not str:
                key = _label(key)
        else:
            key = _record_label(record, category_field)
        counts = per_label.get(key)
        if counts is None:
            _room(span, sum(k is not None for k in per_label) + 2)
            counts = per_label[key] = [0] * span
            if error_cells is not None:
                error_cells[key] = [0] * span
        counts[index] += 1
        if error_cells is not None and is_error(record, rules):
            error_cells[key][index] += 1
    # A mapping's `get` or a key's `__eq__` may change the list: an iteration that ended
    # early or late did not count n records, so raise as the extension does.
    counted = sum(map(sum, per_label.values()))
    if len(records) != n or missing + invalid + outside + counted != n:
        raise _changed_size("records")
    processed = n - missing - invalid - outside
    result = _finish(
        processed, missing, invalid, outside, per_label, span, checked, examples, error_cells
    )
    if category_field is None:
        return (*result[:5], [], result[6], result[7], [])
    return result
