"""The local dashboard: a read-only page beside the GraphQL endpoint, and its status route.

`GET /` (and its assets) is static and carries no data, so it needs no key; the page
asks for the API key and sends it as the `x-api-key` header from JavaScript, exactly like
any other client, and reads the buckets through `/graphql` with the Plexus dashboard's
own query. The one extra route, `GET /local/status`, is read-only, requires the same
header, and tells what the GraphQL API cannot: the accounts with buckets (and the time
their buckets span, for "since first record"), the recordTypes to draw, whether this server
delivers stream records at all (`serve --no-mapping` does not, so the page must not call
its buckets current), and the event source mapping's activity as the database records it.
The key is never accepted from the URL, and nothing here logs a request.
"""

from __future__ import annotations

__all__ = ["DashboardRoutes", "Delivery", "local_status"]

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import orjson

from metrics_agg.local.server.store import Store
from metrics_agg.models import SCOPE_OF, SOURCE_MODELS

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# path -> (file in the `page` folder, content type)
_ASSETS = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/chart.js": ("chart.js", b"text/javascript; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
# The page's own files only: no inline script, no other origin, no framing.
_PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_UNAUTHORIZED = orjson.dumps(
    {"errors": [{"errorType": "UnauthorizedException", "message": "Send the x-api-key header."}]}
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What this server runs, as `/local/status` reports it (`serve --no-mapping` turns the
    stream mapping off; another process on the same database may still deliver)."""

    stream_mapping: bool
    backfill_queue: bool


def _record_types() -> list[dict[str, Any]]:
    """Every recordType; the scoped ones say their scope, so the page draws them for one
    scorecard or score at a time (many series per account)."""
    out: list[dict[str, Any]] = []
    for spec in SOURCE_MODELS.values():
        for rt in spec.record_types:
            scope = SCOPE_OF.get(rt)
            kind = None
            if scope is not None and scope.by_score:
                kind = "score"
            elif scope is not None and scope.by_scorecard:
                kind = "scorecard"
            out.append({"recordType": rt, "model": spec.name, "scope": kind})
    return out


def local_status(store: Store, delivery: Delivery) -> dict[str, Any]:
    """What `/local/status` returns: accounts, recordTypes, delivery and the mapping's activity."""
    activity = store.activity(list(SOURCE_MODELS))
    extents = store.bucket_extents()  # one pass over the buckets gives the accounts too
    return {
        "now": time.time(),
        "accounts": sorted(extents),
        "extent": {a: {"first": f, "last": e} for a, (f, e) in extents.items()},
        "recordTypes": _record_types(),
        "streamMapping": delivery.stream_mapping,
        "backfillQueue": delivery.backfill_queue,
        "tables": [
            {"model": model, **asdict(a)} for model, a in zip(SOURCE_MODELS, activity, strict=True)
        ],
    }


class DashboardRoutes:
    """The GET routes of the page; `LocalAppSync` hands them every non-GraphQL request."""

    def __init__(
        self, store: Store, api_key: bytes, delivery: Callable[[], Delivery] | None = None
    ) -> None:
        self.store = store
        self.api_key = api_key
        # Asked on every request: the stack starts its mappings after the server.
        self.delivery = delivery or (lambda: Delivery(stream_mapping=False, backfill_queue=False))
        self._files: dict[str, bytes] = {}

    def _asset(self, name: str) -> bytes:
        body = self._files.get(name)
        if body is None:
            body = resources.files(__package__).joinpath("page", name).read_bytes()
            self._files[name] = body
        return body

    async def __call__(self, path: str, method: str, headers: dict[str, bytes], send: Send) -> bool:
        """Answer `path` if it is one of ours; False leaves the request to the caller."""
        if path == "/favicon.ico":  # browsers ask; an empty answer keeps the console clean
            await _respond(send, 204, b"", b"image/x-icon")
            return True
        if path != "/local/status" and path not in _ASSETS:
            return False
        if method != "GET":
            await _respond(send, 405, b'{"errors":[{"message":"Use GET"}]}', b"application/json")
            return True
        if path == "/local/status":
            if not hmac.compare_digest(headers.get("x-api-key", b""), self.api_key):
                await _respond(send, 401, _UNAUTHORIZED, b"application/json")
                return True
            body = orjson.dumps(local_status(self.store, self.delivery()))
            await _respond(send, 200, body, b"application/json; charset=UTF-8")
            return True
        name, content_type = _ASSETS[path]
        await _respond(send, 200, self._asset(name), content_type, _PAGE_HEADERS)
        return True


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
