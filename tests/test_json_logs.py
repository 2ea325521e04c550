"""JSON log lines (docs/operations.md, "Structured logs"): the Lambda handler, run as Lambda runs
it with ``AWS_LAMBDA_LOG_FORMAT=JSON``, writes only JSON lines with the documented fields, and
every field the documented Logs Insights queries use is one those lines carry.

The handler runs in a child process (it configures logging at import, as in Lambda) against
the local stack: a stream batch, a tampered bucket the scheduled reconcile repairs, and a
stream batch whose unit fails.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg import logs
from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.local.server.store import TABLES
from truth_helpers import Stream, iso, recent_now

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "acct-json"

# Runs each event of argv[1] (a JSON list) through the handler as Lambda would.
_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[2])
import handler

class Context:
    def __init__(self, n):
        self.aws_request_id = f"req-{n}"
    def get_remaining_time_in_millis(self):
        return 60_000

for n, event in enumerate(json.load(open(sys.argv[1])), start=int(sys.argv[3])):
    handler.handler(event, Context(n))
"""


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("json-logs")
    with LocalStack(tmp / "json.sqlite3", mapping=False) as stack:
        now = recent_now()
        stream = Stream(stack)
        with LocalClient(stack.endpoint, stack.api_key) as api:
            for i in range(5):
                api.create("Item", accountId=ACCOUNT, createdAt=iso(now - timedelta(minutes=i)))
        events: list[Any] = [{"Records": stream.take("Item")}]
        output = _run(stack, events, tmp)
        # Drift: a stored bucket made wrong behind the aggregator's back.
        bucket = next(m for m in stack.store.all_metrics(ACCOUNT) if m["count"] > 0)
        key = [bucket[c] for c in TABLES["AggregatedMetrics"].key]
        stack.store.update("AggregatedMetrics", key, {"count": bucket["count"] + 7})
        scheduled = {"source": "aws.events", "detail-type": "Scheduled Event"}
        events = [{**scheduled, "detail": {"accountIds": [ACCOUNT]}}]
        # A unit that fails: every read of its model is refused.
        with LocalClient(stack.endpoint, stack.api_key) as api:
            api.create("Task", accountId=ACCOUNT, updatedAt=iso(now))
        events.append({"Records": stream.take("Task")})
        stack.faults.add(field="listTaskByAccountIdAndUpdatedAt", action="http_400", times=None)
        output += _run(stack, events, tmp, first=1)
    yield [json.loads(line) for line in output]


