"""The one HTTP path to the GraphQL API: pooling, auth, retries, error mapping.

Everything that talks to AppSync (or the local server) goes through
``GraphQLClient.execute``. This module is the only place that retries and the only place
that turns HTTP, connection and GraphQL failures into ``ReadError`` / ``WriteError`` /
``DeadlineExceeded`` (errors are reported, mapped once, chained ``from`` the
cause). No log line or exception text carries the API key, AWS credentials, signed
headers or request payloads.
"""

from __future__ import annotations

__all__ = ["GraphQLApi", "GraphQLClient", "GraphQLResponse", "is_throttling_error_type"]

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol

import orjson

from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.errors import (
    DeadlineExceeded,
    GraphQLErrorInfo,
    ReadError,
    TransportError,
    WriteError,
)
from metrics_agg.graphql.auth import ApiKeyAuth, Auth, auth_for
from metrics_agg.graphql.http import (
    ConnectionFailed,
    HttpRequest,
    Transport,
    Urllib3Transport,
)
from metrics_agg.graphql.retry import RetryPolicy

logger = logging.getLogger("metrics_agg.graphql")

# "aliased-read": a read whose aliases belong to different work (`shared_reads`): like a
# write, errors that belong to aliases are returned, not raised; a failure is a ReadError.
Kind = Literal["read", "write", "aliased-read"]

_MAX_MESSAGE = 300  # server messages are truncated before they reach a log or exception

