"""``count_buckets`` / ``count_records``: the counting contract of docs/design.md §3.

This module validates arguments, picks the loop (the compiled ``_rust_counter``, else
``_pycounter``; both have the same signatures) and builds ``CountResult`` from the plain
lists the loop returns, so the two backends share everything but the loop itself.
"""

from __future__ import annotations

__all__ = [
    "Backend",
    "count_buckets",
    "count_records",
    "counter_backend",
    "feedback_class",
    "is_error",
    "window_minutes",
]

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeAlias

from metrics_agg.config import COUNTER_ENV, counter_choice
from metrics_agg.counter import _pycounter
from metrics_agg.errors import BackendUnavailableError
from metrics_agg.models import BUCKET_SIZES, CountResult, ErrorRule
from metrics_agg.timestamps import EPOCH, parse_instant

try:
    from metrics_agg import _rust_counter
except ImportError:  # no compiled extension in this install: the pure-Python loop serves
    _rust_counter = None  # type: ignore[assignment]

logger = logging.getLogger("metrics_agg.counting")

Backend: TypeAlias = Literal["auto", "rust", "python"]
WindowBound: TypeAlias = datetime | str

_EXAMPLE_WIDTH = 80
_MAX_EXAMPLES = 5


class _Loops(Protocol):
    """What ``_rust_counter`` and ``_pycounter`` both provide."""

    count_strings: Callable[..., _pycounter.RawCount]
    count_records: Callable[..., _pycounter.RawCount]


def counter_backend() -> Literal["rust", "python"]:
    """The backend ``backend="auto"`` uses now: ``METRICS_AGG_COUNTER``, else what imported.

    Raises:
        BackendUnavailableError: ``METRICS_AGG_COUNTER=rust`` but the extension is absent.
        ValueError: ``METRICS_AGG_COUNTER`` has another value.
    """
    return _resolve("auto")


def _resolve(backend: str) -> Literal["rust", "python"]:
    choice = backend
    if choice == "auto":
        choice = counter_choice()
    if choice == "auto":
        return "rust" if _rust_counter is not None else "python"
    if choice == "python":
        return "python"
    if choice == "rust":
        if _rust_counter is None:
            raise BackendUnavailableError(
                "the compiled counter (metrics_agg._rust_counter) is not installed; build it "
                "with `bash scripts/bootstrap.sh` (needs cargo), or use backend='python' / "
                f"{COUNTER_ENV}=python"
            )
        return "rust"
    raise ValueError(f"backend must be 'auto', 'rust' or 'python', got {backend!r}")


def _loops(backend: str) -> _Loops:
    return _rust_counter if _resolve(backend) == "rust" else _pycounter


def _bound(value: WindowBound, name: str) -> datetime:
    if isinstance(value, str):
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be an aware datetime or a timestamp string")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


def window_minutes(
    window_start: WindowBound, window_end: WindowBound, sizes: Sequence[int] = BUCKET_SIZES
) -> tuple[datetime, datetime, int, int, tuple[int, ...]]:
    """Validate a window and sizes; returns (start, end, start minute, end minute, sizes).

    Raises:
        ValueError: naive or unparsable bounds, end not after start, a size that is not a
            positive int, or a bound that is not a multiple of every size in epoch minutes.
        TypeError: a bound that is neither a datetime nor a string.
    """
    start = _bound(window_start, "window_start")
    end = _bound(window_end, "window_end")
    if isinstance(sizes, (str, bytes)):
        raise TypeError("sizes must be a sequence of ints")
    checked = tuple(sizes)
    if not checked:
        raise ValueError("sizes must name at least one bucket size")
    for size in checked:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"bucket sizes must be positive whole minutes, got {size!r}")
    if end <= start:
        raise ValueError(
            f"window_end ({end.isoformat()}) must be after window_start ({start.isoformat()})"
        )
    for bound, name in ((start, "window_start"), (end, "window_end")):
        offset = bound - EPOCH
        if offset.seconds % 60 or offset.microseconds:
            raise ValueError(f"{name} ({bound.isoformat()}) must fall on a whole minute")
    start_minute = int((start - EPOCH).total_seconds()) // 60
    end_minute = int((end - EPOCH).total_seconds()) // 60
    for size in checked:
        for minute, bound, name in (
            (start_minute, start, "window_start"),
            (end_minute, end, "window_end"),
        ):
            if minute % size:
                raise ValueError(
                    f"{name} ({bound.isoformat()}) is not aligned to the {size}-minute "
                    f"buckets: the window's start and end must be multiples of every size "
                    f"since the Unix epoch (UTC)"
                )
    return start, end, start_minute, end_minute, checked


def _as_list(values: Sequence[object], name: str) -> list[object]:
    if type(values) is list:
        return values  # read in place; a subclass is copied so its own __iter__ decides
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of values, not a single {type(values).__name__}"
        )
    return list(values)


