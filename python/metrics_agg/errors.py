"""Exceptions of metrics-agg.

    MetricsAggError                 base: callers catch this one
    ├── ConfigError                 missing/invalid configuration (endpoint, key, region)
    ├── BackendUnavailableError     backend="rust" asked for but the extension is absent
    └── TransportError              an I/O call failed after its retries
        ├── ReadError               a query (list page, stored buckets) failed
        ├── WriteError              a mutation request failed as a whole
        ├── DeadlineExceeded        the caller's deadline left no time to (re)try
        ├── QueueError              an SQS call (backfill queue, progress) failed
        └── ActivityError           the activity table (which pairs the reconcile
                                    reads) could not be written or queried

Wrong use of the counting API (unaligned window, bad sizes) raises ``ValueError``;
bad *data* is never raised: it is counted (see ``CountResult``) and logged.
"""

from __future__ import annotations

__all__ = [
    "ActivityError",
    "BackendUnavailableError",
    "ConfigError",
    "DeadlineExceeded",
    "GraphQLErrorInfo",
    "MetricsAggError",
    "QueueError",
    "ReadError",
    "TransportError",
    "WriteError",
]

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GraphQLErrorInfo:
    """One entry of a GraphQL ``errors`` list, reduced to what is safe to log."""

    message: str
    error_type: str | None = None
    path: tuple[str | int, ...] = ()

    @property
    def is_conditional_check_failed(self) -> bool:
        return self.error_type == "DynamoDB:ConditionalCheckFailedException"


class MetricsAggError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MetricsAggError, ValueError):
    """Configuration is missing or invalid; the message says which variable to set."""


class BackendUnavailableError(MetricsAggError, RuntimeError):
    """The compiled counter was requested explicitly but cannot be imported."""


class TransportError(MetricsAggError):
    """An HTTP/GraphQL call failed after retries. Never carries secrets or payloads."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: tuple[GraphQLErrorInfo, ...] = (),
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.attempts = attempts

    @property
    def error_types(self) -> tuple[str, ...]:
        return tuple(e.error_type for e in self.errors if e.error_type)


class ReadError(TransportError):
    """A query failed: the unit's snapshot is incomplete and must not be counted."""


class WriteError(TransportError):
    """A mutation request failed as a whole (per-alias failures are results, not this)."""


class DeadlineExceeded(TransportError):
    """No time was left before the caller's deadline to start or retry a call."""


class QueueError(TransportError):
    """An SQS call (backfill units, their progress reports) failed after botocore's retries."""


class ActivityError(TransportError):
    """A call to the activity table (`aggregator.activity`) failed after botocore's retries."""
