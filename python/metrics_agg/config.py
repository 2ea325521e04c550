"""Runtime configuration, read once from the environment: the one place that reads it.

Every knob of the runtime is a field of `Config` (endpoint and auth, tuning, the zone
margin, the schedule's accounts, the counter backend, where the EMF line goes);
`Config.from_env` is the only reader of the variables (`counter_choice` serves the
counter library's ``backend="auto"``, which has no Config).
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_IDS_ENV",
    "ACTIVITY_ENDPOINT_ENV",
    "ACTIVITY_TABLE_ENV",
    "BACKFILL_QUEUE_ENV",
    "COUNTER_ENV",
    "EMF_ENV",
    "ERRORS_ENV",
    "INVOCATION_PATH_ENV",
    "MAX_RECHECK_DELAY_SECONDS",
    "MAX_ZONE_MARGIN_MINUTES",
    "PROGRESS_QUEUE_ENV",
    "RECHECK_DELAY_ENV",
    "RECHECK_QUEUE_ENV",
    "STACK_ENV",
    "ZONE_MARGIN_ENV",
    "Config",
    "CounterChoice",
    "InvocationPath",
    "counter_choice",
    "parse_errors",
]

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from metrics_agg.errors import ConfigError
from metrics_agg.models import ERROR_FIELDS, SOURCE_MODELS, ErrorRule, ErrorRules

MAX_ZONE_MARGIN_MINUTES = 23 * 60 + 59  # the grammar's largest offset, ±23:59 (docs/design.md §3)
ZONE_MARGIN_ENV = "METRICS_AGG_ZONE_MARGIN_MINUTES"
ACCOUNT_IDS_ENV = "METRICS_AGG_ACCOUNT_IDS"
COUNTER_ENV = "METRICS_AGG_COUNTER"
EMF_ENV = "METRICS_AGG_EMF"
STACK_ENV = "METRICS_AGG_STACK"  # the template sets it to the stack name
CounterChoice: TypeAlias = Literal["auto", "rust", "python"]
ERRORS_ENV = "METRICS_AGG_ERRORS"
PROGRESS_QUEUE_ENV = "METRICS_AGG_BACKFILL_PROGRESS_URL"
BACKFILL_QUEUE_ENV = "METRICS_AGG_BACKFILL_QUEUE_URL"
RECHECK_QUEUE_ENV = "METRICS_AGG_RECHECK_QUEUE_URL"
RECHECK_DELAY_ENV = "METRICS_AGG_RECHECK_DELAY_SECONDS"
# The stack's activity table (`aggregator.activity`): which (model, account, hour) the stream
# path touched, read by the 5-minute reconcile. The endpoint is for `metrics-agg serve` only.
ACTIVITY_TABLE_ENV = "METRICS_AGG_ACTIVITY_TABLE"
ACTIVITY_ENDPOINT_ENV = "METRICS_AGG_ACTIVITY_ENDPOINT"
# Benchmarks only: "per-unit" runs the earlier stream invocation (each (model, account) unit
# its own requests, every MODIFY invalidating its minutes, the old self-check), so the cost
# scripts can compare both in one run. Never set in a deployment.
INVOCATION_PATH_ENV = "METRICS_AGG_INVOCATION_PATH"
InvocationPath: TypeAlias = Literal["shared", "per-unit"]
MAX_RECHECK_DELAY_SECONDS = 900  # SQS's largest DelaySeconds
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
    max_hours_back: int = 168  # docs/design.md §4.2: older hours are reported, not recounted
    read_parallelism: int = 8
    # Units (model, account) of one invocation run side by side, up to this many (issue 9).
    unit_parallelism: int = 4
    write_parallelism: int = 4
    mutations_per_request: int = 25
    page_limit: int = 1000
    request_timeout: float = 10.0
    max_attempts: int = 5
    # docs/design.md §4.3: list reads widen their sort-key ranges by this many minutes on each
    # side, so records whose timestamps carry a zone offset up to it (the index sorts
    # the local-time string) are still read with their UTC hour. 0: timestamps are UTC
    # (`Z`), as Amplify clients write them. Offsets beyond it are counted and warned about.
    zone_margin_minutes: int = 0
    # The accounts the 5-minute schedule finalizes; empty: the ones active in the last 2 h
    # (discovered through the API). An event's own ``accountIds`` win over both.
    account_ids: tuple[str, ...] = ()
    counter_backend: CounterChoice = "auto"  # "auto": the compiled counter when installed
    # Print the CloudWatch EMF line to stdout (in Lambda, or METRICS_AGG_EMF=1); else it is
    # logged at DEBUG.
    emf_stdout: bool = False
    # The EMF `Stack` dimension: METRICS_AGG_STACK, else the function name, else "local".
    emf_stack: str = "local"
    # errorCount rules per model (docs/design.md §2); a model not named keeps `ModelSpec.errors`,
    # () turns its errorCount off. From METRICS_AGG_ERRORS (`parse_errors`).
    errors: Mapping[str, ErrorRules] = field(default_factory=dict)
    # Where backfill units report their end (`backfill.progress`); None: not reported.
    progress_queue_url: str | None = None
    # Where `metrics-agg backfill` sends its units (the CLI only; the stack's output).
    backfill_queue_url: str | None = None
    # docs/incremental.md "Rechecks": the SQS queue that takes delayed direct recounts of
    # the hours a stream invocation touched outside the reconcile window; None: those hours
    # are logged and counted (`RecheckHoursNotQueued`), not rechecked.
    recheck_queue_url: str | None = None
    # How long a recheck waits (SQS DelaySeconds): well above the index lag it must outlast.
    recheck_delay_seconds: int = 120
    # How a stream invocation sends its requests; "per-unit" is the earlier path, kept for
    # the cost comparison in scripts/cost_model.py (INVOCATION_PATH_ENV).
    invocation_path: InvocationPath = "shared"
    # The DynamoDB table stream units record their (model, account, hour) in, which the
    # scheduled reconcile reads instead of listing every account (docs/operations.md, "How
    # the scheduled pass finds active pairs"); None: the reconcile falls back to the
    # listAccounts discovery. ``activity_endpoint``: a DynamoDB endpoint other than AWS's
    # (the local server); None: the region's.
    activity_table: str | None = None
    activity_endpoint: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.recheck_delay_seconds <= MAX_RECHECK_DELAY_SECONDS:
            raise ConfigError(
                f"recheck_delay_seconds ({RECHECK_DELAY_ENV}) must be "
                f"0..{MAX_RECHECK_DELAY_SECONDS} (SQS's DelaySeconds), "
                f"got {self.recheck_delay_seconds!r}"
            )
        if not 0 <= self.zone_margin_minutes <= MAX_ZONE_MARGIN_MINUTES:
            raise ConfigError(
                f"zone_margin_minutes ({ZONE_MARGIN_ENV}) must be 0..{MAX_ZONE_MARGIN_MINUTES} "
                f"(a zone offset is at most ±23:59), got {self.zone_margin_minutes!r}"
            )

    def error_rules(self) -> dict[str, ErrorRules]:
        """Every model's error rules: the defaults with this config's overrides applied."""
        return {name: self.errors.get(name, spec.errors) for name, spec in SOURCE_MODELS.items()}

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
            ConfigError: no endpoint is set, a numeric knob is not a number,
                METRICS_AGG_ZONE_MARGIN_MINUTES is outside 0..1439 or
                METRICS_AGG_RECHECK_DELAY_SECONDS outside 0..900.
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
            "progress_queue_url": env.get(PROGRESS_QUEUE_ENV) or None,
            "backfill_queue_url": env.get(BACKFILL_QUEUE_ENV) or None,
        }
        for name, var in (
            ("max_hours_back", "METRICS_AGG_MAX_HOURS_BACK"),
            ("read_parallelism", "METRICS_AGG_READ_PARALLELISM"),
            ("unit_parallelism", "METRICS_AGG_UNIT_PARALLELISM"),
            ("write_parallelism", "METRICS_AGG_WRITE_PARALLELISM"),
            ("mutations_per_request", "METRICS_AGG_MUTATIONS_PER_REQUEST"),
            ("zone_margin_minutes", ZONE_MARGIN_ENV),
            ("recheck_delay_seconds", RECHECK_DELAY_ENV),
        ):
            raw = env.get(var)
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{var} must be a whole number, got {raw!r}") from None
        values["account_ids"] = tuple(
            a.strip() for a in env.get(ACCOUNT_IDS_ENV, "").split(",") if a.strip()
        )
        values["counter_backend"] = counter_choice(env)
        function = env.get("AWS_LAMBDA_FUNCTION_NAME")
        values["emf_stdout"] = bool(function) or env.get(EMF_ENV) == "1"
        values["emf_stack"] = env.get(STACK_ENV) or function or "local"
        values["recheck_queue_url"] = env.get(RECHECK_QUEUE_ENV) or None
        values["activity_table"] = env.get(ACTIVITY_TABLE_ENV) or None
        values["activity_endpoint"] = env.get(ACTIVITY_ENDPOINT_ENV) or None
        values["invocation_path"] = _invocation_path(env.get(INVOCATION_PATH_ENV, ""))
        raw_errors = env.get(ERRORS_ENV)
        if raw_errors:
            values["errors"] = parse_errors(raw_errors)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _invocation_path(raw: str) -> InvocationPath:
    choice = raw.strip().lower() or "shared"
    paths: dict[str, InvocationPath] = {"shared": "shared", "per-unit": "per-unit"}
    if choice in paths:
        return paths[choice]
    raise ConfigError(f"{INVOCATION_PATH_ENV} must be 'shared', 'per-unit' or unset, got {raw!r}")


def counter_choice(environ: Mapping[str, str] | None = None) -> CounterChoice:
    """``METRICS_AGG_COUNTER``: "rust", "python", or unset ("auto").

    Raises:
        ConfigError: any other value.
    """
    env = os.environ if environ is None else environ
    choice = env.get(COUNTER_ENV, "").strip().lower() or "auto"
    choices: dict[str, CounterChoice] = {"auto": "auto", "rust": "rust", "python": "python"}
    if choice in choices:
        return choices[choice]
    raise ConfigError(f"{COUNTER_ENV} must be 'rust', 'python' or unset, got {choice!r}")


def parse_errors(text: str) -> dict[str, ErrorRules]:
    """METRICS_AGG_ERRORS: a JSON object of model -> list of rules (or null / [] for none).

        {"Task": [{"field": "status", "values": ["FAILED", "CANCELLED"]}],
         "ScoreResult": [{"field": "code", "atLeast": 500}],
         "Procedure": []}

    Raises:
        ConfigError: not JSON, an unknown model, or a rule that is not
            {"field": <a field the model's reads select>, "values": [str, ...] and/or
            "atLeast": int}.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{ERRORS_ENV} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{ERRORS_ENV} must be a JSON object of model -> list of rules")
    out: dict[str, ErrorRules] = {}
    for model, rules in data.items():
        if model not in SOURCE_MODELS:
            raise ConfigError(
                f"{ERRORS_ENV}: unknown model {model!r}; models: {', '.join(SOURCE_MODELS)}"
            )
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            raise ConfigError(f"{ERRORS_ENV}: {model} must map to a list of rules or null")
        out[model] = tuple(_rule(model, rule) for rule in rules)
    return out


def _rule(model: str, rule: object) -> ErrorRule:
    allowed = ERROR_FIELDS[model]
    where = f"{ERRORS_ENV}: a {model} rule"
    if not isinstance(rule, dict) or set(rule) - {"field", "values", "atLeast"}:
        raise ConfigError(f'{where} must be {{"field", "values" and/or "atLeast"}}, got {rule!r}')
    name, values, at_least = rule.get("field"), rule.get("values", []), rule.get("atLeast")
    if name not in allowed:
        raise ConfigError(
            f"{where} tests {name!r}, which the aggregator does not read; "
            f"{model} rules can test: {', '.join(allowed)}"
        )
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f'{where}: "values" must be a list of strings')
    if at_least is not None and (
        not isinstance(at_least, int) or isinstance(at_least, bool) or abs(at_least) >= 2**63
    ):
        raise ConfigError(f'{where}: "atLeast" must be a whole number')
    if not values and at_least is None:
        raise ConfigError(f'{where} needs "values" or "atLeast"')
    return ErrorRule(str(name), tuple(values), at_least)