_OPERATION_NAME = re.compile(r"\b(query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
_THROTTLING = re.compile(
    r"^(Throttling.*|TooManyRequests.*|.*ThrottlingException|.*LimitExceeded.*"
    r"|ProvisionedThroughputExceeded.*)$"
)


def is_throttling_error_type(error_type: str | None) -> bool:
    """True for GraphQL ``errorType``s that mean "slow down and retry" (docs/design.md §4.6).

    Throttling*, TooManyRequests*, *ThrottlingException, *LimitExceeded*, and DynamoDB's
    ProvisionedThroughputExceededException (AppSync passes it through as
    ``DynamoDB:ProvisionedThroughputExceededException``).
    """
    if not error_type:
        return False
    bare = error_type.rsplit(":", 1)[-1]  # "DynamoDB:ThrottlingException" -> base name
    return bool(_THROTTLING.match(bare)) or bool(_THROTTLING.match(error_type))


@dataclass(frozen=True, slots=True)
class GraphQLResponse:
    """A decoded GraphQL response: ``data`` as plain dicts (orjson), errors reduced."""

    data: dict[str, Any] | None
    errors: tuple[GraphQLErrorInfo, ...] = ()


class _Fault(Exception):
    """One failed attempt, before mapping: what happened and whether to retry."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        status: int | None = None,
        errors: tuple[GraphQLErrorInfo, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.errors = errors
        self.retry_after = retry_after


class GraphQLApi(Protocol):
    """What the stages and the typed operations need from a GraphQL client."""

    @property
    def config(self) -> Config: ...

    @property
    def request_count(self) -> int: ...

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        kind: Kind,
        deadline: Deadline | None = None,
    ) -> GraphQLResponse: ...

    def pause_before_retry(self, attempt: int, deadline: Deadline | None = None) -> bool: ...

    def close(self) -> None: ...


class GraphQLClient:
    """Authenticated GraphQL-over-HTTP client with one retry policy; thread-safe.

    The HTTP goes through a `Transport` (default: pooled keep-alive urllib3, shared by
    all threads; tests pass a `MockTransport`). ``request_count`` counts HTTP requests
    sent, retries included.
    """

    def __init__(
        self,
        config: Config,
        *,
        auth: Auth | None = None,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._auth = auth if auth is not None else auth_for(config)
        self.retry = retry if retry is not None else RetryPolicy.from_config(config)
        self._sleep = sleep
        self._jitter = jitter
        pool_size = max(config.read_parallelism, config.write_parallelism, 1) + 2
        self._transport = transport if transport is not None else Urllib3Transport(pool_size)
        self._lock = threading.Lock()
        self._request_count = 0

    @property
    def config(self) -> Config:
        return self._config

    def __repr__(self) -> str:
        return f"GraphQLClient(endpoint={self.config.endpoint!r}, auth={self._auth!r})"

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> GraphQLClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        kind: Kind,
        deadline: Deadline | None = None,
    ) -> GraphQLResponse:
        """Send one GraphQL request, retrying transient failures.

        ``kind="read"``: any GraphQL error fails the call. ``kind="write"`` and
        ``"aliased-read"``: errors that belong to aliases (``path[0]``) are returned in
        ``.errors``, not raised.

        Raises:
            ReadError: a read (or an aliased read as a whole) failed after retries.
            WriteError: a write request failed as a whole after retries.
            DeadlineExceeded: the deadline left no time for the next attempt or backoff.
        """
        deadline = deadline or Deadline(None)
        op = _operation_name(document)
        body = orjson.dumps({"query": document, "variables": dict(variables or {})})
        error_cls = WriteError if kind == "write" else ReadError
        max_attempts = self.retry.max_attempts
        last: _Fault | None = None
        for attempt in range(1, max_attempts + 1):
            remaining = deadline.remaining()
            if remaining <= 0.0:
                raise _deadline_error(op, attempt - 1, last) from last
            try:
                return self._attempt(body, kind, min(self.config.request_timeout, remaining))
            except _Fault as fault:
                last = fault
            if not last.retryable or attempt == max_attempts:
                break
            delay = self._backoff(attempt, last.retry_after)
            if delay >= deadline.remaining():
                raise _deadline_error(op, attempt, last) from last
            logger.warning(
                "GraphQL %s %s: %s; retry %d/%d in %.2fs",
                kind,
                op,
                last.reason,
                attempt,
                max_attempts - 1,
                delay,
            )
            self._sleep(delay)
        assert last is not None
        attempts = attempt
        verdict = f"after {attempts} attempts" if last.retryable else "(not retryable)"
        message = f"GraphQL {kind} {op} failed {verdict}: {last.reason}"
        logger.error("%s", message)
        raise error_cls(
            message, status=last.status, errors=last.errors, attempts=attempts
        ) from last

    def pause_before_retry(self, attempt: int, deadline: Deadline | None = None) -> bool:
        """Back off before retry number ``attempt`` of work the caller retries itself.

        Returns False (without sleeping) when attempts are used up or the deadline would
        pass during the backoff.
        """
        if not self.retry.may_retry(attempt):
            return False
        delay = self._backoff(attempt, None)
        if delay >= (deadline or Deadline(None)).remaining():
            return False
        self._sleep(delay)
        return True

    # -- one attempt ---------------------------------------------------------------------

    def _attempt(self, body: bytes, kind: Kind, timeout: float) -> GraphQLResponse:
        headers = self._auth.headers(
            "POST",
            self.config.endpoint,
            body,
            {"content-type": "application/json", "accept": "application/json"},
        )
        with self._lock:
            self._request_count += 1
        try:
            resp = self._transport.send(HttpRequest(self.config.endpoint, body, headers, timeout))
        except ConnectionFailed as exc:
            raise _Fault(exc.reason, retryable=exc.retryable) from exc
        return _interpret(
            resp.status, resp.headers, resp.body, kind, api_key=isinstance(self._auth, ApiKeyAuth)
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return self.retry.delay(attempt, float(self._jitter()), retry_after)


def _interpret(
    status: int, headers: Mapping[str, str], raw: bytes, kind: Kind, *, api_key: bool = False
) -> GraphQLResponse:
    """Classify one HTTP response: return the decoded response or raise a ``_Fault``."""
    payload: Any = None
    decode_error: Exception | None = None
    try:
        payload = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        decode_error = exc
    errors = _error_infos(payload.get("errors") if isinstance(payload, dict) else None)
    throttled = any(is_throttling_error_type(e.error_type) for e in errors)

    if status == 429 or status >= 500:
        retry_after = _retry_after(headers.get("retry-after"))
        raise _Fault(
            f"HTTP {status}{_describe(errors)}",
            retryable=True,
            status=status,
            errors=errors,
            retry_after=retry_after,
        )
    if status == 401 and api_key:
        raise _Fault(_rejected_api_key(errors), retryable=False, status=status, errors=errors)
    if not 200 <= status < 300:
        raise _Fault(
            f"HTTP {status}{_describe(errors)}",
            retryable=throttled,
            status=status,
            errors=errors,
            retry_after=_retry_after(headers.get("retry-after")),
        )
    if decode_error is not None or not isinstance(payload, dict):
        # A proxy/gateway fault, not an answer: retry like a 5xx.
        raise _Fault(
            "malformed JSON response body", retryable=True, status=status
        ) from decode_error
    data = payload.get("data")
    if data is not None and not isinstance(data, dict):
        raise _Fault("malformed response: `data` is not an object", retryable=True, status=status)
    if errors:
        if kind == "read":
            raise _Fault(
                f"GraphQL errors{_describe(errors)}",
                retryable=throttled,
                status=status,
                errors=errors,
            )
        only_throttled = all(is_throttling_error_type(e.error_type) for e in errors)
        nothing_done = data is None or all(v is None for v in data.values())
        if only_throttled and nothing_done:
            raise _Fault(
                f"GraphQL errors{_describe(errors)}", retryable=True, status=status, errors=errors
            )
        if data is None:
            raise _Fault(
                f"GraphQL errors{_describe(errors)}", retryable=False, status=status, errors=errors
            )
    return GraphQLResponse(data, errors)


def _rejected_api_key(errors: tuple[GraphQLErrorInfo, ...]) -> str:
    """Say what a 401 to an API-key request means (issue 14): AppSync keys expire (Amplify's
    after 7 days by default, 365 at most), and the usual answer to an expired or deleted key
    is a bare ``UnauthorizedException``, so the operator is told to check the key first."""
    expired = any("expired" in e.message.lower() for e in errors)
    verdict = (
        "the AppSync API key has expired"
        if expired
        else "the AppSync API key was rejected (expired, deleted, or not a key of this API)"
    )
    return (
        f"{verdict}: HTTP 401{_describe(errors)}. Use a current key (PLEXUS_API_KEY, or the "
        "function's secret, then make it start cold) or IAM auth (docs/deployment.md)"
    )


def _error_infos(raw: object) -> tuple[GraphQLErrorInfo, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for err in raw:
        if not isinstance(err, dict):
            continue
        message = str(err.get("message") or "")[:_MAX_MESSAGE]
        error_type = err.get("errorType")
        if error_type is None and isinstance(err.get("extensions"), dict):
            error_type = err["extensions"].get("errorType") or err["extensions"].get("code")
        path = err.get("path")
        out.append(
            GraphQLErrorInfo(
                message,
                str(error_type) if error_type is not None else None,
                tuple(p for p in path if isinstance(p, str | int))
                if isinstance(path, list)
                else (),
            )
        )
    return tuple(out)


def _describe(errors: tuple[GraphQLErrorInfo, ...]) -> str:
    if not errors:
        return ""
    types = sorted({e.error_type or "error" for e in errors})
    first = errors[0].message[:120]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f": {', '.join(types)}: {first}{more}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _operation_name(document: str) -> str:
    m = _OPERATION_NAME.search(document)
    return m.group(2) if m else "anonymous operation"


def _deadline_error(op: str, attempts: int, last: _Fault | None) -> TransportError:
    after = f" after {attempts} attempt(s), last: {last.reason}" if last else ""
    message = f"deadline reached before GraphQL {op} could be sent{after}"
    logger.error("%s", message)
    return DeadlineExceeded(
        message,
        status=last.status if last else None,
        errors=last.errors if last else (),
        attempts=attempts,
    )
