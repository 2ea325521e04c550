"""The compiled counting loop (``rust_counter/``): the contract ``_pycounter`` mirrors.

Both functions read the given list in place and count every item into exactly one of
processed / missing / invalid / outside_window (docs/design.md §3). They are called by
``metrics_agg.counter.api``, which validates arguments first and builds ``CountResult``.
"""

from collections.abc import Sequence
from typing import Final, Literal, TypeAlias, final

RawCount: TypeAlias = tuple[
    int,  # processed
    int,  # missing
    int,  # invalid
    int,  # outside_window
    list[list[int]],  # counts: one list per size, one count per bucket
    list[tuple[str | None, list[list[int]]]],  # (category, counts), first-counted order
    list[object],  # the first `max_examples` invalid values
    list[list[int]] | None,  # error counts like `counts`; None without `errors`
    list[list[list[int]]],  # per category, in the same order, like its counts; [] without
]
# (field, accepted str values, whole-number threshold or None): `models.ErrorRule` as data.
ErrorRuleData: TypeAlias = tuple[str, Sequence[str], int | None]

build_profile: Final[Literal["debug", "release"]]
"""Cargo profile of this build; benchmarks refuse ``"debug"``."""

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
    """Count timestamp values into buckets of each size over ``[start_minute, end_minute)``.

    Arguments:
        timestamps: ``str`` (parsed), ``None`` or ``""`` (missing), anything else (invalid).
        categories: optional parallel list; a ``str`` is a label, anything else is ``None``.
            Only labels of processed items appear in the result.
        start_minute, end_minute: UTC epoch minutes, multiples of every size.
        sizes: bucket sizes in minutes.

    Returns:
        ``RawCount``; ``category_counts`` is empty when ``categories`` is ``None``.

    Raises:
        ValueError: empty window, no sizes, a size <= 0, a window not aligned to a size,
            or ``categories`` of another length.
        MemoryError: a window too long to hold per-minute counts.
    """

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
    """Count records by their timestamp, like ``count_strings``.

    A record is a ``dict`` (read directly, like ``dict.get``) or an object with a mapping
    ``get`` method (called); any other item is invalid. Its timestamp is the value of
    the first of ``fields`` that is not absent, ``None`` or ``""``; none: missing. Its
    category is the ``category_field`` value when that is a ``str``, else ``None``.
    With ``errors``, a processed record is also an error when, for any rule in order,
    its field's value is a ``str`` equal to one of the values, or (with a threshold) an
    ``int`` (not a ``bool``) or a ``str`` of ASCII digits whose number is >= it.

    Raises:
        ValueError: as ``count_strings``, or ``fields`` empty.
        Exception: whatever a record's own ``get`` raises.
    """

@final
class _OwnedStrings:
    """Benchmark aid, not part of the contract: the strings copied into Rust once, so
    ``count`` times the standalone Rust loop over them (no Python objects touched). Only in
    builds with the ``bench`` cargo feature (``scripts/bootstrap.sh``), not in wheels."""

    def __init__(self, texts: list[str], /) -> None: ...
    def count(
        self, *, start_minute: int, end_minute: int, sizes: Sequence[int]
    ) -> tuple[int, int, int, int]: ...
