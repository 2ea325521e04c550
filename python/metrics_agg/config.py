"""Runtime configuration, read once from the environment (DESIGN §2 Auth)."""

from __future__ import annotations

__all__ = ["MAX_ZONE_MARGIN_MINUTES", "ZONE_MARGIN_ENV", "Config"]

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from metrics_agg.errors import ConfigError

MAX_ZONE_MARGIN_MINUTES = 23 * 60 + 59  # the grammar's largest offset, ±23:59 (DESIGN §3)
ZONE_MARGIN_ENV = "METRICS_AGG_ZONE_MARGIN_MINUTES"
_REGION_IN_HOST = re.compile(r"\.appsync-api\.([a-z0-9-]+)\.amazonaws\.com", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Knobs of one aggregator process. Keyword-only; `from_env` is the usual way in.

    The API key is kept out of `repr` so a logged config never leaks it.
    """

    endpoint: str
    api_key: str | None = field(default=None, repr=False)
    region: str | None = None  # IAM only; defaults to the region in the endpoint host
    # IAM only, last resort: AWS_REGION (set by Lambda) or AWS_DEFAULT_REGION, for an
    # endpoint whose host names no region (a custom domain).
    default_region: str | None = None
    max_hours_back: int = 168  # DESIGN §4.2: older hours are reported, not recounted
    read_parallelism: int = 8
    write_parallelism: int = 4
    mutations_per_request: int = 25
    page_limit: int = 1000
    request_timeout: float = 10.0
    max_attempts: int = 5
    # DESIGN §4.3: list reads widen their sort-key ranges by this many minutes on each
    # side, so records whose timestamps carry a zone offset up to it (the index sorts
    # the local-time string) are still read with their UTC hour. 0: timestamps are UTC
    # (`Z`), as Amplify clients write them. Offsets beyond it are counted and warned about.
    zone_margin_minutes: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.zone_margin_minutes <= MAX_ZONE_MARGIN_MINUTES:
            raise ConfigError(
                f"zone_margin_minutes ({ZONE_MARGIN_ENV}) must be 0..{MAX_ZONE_MARGIN_MINUTES} "
                f"(a zone offset is at most ±23:59), got {self.zone_margin_minutes!r}"
            )

    @property
    def auth_mode(self) -> str:
        return "api_key" if self.api_key else "iam"

    @property
    def signing_region(self) -> str:
        """Region for SigV4.

        ``region`` (METRICS_AGG_REGION), else the AppSync host's region, else
        ``default_region`` (AWS_REGION, AWS_DEFAULT_REGION): the host names the API's own
        region, which a workstation's default region may not be.

        Raises:
            ConfigError: IAM auth with no region from any of those.
        """
        if self.region:
            return self.region
        m = _REGION_IN_HOST.search(self.endpoint)
        if m is not None:
            return m.group(1)
        if self.default_region:
            return self.default_region
        raise ConfigError(
            "IAM auth needs the API's region: the endpoint host names none (a custom domain?) "
            "and neither METRICS_AGG_REGION nor AWS_REGION is set; set METRICS_AGG_REGION "
            "(or AWS_REGION), or set an API key"
        )

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Read PLEXUS_API_URL|GRAPHQL_ENDPOINT and PLEXUS_API_KEY|GRAPHQL_API_KEY.

        Raises:
            ConfigError: no endpoint is set, a numeric knob is not a number, or
                METRICS_AGG_ZONE_MARGIN_MINUTES is outside 0..1439.
        """
        env = os.environ if environ is None else environ
        endpoint = env.get("PLEXUS_API_URL") or env.get("GRAPHQL_ENDPOINT")
        if not endpoint:
            raise ConfigError(
                "no GraphQL endpoint: set PLEXUS_API_URL (or GRAPHQL_ENDPOINT) to the AppSync "
                "URL, or run `metrics-agg serve` and point it at http://127.0.0.1:8765/graphql"
            )
        values: dict[str, object] = {
            "endpoint": endpoint,
            "api_key": env.get("PLEXUS_API_KEY") or env.get("GRAPHQL_API_KEY") or None,
            "region": env.get("METRICS_AGG_REGION") or None,
            "default_region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        }
        for name, var in (
            ("max_hours_back", "METRICS_AGG_MAX_HOURS_BACK"),
            ("read_parallelism", "METRICS_AGG_READ_PARALLELISM"),
            ("write_parallelism", "METRICS_AGG_WRITE_PARALLELISM"),
            ("mutations_per_request", "METRICS_AGG_MUTATIONS_PER_REQUEST"),
            ("zone_margin_minutes", ZONE_MARGIN_ENV),
        ):
            raw = env.get(var)
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{var} must be a whole number, got {raw!r}") from None
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
