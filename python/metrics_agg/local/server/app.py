"""The local AppSync endpoint: an ASGI app serving schema.graphql (ariadne, schema-first).

Per request: API-key check (401 UnauthorizedException like AppSync), parse and validate
(cached per document), count and maybe fail on purpose (FaultPlan), add the configured
latency without blocking other requests, execute, and answer in AppSync's error shape.
"""

from __future__ import annotations

__all__ = ["LocalAppSync", "build_schema", "schema_path"]

import asyncio
import contextlib
import hmac
import logging
import re
import socket
import struct
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from ariadne import MutationType, QueryType, ScalarType, make_executable_schema
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    execute,
    parse,
    validate,
)

from metrics_agg.local.server._fastlist import FastListExecutionContext
from metrics_agg.local.server.dashboard import DashboardRoutes, Delivery
from metrics_agg.local.server.dynamodb import (
    TARGET_PREFIX,
    DynamoProtocolError,
    handle_dynamodb_request,
)
from metrics_agg.local.server.faults import Fault, FaultPlan
from metrics_agg.local.server.queues import LocalQueues, SqsProtocolError, handle_sqs_request
from metrics_agg.local.server.resolvers import AppSyncError, Resolvers
from metrics_agg.local.server.store import Store

log = logging.getLogger("metrics_agg.local.server")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

UNAUTHORIZED = orjson.dumps(
    {
        "errors": [
            {
                "errorType": "UnauthorizedException",
                "message": "You are not authorized to make this call.",
            }
        ]
    }
)
_CACHE_SIZE = 4096  # distinct documents: aliased shapes of many sizes (issue 9 load runs)
CONTENT_JSON = (b"content-type", b"application/json; charset=UTF-8")

# AppSync's AWSDateTime: extended ISO 8601, zone mandatory, offset `Z` or `±hh:mm[:ss]`.
_AWS_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.[0-9]{1,9})?)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)",
    re.ASCII,
)


class ScalarParseError(ValueError):
    pass


def schema_path() -> Path:
    import metrics_agg.graphql as pkg

    return Path(pkg.__file__).parent / "schema.graphql"


def _parse_datetime(value: Any) -> str:
    m = _AWS_DATETIME.fullmatch(value) if isinstance(value, str) else None
    ok = False
    if m is not None:
        y, mo, d, h, mi, s, zh, zm, zs = (int(g) if g else 0 for g in m.groups())
        try:
            datetime(y, mo, d, h, mi, s)
            ok = zh <= 18 and zm <= 59 and zs <= 59
        except ValueError:
            ok = False
    if not ok:
        raise ScalarParseError(f"Unable to parse `{value}` as a valid DateTime Object.")
    return str(value)


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        raise ScalarParseError(f"Unable to parse `{value}` as valid JSON.")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ScalarParseError(f"Unable to parse `{value}` as valid JSON.") from None


