"""The local dashboard in a real browser (issue 13): headless Chromium driven by Playwright.

Starts the local stack with its mapping, writes records through the API, opens the page
at 1280 px, enters the key, and checks every bar and total the page shows, for each bucket
size and for every scorecard and score of the feedback charts, against the stored buckets
and against the truth counted from the tables; hovers slots and checks the tooltip's
values; checks that the axes are readable and nothing is clipped; then writes more
records and waits for the page to show them without a reload. A second test runs the
server without its stream mapping and checks that the page says so. Saves a screenshot
(`METRICS_AGG_DASHBOARD_SCREENSHOT=path.png` copies it there; docs/dashboard.png is made
from the demo's data by scripts/dashboard_screenshot.py).

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
MINUTE = timedelta(minutes=1)
# (scorecardId, scoreId) of the feedback written: two scorecards, three scores.
SCOPES = (("sc-1", "score-1"), ("sc-1", "score-2"), ("sc-2", "score-3"))
PLAIN_TYPES = [
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
SCOPED_TYPES = ["feedbackItemsByScorecard", "feedbackItemsByScore"]
WIDTH = 1280


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
            scorecard, score = rng.choice(SCOPES)
            rec |= {
                "scorecardId": scorecard,
                "scoreId": score,
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
def page() -> Iterator[Any]:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
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
    js = """() => [...document.querySelectorAll('section.chart')].map(s => ({
        recordType: s.dataset.recordType,
        scope: s.dataset.scope || null,
        count: s.dataset.count,
        errors: s.dataset.errors,
        text: s.querySelector('.total').textContent,
        errorText: s.querySelector('.totals > span:last-child').textContent,
        bars: [...s.querySelectorAll('rect.bar')].map(r => [
            r.dataset.start, Number(r.dataset.count), r.dataset.errors]),
    }))"""
    charts: list[dict[str, Any]] = page.evaluate(js)
    return charts


def _view(page: Any) -> dict[str, str]:
    view: dict[str, str] = page.evaluate("() => ({...document.querySelector('#charts').dataset})")
    return view


def _drawn(page: Any) -> None:
    """Wait until the charts are drawn with the controls as they are now."""
    page.wait_for_function(
        "() => document.querySelector('#charts').dataset.generation === "
        "document.body.dataset.generation"
    )


def _choose(page: Any, select: str, value: str) -> None:
    page.select_option(select, value)
    _drawn(page)


def _show_size(page: Any, size: int) -> None:
    page.check(f"input[name=size][value='{size}']")
    _drawn(page)
    assert _view(page)["size"] == str(size)


def _key_prefix(record_type: str, view: dict[str, str]) -> str:
    """The compositeKey up to the start: scoped charts show the selected scorecard/score."""
    if record_type == "feedbackItemsByScorecard":
        return f"{record_type}#{view['scorecard']}"
    if record_type == "feedbackItemsByScore":
        return f"{record_type}#{view['score']}"
    return record_type


def _check_against_store_and_truth(stack: LocalStack, page: Any) -> int:
    """Every bar equals the stored bucket of the shown size and the truth; returns bars checked."""
    stored = {m["compositeKey"]: m for m in stack.store.all_metrics(ACCOUNT)}
    want = truth(stack.store, ACCOUNT)
    want_errors = error_truth(stack.store, ACCOUNT)
    view = _view(page)
    size = int(view["size"])
    start = datetime.fromisoformat(view["start"])
    end = datetime.fromisoformat(view["end"])
    slots = [
        f"{start + timedelta(minutes=size * i):%Y-%m-%dT%H:%M:%SZ}"
        for i in range((end - start) // (size * MINUTE))
    ]
    charts = _shown(page)
    assert [c["recordType"] for c in charts] == PLAIN_TYPES + SCOPED_TYPES
    checked = 0
    for chart in charts:
        rt = chart["recordType"]
        prefix = _key_prefix(rt, view)
        if rt in SCOPED_TYPES:
            assert chart["scope"] == prefix.split("#")[1]
        assert [bar[0] for bar in chart["bars"]] == slots
        for start_text, count, errors in chart["bars"]:
            key = f"{prefix}#{start_text}#{size}"
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


def _check_every_scope(stack: LocalStack, page: Any) -> int:
    """Bars of every chart, for each (scorecard, score) the selectors offer; bars checked."""
    scorecards = page.eval_on_selector_all("#scorecard option", "os => os.map(o => o.value)")
    assert scorecards == sorted({sc for sc, _ in SCOPES})
    checked = 0
    for scorecard in scorecards:
        _choose(page, "#scorecard", scorecard)
        scores = page.eval_on_selector_all("#score option", "os => os.map(o => o.value)")
        assert scores == sorted(s for sc, s in SCOPES if sc == scorecard)
        for score in scores:
            _choose(page, "#score", score)
            view = _view(page)
            assert (view["scorecard"], view["score"]) == (scorecard, score)
            checked += _check_against_store_and_truth(stack, page)
    return checked


def _check_hover(stack: LocalStack, page: Any) -> int:
    """Hover every slot of every chart: the tooltip tells its time, count and errors as
    stored. Returns the slots hovered."""
    stored = {m["compositeKey"]: m for m in stack.store.all_metrics(ACCOUNT)}
    view = _view(page)
    size = int(view["size"])
    hovered = 0
    for chart in _shown(page):
        rt = chart["recordType"]
        prefix = _key_prefix(rt, view)
        for i, (start_text, count, errors) in enumerate(chart["bars"]):
            page.hover(f"section.chart[data-record-type='{rt}'] rect.hit[data-i='{i}']")
            tip = page.evaluate(
                "() => { const t = document.querySelector('#tooltip');"
                " return {hidden: t.hidden, text: t.innerText, ...t.dataset}; }"
            )
            assert not tip["hidden"]
            assert (tip["recordType"], tip["start"]) == (rt, start_text)
            held = stored.get(f"{prefix}#{start_text}#{size}")
            assert tip["count"] == str(held["count"] if held else 0) == str(count)
            assert tip["errors"] == errors
            begin = datetime.fromisoformat(start_text)
            finish = begin + timedelta(minutes=size)
            lines = tip["text"].splitlines()
            assert lines[0] == f"{begin:%H:%M}–{finish:%H:%M} UTC"
            assert lines[1] == f"count {count:,}"
            if rt in ERROR_TYPES:
                assert lines[2] == f"errors {int(errors or 0):,}"
            else:
                assert lines[2] == "errors not defined"
            hovered += 1
    page.mouse.move(1, 1)
    page.wait_for_function("() => document.querySelector('#tooltip').hidden")
    return hovered


def _check_readable_and_unclipped(page: Any) -> None:
    """12 px labels at their drawn size, round y ticks with gridlines, round time ticks,
    the legend, and nothing wider than the 1280 px window."""
    charts = page.evaluate(
        """() => [...document.querySelectorAll('section.chart svg')].map(s => ({
            scale: s.getBoundingClientRect().width / s.viewBox.baseVal.width,
            font: Math.min(...[...s.querySelectorAll('text')].map(
                t => parseFloat(getComputedStyle(t).fontSize))),
            yticks: [...s.querySelectorAll('text.ytick')].map(t => t.textContent),
            xticks: [...s.querySelectorAll('text.xtick')].map(t => t.textContent),
            grid: s.querySelectorAll('.grid line').length,
            max: Math.max(0, ...[...s.querySelectorAll('rect.bar')].map(r => +r.dataset.count)),
        }))"""
    )
    size = int(_view(page)["size"])
    for chart in charts:
        assert abs(chart["scale"] - 1) < 0.01 and chart["font"] * chart["scale"] >= 12
        ticks = [int(t.replace(",", "")) for t in chart["yticks"]]
        step = ticks[1] - ticks[0]
        assert ticks[0] == 0 and len(ticks) >= 3 and chart["grid"] == len(ticks)
        assert ticks == [step * k for k in range(len(ticks))] and ticks[-1] >= chart["max"]
        assert int(str(step).rstrip("0") or "0") in (1, 2, 5), ticks
        assert len(chart["xticks"]) >= 3
        assert all(int(t[-2:]) % size == 0 for t in chart["xticks"]), chart["xticks"]
    legend = page.evaluate(
        """() => ({
            visible: !document.querySelector('#legend').hidden,
            text: document.querySelector('#legend').textContent,
            key: getComputedStyle(document.querySelector('#legend .key.errors')).backgroundColor,
            bar: getComputedStyle(document.querySelector('rect.err')).fill,
        })"""
    )
    assert legend["visible"] and "count" in legend["text"] and "errors" in legend["text"]
    assert legend["key"] == legend["bar"] == "rgb(212, 61, 61)"  # red means errors
    layout = page.evaluate(
        """() => {
            const doc = document.documentElement;
            const wrap = document.querySelector('#activity .table-wrap');
            const right = wrap.getBoundingClientRect().right;
            return {
                page: doc.scrollWidth, width: doc.clientWidth,
                wrap: wrap.scrollWidth - wrap.clientWidth,
                cells: [...document.querySelectorAll('#activity th, #activity td')]
                    .filter(c => c.getBoundingClientRect().right > right + 0.5).length,
                charts: [...document.querySelectorAll('section.chart, #activity')]
                    .filter(c => c.getBoundingClientRect().right > doc.clientWidth).length,
            };
        }"""
    )
    assert layout["page"] <= layout["width"] <= WIDTH, layout
    assert layout["wrap"] == 0 and layout["cells"] == 0 and layout["charts"] == 0, layout


def _connect(page: Any, base: str, key: str) -> None:
    page.goto(base + "/")
    page.fill("#api-key", key)
    page.click("#connect button[type=submit]")
    page.wait_for_selector("#freshness")


def test_dashboard_shows_the_stored_buckets_and_the_truth_live(
    stack: LocalStack, page: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(13)
    now = datetime.now(UTC)
    writes = _records(rng, now, 420)
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
    _drawn(page)
    assert page.input_value("#account") == ACCOUNT

    # The default range fits the data: 100 minutes of records need the 3-hour range, drawn
    # in 5-minute buckets (the smallest size that keeps it under 100 bars).
    view = _view(page)
    assert (view["range"], view["size"]) == ("180", "5")
    _check_readable_and_unclipped(page)

    # Every bar of every chart, for each size and each scorecard/score, over the last 3 h.
    _choose(page, "#range", "180")
    checked = 0
    for size in SIZES:
        _show_size(page, size)
        checked += _check_every_scope(stack, page)
    per_scope = (len(PLAIN_TYPES) + len(SCOPED_TYPES)) * (3 + 12 + 36 + 180)
    assert checked == len(SCOPES) * per_scope
    # Independent of every bucket: the page's items total is the number of Items written.
    items = sum(1 for model, _ in writes if model == "Item")
    assert next(c for c in _shown(page) if c["recordType"] == "items")["count"] == str(items)
    failed = sum(1 for model, r in writes if model == "Task" and r.get("status") == "FAILED")
    tasks = next(c for c in _shown(page) if c["recordType"] == "tasks")
    assert failed and tasks["errors"] == str(failed)
    feedback = [r for model, r in writes if model == "FeedbackItem"]
    shown = {c["recordType"]: c["count"] for c in _shown(page)}
    last = (SCOPES[-1][0], SCOPES[-1][1])  # the selectors end on sc-2 / score-3
    assert shown["feedbackItemsByScorecard"] == str(
        sum(1 for r in feedback if r["scorecardId"] == last[0])
    )
    assert shown["feedbackItemsByScore"] == str(sum(1 for r in feedback if r["scoreId"] == last[1]))

    # Hover: every 15-minute slot of every chart tells its time, count and errors.
    _show_size(page, 15)
    hovered = _check_hover(stack, page)
    assert hovered == (len(PLAIN_TYPES) + len(SCOPED_TYPES)) * 12

    # Since the first record: the axis starts at the earliest stored bucket.
    _choose(page, "#range", "first")
    first = min(m["timeRangeStart"] for m in stack.store.all_metrics(ACCOUNT))
    assert _view(page)["start"] == first
    checked += _check_against_store_and_truth(stack, page)

    # The mapping's activity: every table was delivered, nothing waits or failed.
    activity = page.evaluate("() => ({...document.querySelector('#freshness').dataset})")
    assert activity["mapping"] == "on" and activity["pending"] == "0"
    assert activity["failed"] == "0" and int(activity["invocations"]) >= 7
    assert "buckets are current" in page.text_content("#freshness")
    assert "Item" in page.text_content("#activity tr[data-model='Item']")

    # Live: more records, no reload; the page catches up by itself.
    _choose(page, "#range", "180")
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
    checked += _check_against_store_and_truth(stack, page)
    print(f"bars checked against the stored buckets: {checked}; slots hovered: {hovered}")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("METRICS_AGG_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)

    # The key travelled only as a header: never in a URL, never in a log line.
    assert urls and not any(stack.api_key in u for u in urls)
    assert stack.api_key not in caplog.text


def _old_buckets() -> list[dict[str, Any]]:
    """Three items on 2024-05-01 (10:07, 10:07, 10:41) at every size, as the aggregator
    stores them."""
    rows = []
    for start, minutes, count in (
        ("10:07", 1, 2),
        ("10:41", 1, 1),
        ("10:05", 5, 2),
        ("10:40", 5, 1),
        ("10:00", 15, 2),
        ("10:30", 15, 1),
        ("10:00", 60, 3),
    ):
        begin = datetime.fromisoformat(f"2024-05-01T{start}:00+00:00")
        rows.append(
            {
                "accountId": ACCOUNT,
                "compositeKey": f"items#{begin:%Y-%m-%dT%H:%M:%SZ}#{minutes}",
                "recordType": "items",
                "timeRangeStart": f"{begin:%Y-%m-%dT%H:%M:%SZ}",
                "timeRangeEnd": f"{begin + timedelta(minutes=minutes):%Y-%m-%dT%H:%M:%SZ}",
                "numberOfMinutes": minutes,
                "count": count,
                "complete": True,
                "createdAt": "2024-05-01T11:00:05.000000Z",
                "updatedAt": "2024-05-01T11:00:05.000000Z",
            }
        )
    return rows


def test_dashboard_says_when_this_server_does_not_deliver(make_local_stack: Any, page: Any) -> None:
    """`serve --no-mapping` on a database whose buckets are two years old: the mapping panel
    says this server delivers nothing, and "fit the data" shows the day the data has."""
    key = f"browser-key-{uuid.uuid4().hex}"
    server: LocalStack = make_local_stack(mapping=False, api_key=key)  # serve --no-mapping
    server.store.bulk_insert("AggregatedMetrics", _old_buckets())
    ts = iso(datetime.now(UTC))
    server.store.bulk_insert(
        "Item", [{"id": "i1", "accountId": ACCOUNT, "createdAt": ts, "updatedAt": ts}], stream=True
    )
    _connect(page, server.endpoint.rsplit("/", 1)[0], key)
    activity = page.evaluate("() => ({...document.querySelector('#freshness').dataset})")
    assert activity["mapping"] == "off" and activity["pending"] == "1"
    text = page.text_content("#freshness")
    assert "--no-mapping" in text and "1 stream record waiting" in text
    assert "current" not in text and "off in this server" in page.text_content("#activity h2")

    # Nothing in the last 24 h: the fitted axis runs over the stored hour, in 1-minute bars.
    _drawn(page)
    view = _view(page)
    assert (view["range"], view["size"]) == ("data", "1")
    assert (view["start"], view["end"]) == ("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z")
    items = next(c for c in _shown(page) if c["recordType"] == "items")
    assert len(items["bars"]) == 60 and items["count"] == "3"
    assert {b[0]: b[1] for b in items["bars"] if b[1]} == {
        "2024-05-01T10:07:00Z": 2,
        "2024-05-01T10:41:00Z": 1,
    }
    assert "nothing in the last 24 h" in page.text_content("#shown")
    _show_size(page, 60)
    items = next(c for c in _shown(page) if c["recordType"] == "items")
    assert items["bars"] == [["2024-05-01T10:00:00Z", 3, ""]]
