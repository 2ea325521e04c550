"""How every log line is written: one JSON object per line in Lambda, human lines elsewhere.

"In Lambda" means ``AWS_LAMBDA_LOG_FORMAT=JSON`` (the template's ``LoggingConfig``); with it
set, every line is JSON wherever the handler runs (the Lambda runtime, tests,
``metrics-agg invoke``). The keys follow the Lambda runtime's own JSON lines (``timestamp``,
``level`` with Lambda's names, ``message``, ``logger``, ``requestId``) so Lambda's level
filter and Logs Insights read ours the same way; the ``extra`` fields of a call become
top-level keys (docs/operations.md lists them). `configure` is the one place both the
Lambda shell and the CLI set logging up.
"""

from __future__ import annotations

__all__ = [
    "LOG_FORMAT_ENV",
    "JsonFormatter",
    "begin_invocation",
    "configure",
    "json_lines",
    "package_level",
    "structured",
]

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

LOG_FORMAT_ENV = "AWS_LAMBDA_LOG_FORMAT"

# Lambda's level names (ApplicationLogLevel): WARN and FATAL, not WARNING and CRITICAL.
_LAMBDA_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_FROM_LAMBDA = {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG"}
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class _Invocation:
    """The request id and cold-start flag of the invocation running in this process.

    Module state, not a context variable: a Lambda process runs one invocation at a time,
    and the units of one run in worker threads, which a context variable would not reach.
    """

    request_id: str | None = None
    cold_start: bool | None = None
    started: int = 0
    json: bool = False  # what the last `configure` chose


def begin_invocation(context: object) -> None:
    """Mark a new invocation: its request id (``context.aws_request_id``) and cold start."""
    _Invocation.request_id = getattr(context, "aws_request_id", None)
    _Invocation.started += 1
    _Invocation.cold_start = _Invocation.started == 1


def json_lines(environ: Mapping[str, str]) -> bool:
    return environ.get(LOG_FORMAT_ENV, "").strip().upper() == "JSON"


def structured() -> bool:
    """True when the lines are JSON (`configure`): the report then adds a line per unit."""
    return _Invocation.json


def package_level(environ: Mapping[str, str]) -> int:
    """The ``metrics_agg`` logger's level: Lambda's ``AWS_LAMBDA_LOG_LEVEL`` (set from
    ApplicationLogLevel), else ``LOG_LEVEL``, else INFO; an unknown name is INFO."""
    env = environ
    name = (env.get("AWS_LAMBDA_LOG_LEVEL") or env.get("LOG_LEVEL") or "INFO").strip().upper()
    return logging.getLevelNamesMapping().get(_FROM_LAMBDA.get(name, name), logging.INFO)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the Lambda runtime's keys, then the call's ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": _LAMBDA_LEVELS.get(record.levelname, record.levelname),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if _Invocation.request_id is not None:
            line["requestId"] = _Invocation.request_id
        if _Invocation.cold_start is not None:
            line["coldStart"] = _Invocation.cold_start
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["errorType"] = record.exc_info[0].__name__
            line["stackTrace"] = self.formatException(record.exc_info).splitlines()
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(
    environ: Mapping[str, str],
    *,
    level: int | None = None,
    human: logging.Formatter | None = None,
    stream: TextIO | None = None,
    handler: logging.Handler | None = None,
) -> logging.Handler | None:
    """Set up the root logger's lines; the one place the Lambda shell and the CLI call.

    ``environ``: the process environment, given by the caller (the Lambda bootstrap or the
    CLI), as only they and `config` read it.

    JSON lines when `json_lines`, else ``human`` (default ``LEVEL logger message``).
    ``handler``: added to the root logger (the CLI's). Without one, a stderr handler is
    added when the root has none; the root's existing handlers (the Lambda runtime's) get
    the JSON formatter, and keep theirs for human lines. ``level``: the ``metrics_agg``
    logger's (default `package_level`; NOTSET follows the root); the root stays where it
    is, so library chatter (botocore, urllib3) stays out.
    Returns the handler it added, for the caller to remove.
    """
    root = logging.getLogger()
    _Invocation.json = json_lines(environ)
    formatter = (
        JsonFormatter()
        if _Invocation.json
        else human or logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    added: logging.Handler | None = handler
    if added is None and not root.handlers:
        added = logging.StreamHandler(stream or sys.stderr)
    if added is not None:
        added.setFormatter(formatter)
        root.addHandler(added)
    if handler is None and isinstance(formatter, JsonFormatter):
        for existing in root.handlers:  # the Lambda runtime's: one schema for every line
            existing.setFormatter(formatter)
    logging.getLogger("metrics_agg").setLevel(package_level(environ) if level is None else level)
    return added
