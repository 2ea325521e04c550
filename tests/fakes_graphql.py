"""In-process fake AppSync endpoint for client tests (real HTTP on 127.0.0.1, free port).

``FakeGraphQLServer`` answers every POST with, in order: the next scripted ``Reply`` (fault
injection), else its ``handler``. ``AppSyncFake`` is a small handler that imitates the
parts of AppSync the client uses: list-by-index queries with key conditions and
``nextToken`` pagination (optionally with empty pages), the AggregatedMetrics
byAccountRecordType query, and aliased create/update mutations with Amplify's conflict
semantics. Every document it receives is validated against ``schema.graphql``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import graphql

from metrics_agg.models import SOURCE_MODELS

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "python/metrics_agg/graphql/schema.graphql"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> sent as is
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None  # "reset": close without answering; "hang": stall, then close
    hang_seconds: float = 2.0


@dataclass
class Seen:
    headers: dict[str, str]
    raw: bytes
    path: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.raw)  # type: ignore[no-any-return]

    @property
    def variables(self) -> dict[str, Any]:
        return self.payload.get("variables") or {}


Handler = Callable[[dict[str, Any], Seen], "Reply | dict[str, Any]"]


class FakeGraphQLServer:
    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.script: list[Reply] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                seen = Seen({k.lower(): v for k, v in self.headers.items()}, raw, self.path)
                with outer._lock:
                    outer.requests.append(seen)
                    reply = outer.script.pop(0) if outer.script else None
                try:
                    if reply is None:
                        if outer.handler is None:
                            reply = Reply(200, {"data": None})
                        else:
                            got = outer.handler(seen.payload, seen)
                            reply = got if isinstance(got, Reply) else Reply(200, got)
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send(self, reply: Reply) -> None:
                if reply.action == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    return
                if reply.action == "hang":
                    outer._released.wait(reply.hang_seconds)
                    self.close_connection = True
                    return
                body = reply.body
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/graphql"

    def __enter__(self) -> FakeGraphQLServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- a tiny AppSync ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def _schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(SCHEMA_PATH.read_text())


def _skipped(sel: graphql.FieldNode, variables: dict[str, Any]) -> bool:
    """``@skip(if: true)`` or ``@include(if: false)`` on a top-level field."""
    for d in sel.directives:
        value = graphql.value_from_ast_untyped(d.arguments[0].value, variables)
        if (d.name.value, bool(value)) in (("skip", True), ("include", False)):
            return True
    return False


@lru_cache(maxsize=256)
def parse_checked(document: str) -> graphql.DocumentNode:
    """Parse and validate against schema.graphql (AppSync rejects invalid documents)."""
    doc = graphql.parse(document)
    errors = graphql.validate(_schema(), doc)
    if errors:
        raise AssertionError(f"document invalid against schema.graphql: {errors}")
    return doc


def _match(value: str, cond: dict[str, Any] | None) -> bool:
    if not cond:
        return True
    for op, arg in cond.items():
        if arg is None:
            continue
        ok = {
            "eq": lambda a: value == a,
            "le": lambda a: value <= a,
            "lt": lambda a: value < a,
            "ge": lambda a: value >= a,
            "gt": lambda a: value > a,
            "beginsWith": lambda a: value.startswith(a),
            "between": lambda a: a[0] <= value <= a[1],
        }[op](arg)
        if not ok:
            return False
    return True


def _composite(cond: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cond:
        return cond
    join = lambda d: "#".join(v for v in (d.get("recordType"), d.get("timeRangeStart")) if v)  # noqa: E731
    return {
        op: ([join(x) for x in arg] if op == "between" else join(arg))
        for op, arg in cond.items()
        if arg is not None
    }


class AppSyncFake:
    """Handler: list queries over ``records[field]`` and an AggregatedMetrics table."""

    SORT_ARG: ClassVar[dict[str, str]] = {
        query: key
        for spec in SOURCE_MODELS.values()
        for query, key in zip(spec.list_queries, spec.sort_keys, strict=True)
    }

    def __init__(self, *, empty_pages: bool = False) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.metrics: dict[tuple[str, str], dict[str, Any]] = {}
        self.empty_pages = empty_pages
        self.fail: Callable[[str, dict[str, Any]], Reply | None] | None = None
        self.lock = threading.Lock()

    def __call__(self, payload: dict[str, Any], seen: Seen) -> Reply | dict[str, Any]:
        doc = parse_checked(payload["query"])
        variables = payload.get("variables") or {}
        op = doc.definitions[0]
        assert isinstance(op, graphql.OperationDefinitionNode)
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for sel in op.selection_set.selections:
            assert isinstance(sel, graphql.FieldNode)
            if _skipped(sel, variables):  # AppSync never runs a skipped alias's resolver
                continue
            name = sel.name.value
            alias = sel.alias.value if sel.alias else name
            args = {
                a.name.value: graphql.value_from_ast_untyped(a.value, variables)
                for a in sel.arguments
            }
            if self.fail is not None and (reply := self.fail(name, args)) is not None:
                return reply
            with self.lock:
                if name.startswith("list"):
                    data[alias] = self._list(name, args)
                else:
                    data[alias], err = self._mutate(name, args)
                    if err:
                        errors.append({**err, "path": [alias], "data": None})
        return {"data": data, "errors": errors} if errors else {"data": data}

    def _list(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart":
            cond = _composite(args.get("recordTypeTimeRangeStart"))
            rows = sorted(
                (r for (acct, _), r in self.metrics.items() if acct == args["accountId"]),
                key=lambda r: f"{r['recordType']}#{r['timeRangeStart']}",
            )
            rows = [r for r in rows if _match(f"{r['recordType']}#{r['timeRangeStart']}", cond)]
        else:
            key = self.SORT_ARG[name]
            rows = sorted(
                (
                    r
                    for r in self.records.get(name, [])
                    if r["accountId"] == args["accountId"] and isinstance(r.get(key), str)
                ),
                key=lambda r: r[key],
            )
            rows = [r for r in rows if _match(r[key], args.get(key))]
        # Tokens: "o:N" = the page at offset N; "e:N" = an empty page that continues at N.
        token = args.get("nextToken")
        limit = args.get("limit") or 100
        if token is None:
            token = "e:0" if self.empty_pages else "o:0"
        kind, _, num = token.partition(":")
        offset = int(num)
        if kind == "e":
            return {"items": [], "nextToken": f"o:{offset}"}
        page = rows[offset : offset + limit]
        if offset + limit >= len(rows):
            return {"items": page, "nextToken": None}
        return {"items": page, "nextToken": f"{'e' if self.empty_pages else 'o'}:{offset + limit}"}

    def _mutate(self, name: str, args: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        inp = dict(args["input"])
        key = (inp["accountId"], inp["compositeKey"])
        conflict = {
            "errorType": "DynamoDB:ConditionalCheckFailedException",
            "message": "The conditional request failed",
        }
        stored = self.metrics.get(key)
        if name == "createAggregatedMetrics":
            if stored is not None:
                return None, conflict
            row = {**inp}
            row.setdefault("createdAt", time.strftime("%Y-%m-%dT%H:%M:%S.000000Z"))
            self.metrics[key] = row
            return row, None
        if name == "updateAggregatedMetrics":
            if stored is None:
                return None, conflict
            cond = (args.get("condition") or {}).get("updatedAt")
            if cond and not _match(stored["updatedAt"], cond):
                return None, conflict
            stored.update(inp)
            return stored, None
        raise AssertionError(f"unexpected field {name}")
