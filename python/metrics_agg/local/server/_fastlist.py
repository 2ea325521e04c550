"""A faster completion for list pages whose items select only plain scalar fields.

graphql-core resolves and completes every field of every item (~100 µs per 1,000-item
page per field here); a list page of flat records needs none of that. When each item is a
dict and the selection is plain fields (aliases allowed; no fragments, directives or
arguments) of known scalar types holding values of the right Python type, the list is
projected directly. Anything else (or any value that would need an error) takes
graphql-core's normal path, so results never differ.
"""

from __future__ import annotations

__all__ = ["FastListExecutionContext"]

from collections.abc import AsyncIterable, Iterable
from typing import Any

from graphql import (
    ExecutionContext,
    FieldNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
)
from graphql.pyutils import Path

_STR = ("String", "ID", "AWSDateTime", "AWSDate", "AWSTime", "AWSEmail", "AWSURL")
# Scalars whose values pass through unchanged when their Python type is one of these.
_OK: dict[str, frozenset[type]] = {
    **{n: frozenset({str}) for n in _STR},
    "Boolean": frozenset({bool}),
    "Float": frozenset({int, float}),
}
_SERIALIZED = ("Int", "AWSJSON")  # checked/converted by the scalar's own serializer
_Plan = list[tuple[str, str, bool, frozenset[type] | None, GraphQLScalarType | None]]


def _plan(item_type: GraphQLOutputType, field_nodes: list[FieldNode]) -> _Plan | None:
    if isinstance(item_type, GraphQLNonNull) or not isinstance(item_type, GraphQLObjectType):
        return None
    plan: _Plan = []
    for node in field_nodes:
        if node.selection_set is None:
            return None
        for sel in node.selection_set.selections:
            if not isinstance(sel, FieldNode) or sel.directives or sel.arguments:
                return None
            name = sel.name.value
            key = sel.alias.value if sel.alias else name
            if name == "__typename":
                plan.append((key, name, True, None, None))
                continue
            field = item_type.fields.get(name)
            if field is None:
                return None
            t = field.type
            non_null = isinstance(t, GraphQLNonNull)
            if non_null:
                t = t.of_type
            if not isinstance(t, GraphQLScalarType):
                return None
            allowed = _OK.get(t.name)
            if allowed is None and t.name not in _SERIALIZED:
                return None
            plan.append((key, name, non_null, allowed, t if allowed is None else None))
    return plan


class FastListExecutionContext(ExecutionContext):
    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_nodes: list[FieldNode],
        info: GraphQLResolveInfo,
        path: Path,
        result: AsyncIterable[Any] | Iterable[Any],
    ) -> Any:
        if isinstance(result, list) and all(type(r) is dict for r in result):
            plan = _plan(return_type.of_type, field_nodes)
            if plan is not None:
                rows = _project(plan, return_type.of_type.name, result)  # type: ignore[union-attr]
                if rows is not None:
                    return rows
        return super().complete_list_value(return_type, field_nodes, info, path, result)


def _project(plan: _Plan, type_name: str, items: list[dict[str, Any]]) -> list[Any] | None:
    out: list[Any] = []
    append = out.append
    for item in items:
        get = item.get
        row: dict[str, Any] = {}
        for key, name, non_null, allowed, scalar in plan:
            v = get(name)
            if v is None:
                if name == "__typename":
                    row[key] = type_name
                elif non_null:
                    return None  # graphql-core reports the error; let it
                else:
                    row[key] = None
            elif allowed is not None:
                if type(v) not in allowed:
                    return None
                row[key] = v
            else:
                try:
                    row[key] = scalar.serialize(v)  # type: ignore[union-attr]
                except Exception:  # out of range etc.: graphql-core's path reports it
                    return None
        append(row)
    return out
