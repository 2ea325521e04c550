"""The one retry policy of every GraphQL call (docs/design.md §4.6): frozen, built from
`Config.max_attempts`, used by `GraphQLClient.execute` and by the writer's own conflict
rounds (`GraphQLClient.pause_before_retry`)."""

from __future__ import annotations

__all__ = ["RetryPolicy"]

from dataclasses import dataclass

from metrics_agg.config import Config


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and full-jitter exponential backoff.

    The pause before retry ``n`` (1-based) is ``jitter * min(cap, base * 2**(n-1))`` with
    ``jitter`` uniform in [0, 1), and never shorter than a server's ``Retry-After``.
    """

    max_attempts: int = 5
    backoff_base: float = 0.1
    backoff_cap: float = 5.0

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        return cls(max_attempts=max(1, config.max_attempts))

    def delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        delay = jitter * ceiling
        return delay if retry_after is None else max(delay, retry_after)

    def may_retry(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` (1-based, just failed) may be followed by another."""
        return attempt < self.max_attempts
