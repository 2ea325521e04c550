"""Amplify `filter` / `condition` inputs and key conditions, evaluated as DynamoDB does.

Strings compare by code point, which is UTF-8 byte order (DynamoDB's order). A missing
attribute fails every comparison except `ne`, `notContains` and `attributeExists: false`,
as in DynamoDB condition expressions.
"""

from __future__ import annotations

__all__ = ["KeyCondition", "KeyConditionError", "matches"]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_TYPE_NAMES = {
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    dict: "map",
    list: "list",
    type(None): "_null",
}


class KeyConditionError(ValueError):
    """A key condition DynamoDB would reject (e.g. `between` with bounds reversed)."""


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, str) and isinstance(b, str)) or (
        isinstance(a, int | float) and isinstance(b, int | float)
    )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return _comparable(a, b) and bool(a == b)


def _contains(v: Any, x: Any) -> bool:
    if isinstance(v, str):
        return isinstance(x, str) and x in v
    if isinstance(v, list):
        return any(_equal(e, x) for e in v)
    return False


def _field_ok(value: Any, ops: Mapping[str, Any]) -> bool:
    present = value is not _MISSING
    for op, x in ops.items():
        if x is None:
            continue
        if op == "attributeExists":
            ok = present == bool(x)
        elif op == "ne":
            ok = not (present and _equal(value, x))
        elif op == "notContains":
            ok = not (present and _contains(value, x))
        elif not present:
            ok = False
        elif op == "eq":
            ok = _equal(value, x)
        elif op in ("lt", "le", "gt", "ge"):
            ok = (
                _comparable(value, x)
                and {"lt": value < x, "le": value <= x, "gt": value > x, "ge": value >= x}[op]
            )
        elif op == "between":
            lo, hi = [*list(x), None, None][:2]
            ok = _comparable(value, lo) and _comparable(value, hi) and lo <= value <= hi
        elif op == "beginsWith":
            ok = isinstance(value, str) and isinstance(x, str) and value.startswith(x)
        elif op == "contains":
            ok = _contains(value, x)
        elif op == "attributeType":
            ok = _TYPE_NAMES.get(type(value)) == str(getattr(x, "value", x))
        elif op == "size":
            size = len(value) if isinstance(value, str | list | dict) else None
            ok = size is not None and _field_ok(size, x)
        else:
            raise ValueError(f"unsupported condition operator {op!r}")
        if not ok:
            return False
    return True


def matches(cond: Mapping[str, Any] | None, item: Mapping[str, Any] | None) -> bool:
    """True when `item` (None: no item) satisfies an Amplify filter/condition input.

    Raises:
        ValueError: an operator this emulation does not know.
    """
    if not cond:
        return True
    item = item or {}
    for key, value in cond.items():
        if value is None:
            continue
        if key == "and":
            ok = all(matches(c, item) for c in value if c is not None)
        elif key == "or":
            ok = any(matches(c, item) for c in value if c is not None)
        elif key == "not":
            ok = not matches(value, item)
        else:
            ok = _field_ok(item.get(key, _MISSING), value)
        if not ok:
            return False
    return True


def _prefix_upper(prefix: str) -> str | None:
    """Smallest string greater than every string starting with `prefix` (None: unbounded)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded; skip past them
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


@dataclass(frozen=True, slots=True)
class KeyCondition:
    """One sort-key condition (`eq le lt ge gt between beginsWith`) on a string key."""

    op: str
    values: tuple[str, ...]

    @classmethod
    def from_input(cls, cond: Mapping[str, Any] | None) -> KeyCondition | None:
        """Build from a `ModelStringKeyConditionInput` already reduced to strings.

        Raises:
            KeyConditionError: more than one operator, or a malformed `between`.
        """
        if not cond:
            return None
        ops = [(k, v) for k, v in cond.items() if v is not None]
        if not ops:
            return None
        if len(ops) > 1:
            raise KeyConditionError(
                "Query key condition not supported: use one of eq, le, lt, ge, gt, between, "
                "beginsWith"
            )
        op, value = ops[0]
        if op == "between":
            if not isinstance(value, Sequence) or len(value) != 2:
                raise KeyConditionError("between expects exactly 2 elements")
            lo, hi = str(value[0]), str(value[1])
            if lo > hi:
                raise KeyConditionError(
                    "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound "
                    "to be greater than or equal to lower bound"
                )
            return cls(op, (lo, hi))
        if op not in ("eq", "le", "lt", "ge", "gt", "beginsWith"):
            raise KeyConditionError(f"unsupported key condition operator {op!r}")
        return cls(op, (str(value),))

    def bounds(self) -> tuple[str | None, bool, str | None, bool]:
        """(low, low inclusive, high, high inclusive) on the sort key."""
        v = self.values[0]
        if self.op == "eq":
            return v, True, v, True
        if self.op == "lt":
            return None, False, v, False
        if self.op == "le":
            return None, False, v, True
        if self.op == "gt":
            return v, False, None, False
        if self.op == "ge":
            return v, True, None, False
        if self.op == "between":
            return v, True, self.values[1], True
        return v, True, _prefix_upper(v), False  # beginsWith
