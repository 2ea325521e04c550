"""A small HTTP client for the demo and tests: write single records through the real API.

Not the aggregator's transport (that is `graphql/transport.py`, with retries and SigV4):
this one sends one request, raises on any error, and builds its documents from
schema.graphql so it stays in step with the schema.

    with LocalClient(stack.endpoint, stack.api_key) as api:
        item = api.create("Item", accountId="acct-1", createdByType="prediction")
        api.update("Item", item["id"], description="edited")
        api.delete("Item", item["id"])
"""

from __future__ import annotations

__all__ = ["LocalApiError", "LocalClient"]

import functools
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson
import urllib3
from graphql import GraphQLObjectType, GraphQLSchema, build_schema, get_named_type, is_leaf_type

from metrics_agg.local.server.app import schema_path


class LocalApiError(RuntimeError):
    """The API answered with errors (or a non-200 status)."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        self.status = status
        self.errors = errors
        first = errors[0] if errors else {}
        super().__init__(f"HTTP {status}: {first.get('errorType')}: {first.get('message')}")


@functools.cache
def _schema() -> GraphQLSchema:
    return build_schema(schema_path().read_text(encoding="utf-8"))


def selection(type_name: str) -> str:
    """Every scalar field of an object type, as a selection set body."""
    t = _schema().get_type(type_name)
    assert isinstance(t, GraphQLObjectType)
    return " ".join(n for n, f in t.fields.items() if is_leaf_type(get_named_type(f.type)))


class LocalClient:
    """One pooled connection to a local (or any API-key) AppSync endpoint."""

    def __init__(self, endpoint: str, api_key: str, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self._headers = {"x-api-key": api_key, "content-type": "application/json"}
        self._http = urllib3.PoolManager(maxsize=4, timeout=timeout, retries=False)

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def post(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; (status, decoded body). Raises only on transport errors."""
        resp = self._http.request(
            "POST",
            self.endpoint,
            body=orjson.dumps({"query": query, "variables": dict(variables or {})}),
            headers={**self._headers, **(headers or {})},
        )
        return resp.status, orjson.loads(resp.data)

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`data` of a successful request.

        Raises:
            LocalApiError: non-200 status or any GraphQL error.
        """
        status, body = self.post(query, variables)
        if status != 200 or body.get("errors"):
            raise LocalApiError(status, list(body.get("errors") or []))
        return dict(body["data"])

    def _mutate(
        self, op: str, model: str, inp: Mapping[str, Any], condition: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        cond_type = f"Model{model}ConditionInput"
        doc = (
            f"mutation M($input: {op.capitalize()}{model}Input!, $condition: {cond_type}) "
            f"{{ r: {op}{model}(input: $input, condition: $condition) {{ {selection(model)} }} }}"
        )
        return dict(self.execute(doc, {"input": dict(inp), "condition": condition})["r"])

    def create(
        self, model: str, *, condition: Mapping[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        return self._mutate("create", model, fields, condition)

    def update(
        self, model: str, id: str, *, condition: Mapping[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        return self._mutate("update", model, {"id": id, **fields}, condition)

    def delete(
        self, model: str, id: str, *, condition: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._mutate("delete", model, {"id": id}, condition)

    def get(self, model: str, id: str) -> dict[str, Any] | None:
        doc = f"query G($id: ID!) {{ r: get{model}(id: $id) {{ {selection(model)} }} }}"
        r = self.execute(doc, {"id": id})["r"]
        return None if r is None else dict(r)
