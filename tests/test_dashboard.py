"""The local dashboard's routes without a browser (issue 13): the page carries no data and
needs no key; `/local/status` serves nothing without the key (never from the URL) and
reports the mapping's activity, kept in the database so another process's mapping shows."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.local.server import LocalStack, Store


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _lower(exc.headers), exc.read()


def _base(stack: LocalStack) -> str:
    return stack.endpoint.rsplit("/", 1)[0]


def _task(n: int, *, at: str = "2024-05-01T10:00:00.000Z") -> dict[str, Any]:
    return {"id": f"t{n:03d}", "accountId": "a", "createdAt": at, "updatedAt": at}


def test_page_is_static_and_locked_down(local_stack: LocalStack) -> None:
    status, headers, body = _get(_base(local_stack) + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="/dashboard.js"' in body and b"<script>" not in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    # The key field has no name, and the form no action: it can never be sent in a URL.
    assert b'id="api-key"' in body and b'name="' not in body.split(b'id="api-key"')[1][:200]
    assert b'<script src="/chart.js"' in body
    for asset, kind in (
        ("/chart.js", "text/javascript"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ):
        status, headers, body = _get(_base(local_stack) + asset)
        assert status == 200 and headers["content-type"].startswith(kind) and body
    # The page reads through the Plexus dashboard's own query and index.
    status, _, js = _get(_base(local_stack) + "/dashboard.js")
    assert b"listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart" in js
    assert b'"x-api-key": state.key' in js
    assert _get(_base(local_stack) + "/nothing-here")[0] == 404


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/local/status", {}),
        ("/local/status", {"x-api-key": "wrong"}),
        ("/local/status?x-api-key=local-dev-key", {}),
        ("/local/status?apiKey=local-dev-key&api_key=local-dev-key", {}),
    ],
)
def test_status_needs_the_key_header(
    local_stack: LocalStack, path: str, headers: dict[str, str]
) -> None:
    status, _, body = _get(_base(local_stack) + path, headers)
    assert status == 401
    assert json.loads(body)["errors"][0]["errorType"] == "UnauthorizedException"


def test_status_reports_accounts_record_types_and_activity(
    make_local_stack: Callable[..., LocalStack],
) -> None:
    delivered: list[int] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        delivered.append(len(event["Records"]))
        return {"batchItemFailures": []}

    stack = make_local_stack(mapping=True, batch_window=0.05, handler=handler)
    stack.store.bulk_insert("Item", [_task(n) for n in range(25)])
    stack.store.bulk_insert("Task", [_task(n) for n in range(3)])
    assert stack.wait_idle(30)
    status, headers, body = _get(_base(stack) + "/local/status", {"x-api-key": stack.api_key})
    assert status == 200 and headers["cache-control"] == "no-store"
    data = json.loads(body)
    assert data["accounts"] == []  # no AggregatedMetrics written by this fake handler
    types = [t["recordType"] for t in data["recordTypes"]]
    assert types[:3] == ["items", "predictionItems", "evaluationItems"]
    scopes = {t["recordType"]: t["scope"] for t in data["recordTypes"]}
    assert scopes["feedbackItems"] is None and scopes["items"] is None
    assert scopes["feedbackItemsByScorecard"] == "scorecard"
    assert scopes["feedbackItemsByScore"] == "score"
    assert data["streamMapping"] is True and data["extent"] == {}
    tables = {t["model"]: t for t in data["tables"]}
    assert tables["Item"]["invocations"] >= 1 and tables["Item"]["records"] == 25
    assert tables["Task"]["invocations"] >= 1 and tables["Task"]["records"] == 3
    assert sum(t["invocations"] for t in tables.values()) == len(delivered)
    assert tables["Item"]["pending"] == 0 and tables["Item"]["failed"] == 0
    assert tables["Item"]["last_lag"] is not None and tables["Item"]["last_lag"] >= 0
    assert tables["ChatSession"]["invocations"] == 0 and tables["ChatSession"]["last_at"] is None
    assert sum(delivered) == 28


def test_status_says_when_this_server_does_not_deliver(local_stack: LocalStack) -> None:
    """`serve --no-mapping`: the page must not call the buckets current, so status says it."""

    def bucket(start: str, end: str, minutes: int) -> dict[str, Any]:
        return {
            "accountId": "acme",
            "compositeKey": f"items#{start}#{minutes}",
            "recordType": "items",
            "timeRangeStart": start,
            "timeRangeEnd": end,
            "numberOfMinutes": minutes,
            "count": 1,
        }

    local_stack.store.bulk_insert(
        "AggregatedMetrics",
        [
            bucket("2024-05-01T10:05:00Z", "2024-05-01T10:10:00Z", 5),
            bucket("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", 60),
        ],
    )
    status, _, body = _get(_base(local_stack) + "/local/status", {"x-api-key": local_stack.api_key})
    data = json.loads(body)
    assert status == 200 and data["streamMapping"] is False and data["backfillQueue"] is False
    assert data["accounts"] == ["acme"]
    assert data["extent"] == {
        "acme": {"first": "2024-05-01T10:00:00Z", "last": "2024-05-01T11:00:00Z"}
    }


def test_activity_counts_failures_and_waiting_records_across_processes(
    make_local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("handler exploded")

    db = tmp_path / "shared.sqlite3"
    stack = make_local_stack(db, mapping=True, batch_window=0.01, handler=broken)
    stack.mapping.retry_delay = 0.001  # type: ignore[union-attr]
    stack.store.bulk_insert("Task", [_task(0)])
    assert stack.wait_idle(30)
    # A second store on the same file (as `serve --db` beside `demo --keep`) sees it all.
    other = Store(db)
    try:
        (task,) = other.activity(["Task"])
        assert task.invocations == 4 and task.failed == 4 and task.parked == 1
        assert task.pending == 0 and task.last_error == "RuntimeError: handler exploded"
        other.bulk_insert("Item", [_task(1)], stream=True)
        stack.mapping.stop()  # type: ignore[union-attr]
        other.bulk_insert("Item", [_task(2)], stream=True)
        (item,) = other.activity(["Item"])
        assert item.pending >= 1 and item.oldest_pending is not None
    finally:
        other.close()