def _example(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _EXAMPLE_WIDTH else text[: _EXAMPLE_WIDTH - 1] + "…"


def _result(
    raw: _pycounter.RawCount,
    start: datetime,
    end: datetime,
    sizes: tuple[int, ...],
    *,
    with_categories: bool,
) -> CountResult:
    processed, missing, invalid, outside, counts, categories, examples, errs, cat_errs = raw
    shown = tuple(_example(value) for value in examples)
    if invalid:
        logger.warning(
            "%d invalid timestamp(s) not counted in [%s, %s); e.g. %s",
            invalid,
            start.isoformat(),
            end.isoformat(),
            ", ".join(shown),
        )
    return CountResult(
        window_start=start,
        window_end=end,
        sizes=sizes,
        processed=processed,
        missing=missing,
        invalid=invalid,
        outside_window=outside,
        counts=dict(zip(sizes, counts, strict=True)),
        category_counts={
            label: dict(zip(sizes, per_size, strict=True)) for label, per_size in categories
        }
        if with_categories
        else {},
        invalid_examples=shown,
        error_counts=None if errs is None else dict(zip(sizes, errs, strict=True)),
        category_error_counts={
            label: dict(zip(sizes, per_size, strict=True))
            for (label, _), per_size in zip(categories, cat_errs, strict=True)
        }
        if with_categories and errs is not None
        else {},
    )


def count_buckets(
    timestamps: Sequence[object],
    window_start: WindowBound,
    window_end: WindowBound,
    sizes: Sequence[int] = BUCKET_SIZES,
    categories: Sequence[object] | None = None,
    backend: Backend = "auto",
) -> CountResult:
    """Count timestamps into every bucket of each size over ``[window_start, window_end)``.

    Each input is exactly one of processed / missing (``None``, ``""``) / invalid (any
    other value not of the accepted form, docs/design.md §3) / outside_window. ``categories``,
    when given, is a parallel sequence of labels: a ``str`` is a label, anything else
    means no category (``None``); ``category_counts`` then holds the labels of the
    processed inputs.

    Raises:
        ValueError: see ``window_minutes``; ``categories`` of another length; a bad
            ``backend`` or ``METRICS_AGG_COUNTER``.
        BackendUnavailableError: ``backend="rust"`` without the compiled extension.
    """
    start, end, start_minute, end_minute, checked = window_minutes(window_start, window_end, sizes)
    loops = _loops(backend)
    values = _as_list(timestamps, "timestamps")
    labels = None if categories is None else _as_list(categories, "categories")
    if labels is not None and len(labels) != len(values):
        raise ValueError(f"categories has {len(labels)} items but timestamps has {len(values)}")
    raw = loops.count_strings(
        values,
        labels,
        start_minute=start_minute,
        end_minute=end_minute,
        sizes=checked,
        max_examples=_MAX_EXAMPLES,
    )
    return _result(raw, start, end, checked, with_categories=labels is not None)


def count_records(
    records: Sequence[Mapping[str, object]] | Sequence[object],
    window_start: WindowBound,
    window_end: WindowBound,
    *,
    fields: Sequence[str] = ("createdAt",),
    category_field: str | None = None,
    sizes: Sequence[int] = BUCKET_SIZES,
    backend: Backend = "auto",
    errors: Sequence[ErrorRule] | None = None,
) -> CountResult:
    """Count records by timestamp field, straight from the list (no intermediate lists).

    A record's timestamp is the value of the first of ``fields`` that is present and not
    ``None`` or ``""`` (none: missing); its category is its ``category_field`` value when
    that is a ``str``. Records that are not mappings are invalid. Otherwise exactly as
    ``count_buckets``. With ``errors`` (``ErrorRule``s, any of which makes a record an
    error), ``error_counts`` and ``category_error_counts`` count the processed records
    that are errors, in the same pass.

    Raises:
        ValueError: as ``count_buckets``, ``fields`` empty, or an error rule's threshold
            outside the 64-bit range.
        BackendUnavailableError: ``backend="rust"`` without the compiled extension.
    """
    start, end, start_minute, end_minute, checked = window_minutes(window_start, window_end, sizes)
    if isinstance(fields, str):
        fields = (fields,)
    names = tuple(fields)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError("fields must name at least one timestamp field")
    if category_field is not None and not isinstance(category_field, str):
        raise TypeError("category_field must be a field name or None")
    loops = _loops(backend)
    rules = None if errors is None else [_rule_data(rule) for rule in errors]
    raw = loops.count_records(
        _as_list(records, "records"),
        fields=names,
        category_field=category_field,
        start_minute=start_minute,
        end_minute=end_minute,
        sizes=checked,
        max_examples=_MAX_EXAMPLES,
        errors=rules,
    )
    return _result(raw, start, end, checked, with_categories=category_field is not None)


_I64 = range(-(2**63), 2**63)


def _rule_data(rule: ErrorRule) -> _pycounter.ErrorRuleData:
    """An ``ErrorRule`` as the loops take it: ``(field, values, at_least)``."""
    if not isinstance(rule, ErrorRule):
        raise TypeError(f"errors must be ErrorRule values, got {type(rule).__name__}")
    if rule.at_least is not None and rule.at_least not in _I64:
        raise ValueError(f"error rule threshold {rule.at_least} is outside the 64-bit range")
    for text in (rule.field, *rule.values):
        if not isinstance(text, str) or not _encodable(text):
            raise ValueError(f"error rule field and values must be text, got {text!r}")
    # Exact strings only, so neither loop runs a subclass's methods (`__str__`, `__hash__`,
    # `__eq__`): a rule is its characters, as the extension reads them.
    return str.__str__(rule.field), [str.__str__(v) for v in rule.values], rule.at_least


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no value read from a record equals it
        return False
    return True


def feedback_class(rec: Mapping[str, object]) -> str:
    """ "invalid" | "changed" | "unchanged" for one FeedbackItem (docs/design.md §2): the
    label its feedback buckets' metadata counts it under (stream planning asks it too)."""
    initial, final = rec.get("initialAnswerValue"), rec.get("finalAnswerValue")
    if rec.get("isInvalid") or initial is None or final is None:
        return "invalid"
    return "changed" if str(initial) != str(final) else "unchanged"


def is_error(record: Mapping[str, object], rules: Sequence[ErrorRule]) -> bool:
    """Whether one record matches any of ``rules`` (what ``count_records`` counts as an
    error), for callers that build their own labels (the feedback scopes)."""
    return _pycounter.is_error(record, [_rule_data(rule) for rule in rules])
