"""The local dashboard in a real browser (issue 13): headless Chromium driven by Playwright.

Starts the local stack with its mapping, writes records through the API, opens the page,
enters the key, and checks every bar and total the page shows, for each bucket size,
against the stored buckets and against the truth counted from the tables; then writes
more records and waits for the page to show them without a reload. Saves a screenshot
(`METRICS_AGG_DASHBOARD_SCREENSHOT=docs/dashboard.png` writes it there as well).

Skipped when Chromium or the Playwright wheel is absent; CI sets
METRICS_AGG_REQUIRE_BROWSER=1, which turns that skip into a failure.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.local.server import LocalClient, LocalStack
from truth_helpers import ERROR_TYPES, error_truth, iso, truth

ACCOUNT = "acct-browser"
SIZES = (60, 15, 5, 1)


def _chromium() -> str:
    """Chromium's path, or skip (fail under METRICS_AGG_REQUIRE_BROWSER=1)."""
    problem = None
    exe = (
        os.environ.get("METRICS_AGG_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if exe is None:
        problem = "no chromium executable (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright wheel is not installed (pip install playwright)"
    if problem is not None:
        if os.environ.get("METRICS_AGG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"METRICS_AGG_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    assert exe is not None
    return exe


def _records(rng: random.Random, now: datetime, n: int) -> list[tuple[str, dict[str, Any]]]:
    """n creates of every model over the last 100 minutes (never in the future)."""
    out: list[tuple[str, dict[str, Any]]] = []
    models = ["Item", "ScoreResult", "Task", "Evaluation", "Procedure", "ChatSession"]
    models.append("FeedbackItem")
    for i in range(n):
        model = models[i % len(models)]
        at = now - timedelta(seconds=rng.randint(5, 100 * 60))
        ts = iso(at)
        rec: dict[str, Any] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "accountId": ACCOUNT,
            "createdAt": ts,
            "updatedAt": ts,
        }
        if model == "Item":
            rec["createdByType"] = rng.choice(["prediction", "evaluation", None])
        elif model == "ScoreResult":
            rec |= {
                "type": rng.choice(["prediction", "evaluation"]),
                "code": rng.choice(["200", "500"]),
            }
        elif model in ("Task", "Evaluation"):
            rec["status"] = rng.choice(["COMPLETED", "RUNNING", "FAILED"])
        elif model == "Procedure":
            rec["status"] = rng.choice(["COMPLETE", "RUNNING", "FAILED", "ERROR"])
        elif model == "FeedbackItem":
            answer = rng.choice(["yes", "no"])
            rec |= {
                "scorecardId": "sc-1",
                "scoreId": "score-1",
                "initialAnswerValue": answer,
                "finalAnswerValue": rng.choice(["yes", "no"]),
                "editedAt": ts,
            }
        out.append((model, {k: v for k, v in rec.items() if v is not None}))
    return out


@pytest.fixture
def stack(make_local_stack: Any) -> LocalStack:
    key = f"browser-key-{uuid.uuid4().hex}"
    started: LocalStack = make_local_stack(mapping=True, batch_window=0.1, api_key=key)
    return started


@pytest.fixture
def page(stack: LocalStack, tmp_path: Path) -> Iterator[Any]:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1100})
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def _write(stack: LocalStack, writes: list[tuple[str, dict[str, Any]]]) -> None:
    with LocalClient(stack.endpoint, stack.api_key) as client:
        for model, fields in writes:
            client.create(model, **fields)
    assert stack.wait_idle(60), "the event source mapping did not catch up"


def _shown(page: Any) -> list[dict[str, Any]]:
    """Every chart as the page shows it: totals (data and visible text) and bars."""
    js = """() => [...document.querySelectorAll('#charts section.chart')].map(s => ({
        recordType: s.dataset.recordType,
        count: s.dataset.count,
        errors: s.dataset.errors,
        text: s.querySelector('.total').textContent,
        errorText: s.querySelector('.totals > span:last-child').textContent,
        bars: [...s.querySelectorAll('rect.bar')].map(r => [
            r.dataset.start, Number(r.dataset.count), r.dataset.errors]),
    }))"""
    charts: list[dict[str, Any]] = page.evaluate(js)
    return charts


def _show_size(page: Any, size: int) -> None:
    page.check(f"input[name=size][value='{size}']")
    page.wait_for_function(f"() => document.querySelector('#charts').dataset.size === '{size}'")


