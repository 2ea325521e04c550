"""The package's errors as one sentence for a person at a terminal.

The transport's own messages are written for the function's log (they name the GraphQL
operation and give deployment advice); a CLI user is told what failed, where, and what
to do, in terms of the command's own flags and environment.
"""

from __future__ import annotations

__all__ = ["describe_error", "describe_transport_error"]

from metrics_agg.errors import (
    DeadlineExceeded,
    MetricsAggError,
    QueueError,
    TransportError,
)

_SERVE_HINT = "is it up, or run `metrics-agg serve` for a local one?"


def _reason(exc: TransportError) -> str:
    """The last attempt's own words (connection refused, HTTP 503, ...), without the
    operation name the transport adds."""
    cause = exc.__cause__
    reason = getattr(cause, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    return f"HTTP {exc.status}" if exc.status is not None else str(exc)


def describe_transport_error(
    exc: TransportError, endpoint: str | None, *, api_key: bool = True
) -> str:
    """One sentence for an API call that failed, naming no internal operation."""
    where = endpoint or "the API"
    status = exc.status
    if isinstance(exc, QueueError):
        return f"the backfill queue failed: {exc}"
    if isinstance(exc, DeadlineExceeded):
        return f"{where} did not answer in time; try again, and -v shows each attempt"
    if status is None:
        return f"cannot reach {where} ({_reason(exc)}): {_SERVE_HINT}"
    if status in (401, 403):
        how = (
            "set a current key in PLEXUS_API_KEY or pass --api-key"
            if api_key
            else ("check the AWS credentials or set PLEXUS_API_KEY")
        )
        return f"{where} rejected the credentials with HTTP {status}: {how}"
    if status in (404, 405) or (200 <= status < 300 and not exc.errors):
        return (
            f"no GraphQL API at {where} (HTTP {status}): use the API's /graphql URL, "
            "e.g. http://127.0.0.1:8765/graphql for `metrics-agg serve`"
        )
    if 200 <= status < 300 or status == 400:
        first = exc.errors[0] if exc.errors else None
        said = f"{first.error_type or 'error'}: {first.message[:160]}" if first else _reason(exc)
        return f"{where} refused the request with {said}"
    tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
    return f"{where} kept failing{tries} with HTTP {status}; try again later, -v shows each attempt"


def describe_error(exc: MetricsAggError, endpoint: str | None = None) -> str:
    """One sentence for any of the package's errors."""
    if isinstance(exc, TransportError):
        return describe_transport_error(exc, endpoint)
    return str(exc)
