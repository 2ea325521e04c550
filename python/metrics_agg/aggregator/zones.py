"""Timestamps with a zone offset beyond the read margin: found, counted, and explained.

docs/design.md §4.3: the index sorts sort keys as strings, so ``2026-11-26T03:10:00.000+02:00``
(01:10 UTC) sits among the ``03:10`` keys, while an hour's recount reads a UTC string range
widened by `Config.zone_margin_minutes` (plus the 1-minute `SORT_KEY_MARGIN`). A record
whose offset exceeds that margin can fall outside the read of its own hour: a recount then
misses it (its bucket is undercounted; it is never counted twice or in a wrong bucket,
since every record is placed by its parsed instant). Such records are never silent: the
stream images and the rows each read returns are scanned, and the pipeline warns once per
invocation and model, naming the knob to set.
"""

from __future__ import annotations

__all__ = ["merge_offsets", "offset_warning", "scan_offsets", "suggested_margin"]

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from metrics_agg.config import MAX_ZONE_MARGIN_MINUTES, ZONE_MARGIN_ENV
from metrics_agg.models import OffsetTimestamps
from metrics_agg.timestamps import zone_offset_minutes

_EXAMPLES = 5  # ids named in the warning; the count covers them all


def _placing(rec: Mapping[str, Any], fields: Sequence[str]) -> object:
    for name in fields:
        raw = rec.get(name)
        if raw is not None and raw != "":
            return raw
    return None


def scan_offsets(
    model: str,
    records: Iterable[Mapping[str, Any]],
    fields: Sequence[str],
    margin_minutes: int,
) -> OffsetTimestamps | None:
    """The records whose placing timestamp (first present of ``fields``) has a zone offset
    of more than ``margin_minutes``; ``None`` when there is none.

    UTC forms (``Z``, ``z``, ``±00:00``, ``+0000``, no zone) and invalid strings are not
    offsets (invalid ones are counted by the counter). Ending in ``Z`` is checked first:
    that is every timestamp an Amplify client writes, so a scan of a page costs a
    dictionary lookup and a character comparison per row. (A ``str`` subclass in a
    single-field scan is taken for UTC: rows and images are decoded to plain ``str``.)
    """
    # Ending in "Z" first (~60 ns a row): then only the few others are parsed.
    candidates: list[tuple[Mapping[str, Any], str]] = []
    if len(fields) == 1:
        (field,) = fields
        for rec in records:
            raw = rec.get(field)
            if raw.__class__ is str and raw[-1:] != "Z":
                candidates.append((rec, raw))
    else:
        for rec in records:
            raw = _placing(rec, fields)
            if isinstance(raw, str) and raw[-1:] != "Z":
                candidates.append((rec, raw))
    ids: set[str] = set()
    unnamed = worst = 0
    for rec, raw in candidates:
        offset = zone_offset_minutes(raw)  # `z`, "+00:00", no zone: 0; invalid: None
        if offset is None or abs(offset) <= margin_minutes:
            continue
        worst = max(worst, abs(offset))
        rid = rec.get("id")
        if isinstance(rid, str):
            ids.add(rid)
        else:
            unnamed += 1
    if not ids and not unnamed:
        return None
    return OffsetTimestamps(model, frozenset(ids), worst, unnamed)


def merge_offsets(found: Iterable[OffsetTimestamps | None]) -> tuple[OffsetTimestamps, ...]:
    """One entry per model (by id: a record seen in the batch and in a read counts once)."""
    by_model: dict[str, OffsetTimestamps] = {}
    for item in found:
        if item is None:
            continue
        seen = by_model.get(item.model)
        by_model[item.model] = item if seen is None else seen.merged(item)
    return tuple(by_model[m] for m in sorted(by_model))


def suggested_margin(max_offset_minutes: int) -> int:
    """The margin to set: the largest offset seen, rounded up to a whole hour (capped)."""
    return min(MAX_ZONE_MARGIN_MINUTES, -(-max_offset_minutes // 60) * 60)


def offset_warning(found: OffsetTimestamps, margin_minutes: int) -> str:
    """The operator's warning for one model (ids only, never record contents)."""
    examples = sorted(found.ids)[:_EXAMPLES]
    more = found.count - len(examples)
    named = ", ".join(examples) + (f" and {more} more" if more else "")
    hours, minutes = divmod(found.max_offset_minutes, 60)
    return (
        f"{found.model}: {found.count} record(s) have a timestamp with a zone offset beyond "
        f"the read margin (largest ±{hours:02d}:{minutes:02d} = {found.max_offset_minutes} "
        f"min; margin {margin_minutes} min), e.g. ids {named or '(none)'}. The index sorts "
        "these by their local-time string, so a recount can miss them and their buckets "
        f"may be undercounted. Set {ZONE_MARGIN_ENV}="
        f"{suggested_margin(found.max_offset_minutes)} (template parameter "
        "ZoneMarginMinutes) and recount the affected window."
    )