def _serialize_json(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def build_schema(store: Store) -> GraphQLSchema:
    """schema.graphql with Amplify-semantics resolvers bound to `store`."""
    query, mutation = QueryType(), MutationType()
    q_fields, m_fields = Resolvers(store).fields()
    for name, fn in q_fields.items():
        query.set_field(name, fn)
    for name, fn in m_fields.items():
        mutation.set_field(name, fn)
    dt = ScalarType("AWSDateTime")
    # Stored values go out as stored (seeded data may predate validation; see seeding.py).
    dt.set_serializer(lambda v: v)
    dt.set_value_parser(_parse_datetime)
    js = ScalarType("AWSJSON")
    js.set_serializer(_serialize_json)
    js.set_value_parser(_parse_json)
    sdl = schema_path().read_text(encoding="utf-8")
    return make_executable_schema(sdl, query, mutation, dt, js)


_VAR_AT = re.compile(r"at '([^']*)'")


def _format_error(err: GraphQLError) -> dict[str, Any]:
    """AppSync's error entry: path, data, errorType, errorInfo, locations, message."""
    orig = err.original_error
    while isinstance(orig, GraphQLError) and orig.original_error is not None:
        orig = orig.original_error
    message = err.message
    error_type: str | None = None
    if isinstance(orig, AppSyncError):
        error_type = orig.error_type
        message = str(orig)
    elif isinstance(orig, ScalarParseError) and message.startswith("Variable"):
        m = _VAR_AT.search(message)
        name = m.group(1).rsplit(".", 1)[-1] if m else "input"
        message = f"Variable '{name}' has an invalid value. {orig}"
    elif orig is not None and not isinstance(orig, GraphQLError | ScalarParseError):
        log.exception("resolver failed", exc_info=orig)
        error_type = "InternalFailure"
    out: dict[str, Any] = {"path": list(err.path) if err.path else None}
    if err.path:
        out["data"] = None
        out["errorType"] = error_type
        out["errorInfo"] = None
    elif error_type:
        out["errorType"] = error_type
    out["locations"] = [
        {"line": loc.line, "column": loc.column, "sourceName": None}
        for loc in (err.locations or ())
    ]
    out["message"] = message
    return out


class LocalAppSync:
    """ASGI app for POST /graphql with AppSync's auth and error behaviour (+ the local page)."""

    def __init__(
        self,
        store: Store,
        *,
        api_key: str,
        latency_ms: float = 0,
        faults: FaultPlan | None = None,
        queues: LocalQueues | None = None,
        activity_table: str | None = None,
        activity_faults: FaultPlan | None = None,
        delivery: Callable[[], Delivery] | None = None,
    ) -> None:
        self.schema = build_schema(store)
        self.store = store
        self.queues = queues
        # The activity table (`dynamodb`), with its own faults and counts so the GraphQL
        # request figures tests read stay as they were.
        self.activity_table = activity_table
        self.activity_faults = activity_faults if activity_faults is not None else FaultPlan()
        self.api_key = api_key.encode()
        self.dashboard = DashboardRoutes(store, self.api_key, delivery)
        self.latency = max(0.0, latency_ms / 1000.0)
        self.faults = faults if faults is not None else FaultPlan()
        self._docs: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLError]]] = OrderedDict()

    def _document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        hit = self._docs.get(query)
        if hit is not None:
            self._docs.move_to_end(query)
            return hit
        try:
            doc: DocumentNode | None = parse(query)
            errors = validate(self.schema, doc) if doc is not None else []
        except GraphQLError as exc:
            doc, errors = None, [exc]
        self._docs[query] = (doc, list(errors))
        if len(self._docs) > _CACHE_SIZE:
            self._docs.popitem(last=False)
        return doc, list(errors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        target = dict(scope["headers"]).get(b"x-amz-target", b"")
        if (
            self.queues is not None
            and target.startswith(b"AmazonSQS.")
            and scope["method"] == "POST"
        ):
            await self._sqs(scope, receive, send, target[len(b"AmazonSQS.") :].decode("latin-1"))
            return
        if (
            self.activity_table is not None
            and target.startswith(TARGET_PREFIX)
            and scope["method"] == "POST"
        ):
            await self._dynamodb(receive, send, target[len(TARGET_PREFIX) :].decode("latin-1"))
            return
        if scope["path"].rstrip("/") != "/graphql":
            headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
            if not await self.dashboard(scope["path"], scope["method"], headers, send):
                await _respond(send, 404, b'{"errors":[{"message":"Not Found: POST /graphql"}]}')
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b'{"errors":[{"message":"Use POST /graphql"}]}')
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if not hmac.compare_digest(headers.get("x-api-key", b""), self.api_key):
            await _respond(
                send, 401, UNAUTHORIZED, [(b"x-amzn-errortype", b"UnauthorizedException")]
            )
            return
        try:
            request = orjson.loads(body)
            query = request["query"]
            variables = request.get("variables") or {}
            operation = request.get("operationName")
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError("query must be a string and variables an object")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await _respond(
                send,
                400,
                orjson.dumps(
                    {
                        "errors": [
                            {
                                "errorType": "BadRequestException",
                                "message": f"Invalid request body: {exc}. Send JSON "
                                '{"query": "...", "variables": {...}}',
                            }
                        ]
                    }
                ),
            )
            return
        doc, errors = self._document(query)
        fields = _top_level_fields(doc, operation) if doc is not None else []
        fault = self.faults.record(fields)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None and await self._fail(fault, send):
            return
        if errors or doc is None:
            payload0 = {"data": None, "errors": [_format_error(e) for e in errors]}
            await _respond(send, 200, orjson.dumps(payload0))
            return
        result = execute(
            self.schema,
            doc,
            variable_values=variables,
            operation_name=operation,
            context_value={"fault": fault},
            execution_context_class=FastListExecutionContext,
        )
        if not isinstance(result, ExecutionResult):  # every resolver is synchronous
            raise TypeError("asynchronous resolver in the local server")
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [_format_error(e) for e in result.errors]
        await _respond(send, 200, orjson.dumps(payload))

    async def _sqs(self, scope: Scope, receive: Receive, send: Send, operation: str) -> None:
        """SQS's JSON protocol (`queues`): the backfill's queues, as botocore calls them."""
        assert self.queues is not None
        body = await _read_body(receive)
        host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode("latin-1")
        kind = [(b"content-type", b"application/x-amz-json-1.0")]
        try:
            req = orjson.loads(body or b"{}")
            if not isinstance(req, dict):
                raise SqsProtocolError("InvalidParameterValue", "The request must be an object.")
            wait = float(req.get("WaitTimeSeconds") or 0) if operation == "ReceiveMessage" else 0
            until = asyncio.get_running_loop().time() + min(20.0, wait)
            while True:
                answer = handle_sqs_request(self.queues, operation, req, f"http://{host}")
                if answer.get("Messages") or asyncio.get_running_loop().time() >= until:
                    break
                await asyncio.sleep(0.05)  # long polling: the queues are shared with threads
        except orjson.JSONDecodeError:
            error = {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": "bad JSON"}
            await _respond(send, 400, orjson.dumps(error), kind)
            return
        except SqsProtocolError as exc:
            error = {"__type": f"com.amazonaws.sqs#{exc.code}", "message": str(exc)}
            await _respond(send, exc.status, orjson.dumps(error), kind)
            return
        await _respond(send, 200, orjson.dumps(answer), kind)

    async def _dynamodb(self, receive: Receive, send: Send, operation: str) -> None:
        """DynamoDB's JSON protocol (`dynamodb`): the activity table, as botocore calls it.

        The latency applies as to GraphQL (both model a round trip to AWS); a fault on
        ``dynamodb.<Operation>`` answers with its HTTP status and a DynamoDB error.
        """
        assert self.activity_table is not None
        body = await _read_body(receive)
        fault = self.activity_faults.record([f"dynamodb.{operation}"])
        if self.latency:
            await asyncio.sleep(self.latency)
        status, answer = 200, b""
        if fault is not None and fault.status is not None:
            status = fault.status
            code = fault.error_type or (
                "ValidationException" if status < 500 else "InternalServerError"
            )
            error = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}
            answer = orjson.dumps(error)
        else:
            try:
                req = orjson.loads(body or b"{}")
                if not isinstance(req, dict):
                    raise DynamoProtocolError("SerializationException", "not a JSON object")
                result = handle_dynamodb_request(self.store, self.activity_table, operation, req)
                answer = orjson.dumps(result)
            except orjson.JSONDecodeError:
                status, answer = (
                    400,
                    orjson.dumps({"__type": "com.amazon.coral.service#SerializationException"}),
                )
            except DynamoProtocolError as exc:
                status = exc.status
                answer = orjson.dumps(
                    {
                        "__type": f"com.amazonaws.dynamodb.v20120810#{exc.code}",
                        "message": str(exc),
                    }
                )
        headers = [
            (b"content-type", b"application/x-amz-json-1.0"),
            (b"x-amz-crc32", str(zlib.crc32(answer)).encode()),
        ]
        await _respond(send, status, answer, headers)

    async def _fail(self, fault: Fault, send: Send) -> bool:
        """Apply a request-level fault; False when the request should still be served."""
        action = fault.action
        if action == "alias_errors":
            return False
        if action == "delay":
            await asyncio.sleep(fault.delay or 0.0)
            return False
        if action == "timeout":
            await asyncio.sleep(30.0 if fault.delay is None else fault.delay)
            _reset(send)
            return True
        if action == "reset":
            _reset(send)
            return True
        if action == "malformed_json":
            await _respond(send, 200, b'{"data": {"items": [{"id": "trunc')
            return True
        if action == "graphql_error":
            await _respond(
                send,
                200,
                orjson.dumps(
                    {
                        "data": None,
                        "errors": [
                            {
                                "errorType": fault.error_type or "InternalFailure",
                                "message": fault.message
                                or "An internal failure occurred (injected).",
                            }
                        ],
                    }
                ),
            )
            return True
        status = fault.status or 500
        extra: list[tuple[bytes, bytes]] = []
        if fault.retry_after is not None:
            extra.append((b"retry-after", str(fault.retry_after).encode()))
        error_type = fault.error_type or (
            "TooManyRequestsException" if status == 429 else "InternalFailure"
        )
        await _respond(
            send,
            status,
            orjson.dumps(
                {
                    "errors": [
                        {
                            "errorType": error_type,
                            "message": fault.message or f"Injected HTTP {status}.",
                        }
                    ]
                }
            ),
            extra,
        )
        return True


def _top_level_fields(doc: DocumentNode, operation: str | None) -> list[str]:
    for d in doc.definitions:
        if isinstance(d, OperationDefinitionNode) and (
            operation is None or (d.name is not None and d.name.value == operation)
        ):
            return [s.name.value for s in d.selection_set.selections if hasattr(s, "name")]
    return []


def _reset(send: Send) -> None:
    """Drop the connection with a TCP RST and no response (uvicorn's cycle owns it)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the connection to reset it")
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.is_closing():
        # The client may have given up first (a `timeout` outlasting its read timeout):
        # its socket is closed then, and there is nothing left to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]


async def _read_body(receive: Receive) -> bytearray:
    """The whole request body, over as many ASGI `http.request` messages as it takes."""
    body = bytearray()
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    extra = extra or []
    headers = [
        *([] if any(k == b"content-type" for k, _ in extra) else [CONTENT_JSON]),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
