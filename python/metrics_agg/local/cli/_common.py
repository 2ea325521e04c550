"""What the API commands share: exit codes, connection arguments and their help text,
argument types, the error guard and the help formatter."""

from __future__ import annotations

__all__ = [
    "ENV_HELP",
    "EXIT_DIFFERENCES",
    "EXIT_OK",
    "EXIT_USAGE",
    "INSTANT_FORMS",
    "add_account_arg",
    "add_connection_args",
    "add_since_arg",
    "ceil_to",
    "config_from_args",
    "connect",
    "endpoint_of",
    "floor_to",
    "guard",
    "help_formatter",
    "instant_arg",
    "parse_since",
    "parse_when",
    "widen",
]

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from metrics_agg.config import Config
from metrics_agg.errors import ConfigError, MetricsAggError, ReadError
from metrics_agg.local.cli._messages import describe_error, describe_transport_error
from metrics_agg.timestamps import (
    epoch_minute,
    format_bucket_time,
    from_epoch_minute,
    parse_instant,
    utc_now,
)

# Exit codes, documented in every command's epilog.
EXIT_OK = 0
EXIT_DIFFERENCES = 1  # verify found mismatches; invoke/recount reported failures
EXIT_USAGE = 2  # could not run: bad arguments, configuration, input, or an unreachable API

ENV_HELP = """\
environment:
  PLEXUS_API_URL | GRAPHQL_ENDPOINT   GraphQL endpoint (AppSync URL, or the local server's
                                      http://127.0.0.1:8765/graphql from `metrics-agg serve`)
  PLEXUS_API_KEY | GRAPHQL_API_KEY    API key; without one, IAM (SigV4) with the default AWS
                                      credential chain. Prefer the environment over --api-key:
                                      a key typed on the command line lands in shell history.
  METRICS_AGG_REGION                  SigV4 region (default: the endpoint host's, else
                                      AWS_REGION / AWS_DEFAULT_REGION)
  METRICS_AGG_READ_PARALLELISM, METRICS_AGG_WRITE_PARALLELISM,
  METRICS_AGG_MUTATIONS_PER_REQUEST, METRICS_AGG_MAX_HOURS_BACK   tuning knobs

exit status: 0 ok, 1 differences or failures reported, 2 could not run (bad arguments,
configuration or input, or the API could not be reached or rejected the credentials)."""

_SINCE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", re.ASCII)


def parse_since(text: str) -> timedelta:
    """``90m``, ``2h``, ``1h30m``, ``7d`` -> timedelta (an argparse ``type``).

    Raises:
        argparse.ArgumentTypeError: not of that form, or zero.
    """
    m = _SINCE.fullmatch(text.strip().lower())
    if not text.strip() or m is None or not any(m.groups()):
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90m, 2h, 1h30m or 7d, got {text!r}"
        )
    days, hours, minutes = (int(g or 0) for g in m.groups())
    delta = timedelta(days=days, hours=hours, minutes=minutes)
    if delta <= timedelta(0):
        raise argparse.ArgumentTypeError("the duration must be longer than zero")
    return delta