def _run(stack: LocalStack, events: list[Any], tmp: Path, first: int = 0) -> list[str]:
    """One process (one cold start) runs ``events``, request ids from req-<first>."""
    path = tmp / "events.json"
    path.write_text(json.dumps(events), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRICS_AGG_", "PLEXUS_"))}
    env.update(
        AWS_LAMBDA_LOG_FORMAT="JSON",
        AWS_LAMBDA_LOG_LEVEL="INFO",
        PLEXUS_API_URL=stack.endpoint,
        PLEXUS_API_KEY=stack.api_key,
        METRICS_AGG_EMF="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(path), str(ROOT / "lambda/function"), str(first)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = [line for text in (done.stderr, done.stdout) for line in text.splitlines()]
    for line in out:  # every line, logs and EMF alike, is one JSON object
        assert isinstance(json.loads(line), dict), line
    return out


def _summaries(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("summary") == kind]


def test_every_log_line_is_json_with_the_invocation_fields(lines: list[dict[str, Any]]) -> None:
    logged = [line for line in lines if "level" in line]
    assert len(logged) > 10
    for line in logged:
        assert {"timestamp", "level", "message", "logger", "requestId", "coldStart"} <= set(line)
        assert line["level"] in {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    # Two processes: req-0 alone in the first, req-1 (cold) and req-2 (warm) in the second.
    for request, cold in (("req-0", True), ("req-1", True), ("req-2", False)):
        mine = [line for line in logged if line["requestId"] == request]
        assert mine and all(line["coldStart"] is cold for line in mine), request


def test_unit_and_invocation_lines_carry_the_figures(lines: list[dict[str, Any]]) -> None:
    units = _summaries(lines, "unit")
    kinds = {u["eventKind"] for u in units}
    assert kinds == {"stream", "scheduled"}
    stream = next(u for u in units if u["eventKind"] == "stream" and u["model"] == "Item")
    assert stream["account"] == ACCOUNT and stream["outcome"] == "ok"
    assert stream["recordsCounted"] == 5 and stream["bucketsWritten"] > 0
    assert stream["hours"] >= 1 and stream["minutesRecounted"] >= 1
    assert stream["durationMs"] > 0
    repaired = [u for u in units if u["eventKind"] == "scheduled" and u["driftRepaired"] > 0]
    assert repaired and repaired[0]["minutesRecounted"] == 60 * repaired[0]["hours"]
    failed = [u for u in units if u["outcome"] == "failed"]
    assert {u["model"] for u in failed} == {"Task"} and all(u["error"] for u in failed)
    (failed,) = [u for u in failed if u["eventKind"] == "stream"]
    assert failed["sequence"]  # the lowest sequence number the mapping retries from
    invocations = _summaries(lines, "invocation")
    assert len(invocations) == 3
    last = invocations[-1]
    assert last["outcome"] == "PARTIAL" and last["failedCount"] == 1
    assert last["failedUnits"] == [{"unit": f"Task/{ACCOUNT}", "sequence": failed["sequence"]}]
    assert all(i["httpRequests"] > 0 and i["durationMs"] > 0 for i in invocations)


_QUERY_WORDS = {
    "filter", "fields", "stats", "sort", "limit", "by", "as", "desc", "asc", "and", "or",
    "not", "like", "in", "count", "sum", "avg", "min", "max", "bin", "latest", "earliest",
    "display", "parse", "dedup",
}  # fmt: skip


def documented_queries() -> list[str]:
    text = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
    return re.findall(r"```logsinsights\n(.*?)```", text, flags=re.S)


def query_fields(query: str) -> set[str]:
    """The log fields a Logs Insights query reads (not its keywords, aliases or literals)."""
    body = "\n".join(line for line in query.splitlines() if not line.startswith("#"))
    body = re.sub(r'"[^"]*"', " ", body)
    body = re.sub(r"\b\d+[smhd]?\b", " ", body)  # numbers and bin() periods
    aliases = set(re.findall(r"\bas\s+(\w+)", body))
    words = set(re.findall(r"@?[A-Za-z_][\w.]*", body))
    return {w for w in words - _QUERY_WORDS - aliases if not w.startswith("@")}


def test_five_documented_queries_use_only_logged_fields(lines: list[dict[str, Any]]) -> None:
    queries = documented_queries()
    assert len(queries) == 5
    logged = {key for line in lines if "summary" in line for key in line}
    for query in queries:
        fields = query_fields(query)
        assert fields, query
        assert fields <= logged, (fields - logged, query)
        # Every `summary = "..."` a query filters on is a kind of line that was logged.
        for kind in re.findall(r'summary = "(\w+)"', query):
            assert _summaries(lines, kind), kind


def test_query_field_parser_sees_an_unknown_field() -> None:
    fields = query_fields('filter summary = "unit" | stats sum(recordz) as n by model, bin(1h)')
    assert fields == {"summary", "recordz", "model"}


def test_human_lines_without_the_variable() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    handler = logging.StreamHandler()
    try:
        logs.configure({}, handler=handler, human=logging.Formatter("%(message)s"))
        assert not isinstance(handler.formatter, logs.JsonFormatter)
        logs.configure({"AWS_LAMBDA_LOG_FORMAT": "JSON"}, handler=handler)
        assert logs.structured()
        assert isinstance(handler.formatter, logs.JsonFormatter)
        record = logging.LogRecord("metrics_agg", logging.WARNING, "", 0, "x %d", (1,), None)
        record.model = "Item"
        line = json.loads(handler.formatter.format(record))
        assert line["level"] == "WARN" and line["message"] == "x 1" and line["model"] == "Item"
    finally:
        logs.configure({}, handler=logging.NullHandler())  # back to human lines
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        logging.getLogger("metrics_agg").setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    ("env", "level"),
    [({"AWS_LAMBDA_LOG_LEVEL": "WARN"}, logging.WARNING),
     ({"AWS_LAMBDA_LOG_LEVEL": "TRACE", "LOG_LEVEL": "ERROR"}, logging.DEBUG),
     ({"LOG_LEVEL": "ERROR"}, logging.ERROR), ({}, logging.INFO)],
)  # fmt: skip
def test_lambda_level_names(env: dict[str, str], level: int) -> None:
    assert logs.package_level(env) == level