def _check_against_store_and_truth(stack: LocalStack, page: Any, size: int) -> int:
    """Every bar equals the stored bucket of that size and the truth; returns bars checked."""
    stored = {m["compositeKey"]: m for m in stack.store.all_metrics(ACCOUNT)}
    want = truth(stack.store, ACCOUNT)
    want_errors = error_truth(stack.store, ACCOUNT)
    charts = _shown(page)
    assert [c["recordType"] for c in charts] == [
        "items",
        "predictionItems",
        "evaluationItems",
        "scoreResults",
        "predictionScoreResults",
        "evaluationScoreResults",
        "tasks",
        "evaluations",
        "procedures",
        "chatSessions",
        "feedbackItems",
    ]
    checked = 0
    for chart in charts:
        rt = chart["recordType"]
        assert len(chart["bars"]) == 3 * 60 // size  # the default 3 hours
        for start, count, errors in chart["bars"]:
            key = f"{rt}#{start}#{size}"
            held = stored.get(key)
            assert count == (held["count"] if held else 0), f"{key}: page {count}, stored {held}"
            assert count == want.get(key, (0, None))[0], f"{key}: page {count}, truth"
            if rt in ERROR_TYPES:
                # A slot with no stored bucket shows no error count (nothing was selected).
                assert errors == (str(held["errorCount"]) if held else ""), key
                assert int(errors or 0) == want_errors.get(key, 0), f"{key}: errors, truth"
            else:
                assert errors == "", f"{key}: errors shown for a model without them"
            checked += 1
        total = sum(bar[1] for bar in chart["bars"])
        assert int(chart["count"]) == total
        assert chart["text"] == f"{total:,}"
        total_errors = sum(int(bar[2] or 0) for bar in chart["bars"])
        if rt in ERROR_TYPES:
            assert chart["errors"] == str(total_errors)
            assert chart["errorText"] == f"{total_errors:,} error{'' if total_errors == 1 else 's'}"
        else:
            assert chart["errors"] == "" and chart["errorText"] == "errors not defined"
    return checked


def test_dashboard_shows_the_stored_buckets_and_the_truth_live(
    stack: LocalStack, page: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(13)
    now = datetime.now(UTC)
    writes = _records(rng, now, 280)
    _write(stack, writes)
    base = stack.endpoint.rsplit("/", 1)[0]
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    page.goto(base + "/")
    # No key yet: the page holds no data and has asked for none.
    assert page.locator("#charts section").count() == 0
    assert not any("/local/status" in u or "/graphql" in u for u in urls)

    # A wrong key: refused, still nothing shown.
    page.fill("#api-key", "not-the-key")
    page.click("#connect button[type=submit]")
    page.wait_for_function("() => document.querySelector('#message').classList.contains('error')")
    assert "refused" in page.text_content("#message")
    assert page.locator("#charts section").count() == 0

    page.fill("#api-key", stack.api_key)
    page.click("#connect button[type=submit]")
    page.wait_for_selector("#charts section.chart rect.bar", state="attached")
    assert page.input_value("#account") == ACCOUNT

    checked = 0
    for size in SIZES:
        _show_size(page, size)
        checked += _check_against_store_and_truth(stack, page, size)
    assert checked == 11 * (3 + 12 + 36 + 180)
    # Independent of every bucket: the page's items total is the number of Items written.
    items = sum(1 for model, _ in writes if model == "Item")
    assert next(c for c in _shown(page) if c["recordType"] == "items")["count"] == str(items)
    failed = sum(1 for model, r in writes if model == "Task" and r.get("status") == "FAILED")
    tasks = next(c for c in _shown(page) if c["recordType"] == "tasks")
    assert failed and tasks["errors"] == str(failed)

    # The mapping's activity: every table was delivered, nothing waits or failed.
    page.wait_for_selector("#freshness")
    activity = page.evaluate("() => ({...document.querySelector('#freshness').dataset})")
    assert activity["pending"] == "0" and activity["failed"] == "0"
    assert int(activity["invocations"]) >= 7
    item_row = page.text_content("#activity tr[data-model='Item']")
    assert "Item" in item_row

    # Live: more records, no reload; the page catches up by itself.
    _show_size(page, 5)
    more = [(m, r) for m, r in _records(rng, datetime.now(UTC), 70) if m == "Item"]
    _write(stack, more)
    expected = items + len(more)
    page.wait_for_function(
        "n => document.querySelector('#charts section[data-record-type=items]')"
        ".dataset.count === String(n)",
        arg=expected,
        timeout=20_000,
    )
    _check_against_store_and_truth(stack, page, 5)

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("METRICS_AGG_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)

    # The key travelled only as a header: never in a URL, never in a log line.
    assert urls and not any(stack.api_key in u for u in urls)
    assert stack.api_key not in caplog.text
