"""`invoke`, `recount`, `verify`, `show` against the local stack, plus the rendering helpers."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metrics_agg.errors import ConfigError
from metrics_agg.local.cli import _common, _demo, _invoke, _recount, _show
from metrics_agg.local.render import Column, Progress, format_duration, format_table, sparkline
from metrics_agg.local.server import LocalClient, LocalStack

ACCOUNT = "acct-cli"


def run(argv: list[str]) -> int:
    """Parse with the commands of this workstream only, then run the chosen one."""
    parser = argparse.ArgumentParser(prog="metrics-agg")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (_invoke, _recount, _show):
        module.register(sub)
    _demo.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    with LocalStack(tmp_path / "cli.sqlite3", mapping=False) as s:
        monkeypatch.setenv("PLEXUS_API_URL", s.endpoint)
        monkeypatch.setenv("PLEXUS_API_KEY", s.api_key)
        yield s


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _seed(stack: LocalStack, n: int = 6) -> Path:
    """n items over the last minutes, and their stream records as an event file."""
    now = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=1)
    with LocalClient(stack.endpoint, stack.api_key) as api:
        for i in range(n):
            api.create(
                "Item",
                accountId=ACCOUNT,
                createdAt=_iso(now - timedelta(minutes=i)),
                createdByType="prediction" if i % 2 else "evaluation",
            )
    path = Path(stack.db_path).parent / "event.json"
    path.write_text(json.dumps({"Records": stack.store.read_stream("Item", 0, 100)}))
    return path


# --------------------------------------------------------------------------- commands


def test_invoke_prints_the_response_as_the_last_line(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    event = _seed(stack)
    assert run(["invoke", str(event)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"batchItemFailures": []}
    assert sum(1 for m in stack.store.all_metrics(ACCOUNT) if m["count"]) > 0


def test_invoke_explains_a_bad_event_file(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["invoke", str(tmp_path / "absent.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert run(["invoke", str(bad)]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_verify_show_and_recount_round_trip(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["invoke", str(_seed(stack))])
    capsys.readouterr()

    assert run(["verify", "--account", ACCOUNT, "--model", "Item", "--since", "2h"]) == 0
    assert capsys.readouterr().out.startswith("✓ ")

    assert run(["show", "--account", ACCOUNT, "--record-type", "items"]) == 0
    out = capsys.readouterr().out
    assert "items · account acct-cli" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    assert " 6 │" in out  # the 60-minute total (or a bucket) shows the six items

    assert run(["show", "--account", ACCOUNT, "--record-type", "items", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    hourly = [b["count"] for b in shown["buckets"] if b["numberOfMinutes"] == 60]
    assert sum(hourly) == 6
    assert {b["recordType"] for b in shown["buckets"]} == {"items"}

    # Corrupt one stored bucket: verify reports it and fails; recount repairs it.
    victim = next(
        m
        for m in stack.store.all_metrics(ACCOUNT)
        if m["recordType"] == "items" and m["numberOfMinutes"] == 60 and m["count"]
    )
    stack.store.update("AggregatedMetrics", [ACCOUNT, victim["compositeKey"]], {"count": 99})
    assert run(["verify", "--account", ACCOUNT, "--since", "2h"]) == 1
    out = capsys.readouterr().out
    assert "99" in out and "60 min" in out and "differ" in out

    start = victim["timeRangeStart"]
    end = victim["timeRangeEnd"]
    base = ["recount", "--account", ACCOUNT, "--model", "Item", "--start", start, "--end", end]
    assert run([*base, "--dry-run"]) == 0
    assert "would be written (dry run)" in capsys.readouterr().out
    assert stack.store.get("AggregatedMetrics", [ACCOUNT, victim["compositeKey"]])["count"] == 99
    assert run(base) == 0
    assert "records counted" in capsys.readouterr().out
    assert run(["verify", "--account", ACCOUNT, "--since", "2h"]) == 0


def test_no_endpoint_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("PLEXUS_API_URL", "GRAPHQL_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert run(["show", "--account", "a", "--record-type", "items"]) == 2
    err = capsys.readouterr().err
    assert "metrics-agg serve" in err and "PLEXUS_API_URL" in err


def test_unreachable_endpoint_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METRICS_AGG_READ_PARALLELISM", "1")
    code = run(
        [
            "show",
            "--account",
            "a",
            "--record-type",
            "tasks",
            "--endpoint",
            "http://127.0.0.1:9/graphql",
            "--api-key",
            "k",
        ]
    )
    assert code == 2
    assert "metrics-agg serve" in capsys.readouterr().err


def test_flags_override_the_environment() -> None:
    args = argparse.Namespace(endpoint="http://h/graphql", api_key="flag")
    config = _common.config_from_args(
        args, {"PLEXUS_API_URL": "http://e/graphql", "PLEXUS_API_KEY": "env"}
    )
    assert (config.endpoint, config.api_key) == ("http://h/graphql", "flag")
    config = _common.config_from_args(
        argparse.Namespace(), {"GRAPHQL_ENDPOINT": "http://g", "GRAPHQL_API_KEY": "env"}
    )
    assert (config.endpoint, config.api_key) == ("http://g", "env")
    with pytest.raises(ConfigError, match="metrics-agg serve"):
        _common.config_from_args(argparse.Namespace(), {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1D", timedelta(days=1)),
    ],
)
def test_since_accepts_durations(text: str, expected: timedelta) -> None:
    assert _common.parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "0h", "2", "h", "2 hours", "-1h", "1m2h"])
def test_since_rejects_the_rest(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _common.parse_since(text)


def test_every_command_has_examples_and_environment_in_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("invoke", "recount", "verify", "show"):
        with pytest.raises(SystemExit):
            run([command, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text and "PLEXUS_API_KEY" in text and "shell history" in text
    with pytest.raises(SystemExit):
        run(["demo", "--help"])
    assert "examples:" in capsys.readouterr().out


# --------------------------------------------------------------------------- rendering


def test_table_aligns_numbers_right_and_text_left() -> None:
    text = format_table(
        [Column("name"), Column("count", ">")], [("a", 5), ("longer", 12345)], style="plain"
    )
    assert text.splitlines() == [
        "name   | count",
        "-------+------",
        "a      |     5",
        "longer | 12345",
    ]


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="2 cells"):
        format_table(["a", "b", "c"], [(1, 2)])


def test_sparkline_keeps_zero_distinct_and_sums_when_narrowed() -> None:
    line = sparkline([0, 1, 100])
    assert line[0] == "▁" and line[1] != "▁" and line[2] == "█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""
    assert sparkline([1] * 10, width=5) == "█████"  # pairs summed: all equal
    assert sparkline([0, 9], ascii_only=True) == "_@"


def test_durations_always_carry_a_unit() -> None:
    assert [format_duration(s) for s in (0.0123, 1.5, 75, 3720)] == [
        "12 ms",
        "1.5 s",
        "1 min 15 s",
        "1 h 02 min",
    ]


def test_progress_is_silent_off_a_terminal() -> None:
    sink = io.StringIO()
    with Progress("work", total=10, stream=sink) as bar:
        bar.advance(5)
    assert sink.getvalue() == ""
    sink = io.StringIO()
    with Progress("work", total=10, stream=sink, enabled=True) as bar:
        bar.advance(5)
        assert "50%" in bar.render()
    assert sink.getvalue().endswith("\r")  # erased on exit