_RELATIVE = re.compile(r"-((?:\d+[dhm])+)", re.ASCII)
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
INSTANT_FORMS = "2024-05-01T12:00Z, a date (2024-05-01, midnight UTC), now, or -2h / -30d / -1h30m"


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An instant as a person types it: a timestamp of the accepted grammar, a date
    (midnight UTC), ``now``, or a time relative to now (``-2h``, ``-30d``, ``-1h30m``).

    Raises:
        ValueError: none of those forms; the message lists them.
    """
    word = text.strip()
    current = now or utc_now()
    if word.lower() == "now":
        return current
    relative = _RELATIVE.fullmatch(word.lower())
    if relative is not None:
        return current - parse_since(relative.group(1))
    if _DATE_ONLY.fullmatch(word):
        word += "T00:00Z"
    try:
        return parse_instant(word)
    except ValueError:
        raise ValueError(f"not a time: {text!r}; use {INSTANT_FORMS}") from None


def instant_arg(text: str) -> datetime:
    """`parse_when` as an argparse ``type``.

    Raises:
        argparse.ArgumentTypeError: not of an accepted form.
    """
    try:
        return parse_when(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def widen(start: datetime, end: datetime, minutes: int) -> tuple[datetime, datetime, str | None]:
    """``[start, end)`` widened to whole ``minutes``-buckets, and a note when that changed it.

    Every command that takes a window widens it the same way (start down, end up) and
    says so, rather than refusing an unaligned bound or widening silently.
    """
    wide_start, wide_end = floor_to(start, minutes), ceil_to(end, minutes)
    if (wide_start, wide_end) == (start, end):
        return start, end, None
    unit = "whole hours" if minutes == 60 else f"whole {minutes}-minute buckets"
    note = (
        f"window widened to {unit}: {format_bucket_time(wide_start)} to "
        f"{format_bucket_time(wide_end)}"
    )
    return wide_start, wide_end, note


def floor_to(dt: datetime, minutes: int) -> datetime:
    """The start of the ``minutes``-bucket that holds ``dt``."""
    m = epoch_minute(dt)
    return from_epoch_minute(m - m % minutes)


def ceil_to(dt: datetime, minutes: int) -> datetime:
    """``dt`` itself when on a ``minutes`` boundary, else the next boundary."""
    floor = floor_to(dt, minutes)
    return floor if floor == dt else floor + timedelta(minutes=minutes)


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (defaults from the environment)")
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help="GraphQL endpoint; overrides PLEXUS_API_URL / GRAPHQL_ENDPOINT",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key; prefer PLEXUS_API_KEY in the environment (a flag lands in shell "
        "history). The flag, when given, wins over the environment.",
    )


def add_account_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, metavar="A", help="accountId")


def add_since_arg(parser: argparse.ArgumentParser, default: timedelta, shown: str) -> None:
    """``--since DURATION``; ``shown`` is the default as the help text spells it."""
    parser.add_argument(
        "--since",
        type=parse_since,
        default=default,
        metavar="DURATION",
        help=f"how far back: 90m, 2h, 1d (default {shown}; widened to whole hours)",
    )


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """Config.from_env, with --endpoint/--api-key applied on top.

    Raises:
        ConfigError: no endpoint anywhere; the message says how to get one.
    """
    env = dict(os.environ if environ is None else environ)
    if getattr(args, "endpoint", None):
        env["PLEXUS_API_URL"] = args.endpoint
        env.pop("GRAPHQL_ENDPOINT", None)
    if getattr(args, "api_key", None):
        env["PLEXUS_API_KEY"] = args.api_key
    if not (env.get("PLEXUS_API_URL") or env.get("GRAPHQL_ENDPOINT")):
        raise ConfigError(
            "no GraphQL endpoint configured. Run `metrics-agg serve` in another terminal and "
            "`export PLEXUS_API_URL=http://127.0.0.1:8765/graphql PLEXUS_API_KEY=local-dev-key`, "
            "or set PLEXUS_API_URL to your AppSync URL (or pass --endpoint)"
        )
    endpoint = env.get("PLEXUS_API_URL") or env.get("GRAPHQL_ENDPOINT") or ""
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"the endpoint must be an http:// or https:// URL, got {endpoint!r}")
    return Config.from_env(env)


_PROBE = "query MetricsAggProbe { __typename }"


def connect(args: argparse.Namespace) -> Config:
    """`config_from_args`, then one request (no retries) to check the API answers.

    An unreachable endpoint, a URL with no GraphQL API behind it (the dashboard page's,
    say) or rejected credentials become one clear line before any work starts; throttling,
    5xx and GraphQL errors are left to the command's own requests and their retries.

    Raises:
        ConfigError: as `config_from_args`; the endpoint cannot be reached, has no GraphQL
            API, or rejects the credentials.
    """
    from metrics_agg.graphql.transport import GraphQLClient

    config = config_from_args(args)
    log = logging.getLogger("metrics_agg.graphql")
    level = log.level
    log.setLevel(logging.CRITICAL)  # the one line below says it; no transport log line
    try:
        with GraphQLClient(config.with_(max_attempts=1)) as client:
            client.execute(_PROBE, kind="read")
    except ReadError as exc:
        if exc.status is None or exc.status in (401, 403, 404, 405) or 200 <= exc.status < 300:
            raise ConfigError(
                describe_transport_error(exc, config.endpoint, api_key=bool(config.api_key))
            ) from None
    finally:
        log.setLevel(level)
    return config


def endpoint_of(args: argparse.Namespace) -> str | None:
    """The endpoint a command was pointed at, for its error messages."""
    return (
        getattr(args, "endpoint", None)
        or os.environ.get("PLEXUS_API_URL")
        or os.environ.get("GRAPHQL_ENDPOINT")
    )


def guard(command: str, body: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Turn the package's errors into one readable line and exit status 2; what else can
    end a command (Ctrl-C, a closed pipe, bad input) is the entry point's guard
    (`_guard.run_guarded`)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except MetricsAggError as exc:
            said = describe_error(exc, endpoint_of(args))
            print(f"metrics-agg {command}: {said}", file=sys.stderr)
            return EXIT_USAGE

    return run


def help_formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)
