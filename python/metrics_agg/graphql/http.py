"""The HTTP seam under `GraphQLClient`: one POST in, status/headers/body out.

`Urllib3Transport` is the real one (a pooled keep-alive ``urllib3.PoolManager``);
`MockTransport` answers from a function, so retries, error mapping and auth are tested
without sockets. A transport only moves bytes: it never retries and never interprets a
status; it raises `ConnectionFailed` when no response came back.
"""

from __future__ import annotations

__all__ = ["ConnectionFailed", "HttpRequest", "HttpResponse", "MockTransport", "Transport"]

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import urllib3
import urllib3.exceptions


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


class ConnectionFailed(Exception):
    """No response: refused, reset, timed out, truncated, or an invalid URL."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Transport(Protocol):
    def send(self, request: HttpRequest) -> HttpResponse:
        """One POST; raises `ConnectionFailed` when no response came back."""
        ...

    def close(self) -> None: ...


class Urllib3Transport:
    """Pooled keep-alive HTTP(S) through urllib3; thread-safe."""

    def __init__(self, pool_size: int) -> None:
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=pool_size, block=False)

    def send(self, request: HttpRequest) -> HttpResponse:
        try:
            resp = self._pool.request(
                "POST",
                request.url,
                body=request.body,
                headers=dict(request.headers),
                timeout=urllib3.Timeout(connect=request.timeout, read=request.timeout),
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.LocationValueError as exc:
            raise ConnectionFailed(
                f"invalid endpoint URL ({type(exc).__name__})", retryable=False
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Timeouts, refused/reset connections, truncated responses: transient.
            raise ConnectionFailed(f"connection error ({type(exc).__name__})") from exc
        return HttpResponse(resp.status, resp.data, resp.headers)

    def close(self) -> None:
        self._pool.clear()


class MockTransport:
    """Answers every request with ``handler(request)``; records the requests.

    The handler returns an `HttpResponse` or raises `ConnectionFailed`.
    """

    def __init__(self, handler: Callable[[HttpRequest], HttpResponse]) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            self.requests.append(request)
        return self._handler(request)

    def close(self) -> None:
        pass
