"""Every way a person ends or misuses a command gives one line and a documented exit status.

Closed pipes (`| head`) and Ctrl-C are exercised on the real entry point in a subprocess
(a pipe whose reader has gone, SIGINT via `send_signal`); bad events, dates, windows,
endpoints and keys through `main`. None may print a traceback, a `--- Logging error ---`
block, an internal operation name or deployment advice meant for the Lambda.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metrics_agg.local.cli import main
from metrics_agg.local.cli._common import parse_when, widen
from metrics_agg.local.cli._invoke import event_problem, example_event
from metrics_agg.local.cli._show import render_show, undelivered_records
from metrics_agg.local.server import LocalClient, LocalStack, Store, seed_records
from truth_helpers import iso

ENTRY = "import sys; from metrics_agg.local.cli import main; sys.exit(main())"
BACKFILL_2H = ["backfill", "--local", "--account", "a", "--since", "2h"]
NOT_FOR_PEOPLE = ("Traceback", "Logging error", "Broken pipe", "AliasedLists", "start cold")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(stack: LocalStack | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLEXUS_", "GRAPHQL_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if stack is not None:
        env.update(PLEXUS_API_URL=stack.endpoint, PLEXUS_API_KEY=stack.api_key)
    return env


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-c", ENTRY, *argv]


def _clean(text: str) -> None:
    for bad in NOT_FOR_PEOPLE:
        assert bad not in text, text


@pytest.fixture(autouse=True)
def _no_ambient_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PLEXUS_API_URL", "GRAPHQL_ENDPOINT", "PLEXUS_API_KEY", "GRAPHQL_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    try:
        got = main(argv)
    except SystemExit as exc:
        got = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert got == code, (argv, err)
    _clean(err)
    assert len(err.splitlines()) == 1, err
    return err


def _seeded(stack: LocalStack, account: str = "acct-x", count: int = 200) -> None:
    now = datetime.now(UTC)
    seed_records(stack.store, "Item", account, count, now - timedelta(minutes=50), now)


# --------------------------------------------------------------------------- closed pipes


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    path = tmp_path / "ev.json"
    path.write_text(json.dumps(example_event("stream", "acct-x")))
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "--account", "acct-x", "--record-type", "items"],
        ["show", "--account", "acct-x", "--record-type", "items", "--json"],
        ["count", "EXAMPLES", "--start", "-30d", "--end", "now", "--json"],
        ["invoke", "EVENT"],
        ["demo", "--records", "20"],
    ],
    ids=["show", "show-json", "count-json", "invoke", "demo"],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(
    local_stack: LocalStack, event_file: Path, argv: list[str]
) -> None:
    _seeded(local_stack)
    examples = Path(__file__).parents[1] / "examples" / "items.jsonl"
    argv = [
        str(event_file) if a == "EVENT" else str(examples) if a == "EXAMPLES" else a for a in argv
    ]
    proc = subprocess.Popen(
        _cli(*argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(local_stack),
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line: like `| head -0`
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    _clean(err)


def test_head_through_a_shell_pipeline(local_stack: LocalStack, event_file: Path) -> None:
    _seeded(local_stack)
    cli = " ".join(f"'{a}'" for a in _cli())
    script = (
        "set -o pipefail; "
        f"{cli} show --account acct-x --record-type items | head -3; echo rc=$?; "
        f"{cli} invoke '{event_file}' | head -2; echo rc=$?"
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=_env(local_stack), timeout=120
    )
    _clean(done.stderr)
    out = done.stdout.splitlines()
    assert out[0].startswith("items · account acct-x")
    # Each is 0 when it finished writing before head left, 141 when head left first.
    assert {line for line in out if line.startswith("rc=")} <= {"rc=0", "rc=141"}


# --------------------------------------------------------------------------- Ctrl-C


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, whatever this runner inherited.

    A shell starts a background job with SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler; a test that sends SIGINT must not depend on how pytest was
    started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen_interruptible(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        preexec_fn=_default_sigint,
    )


def _interrupt(
    argv: list[str], env: dict[str, str], when: Callable[[str], bool], on: str = "err"
) -> tuple[int, str, str]:
    """Start ``argv``, wait for a line that ``when`` accepts on stdout/stderr, send SIGINT."""
    proc = _popen_interruptible(_cli(*argv), env)
    watched = proc.stderr if on == "err" else proc.stdout
    assert watched is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    for line in watched:
        seen.append(line)
        if when(line) or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if on == "err":
        err = "".join(seen) + err
    else:
        out = "".join(seen) + out
    return proc.returncode, out, err


def test_ctrl_c_in_backfill_says_how_to_resume(
    make_local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = make_local_stack(mapping=False)  # nothing consumes the units: it waits
    argv = [*BACKFILL_2H, "--no-sizing"]
    code, _, err = _interrupt(
        [*argv, "--journal", str(tmp_path / "j.jsonl")],
        _env(stack),
        lambda line: line.startswith("backfill "),
    )
    assert code == 130, err
    _clean(err)
    assert err.strip().splitlines()[-1] == (
        "metrics-agg backfill: interrupted; resume with the same command: the journal keeps "
        "the units sent and finished"
    )


def test_ctrl_c_in_seed_and_show(
    make_local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    db = tmp_path / "big.sqlite3"
    seed = ["seed", "--db", str(db), "--account", "a", "--model", "Item", "--count", "3000000"]
    code, _, err = _interrupt(
        [*seed, "--start", "-2h", "--end", "now"], _env(), lambda line: "seeding" in line
    )
    assert code == 130, err
    _clean(err)
    assert err.strip().splitlines()[-1].startswith("metrics-agg seed: interrupted; the records")

    slow = make_local_stack(latency_ms=5000)
    proc = _popen_interruptible(
        _cli("show", "--account", "a", "--record-type", "items"), _env(slow)
    )
    time.sleep(2.0)  # importing and the first request (5 s of added latency) under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    _clean(err)
    assert err.strip().splitlines()[-1] == "metrics-agg show: interrupted"


def test_ctrl_c_in_the_demo_keeps_the_aggregators_log_in_its_file(tmp_path: Path) -> None:
    code, out, err = _interrupt(
        ["demo", "--records", "3000", "--keep", str(tmp_path)],
        _env(),
        lambda line: line.startswith("[1/5]"),  # writes under way, the mapping running
        on="out",
    )
    assert code == 130, err
    _clean(out + err)
    assert err.strip().splitlines() == ["metrics-agg demo: interrupted"]
    # The aggregator's lines (one per invocation) went to the file, none to the terminal.
    assert "Affected pairs" not in out + err
    assert "[3/5]" not in out


# --------------------------------------------------------------------------- invoke


@pytest.mark.parametrize(
    "event, says",
    [
        ({}, "not an event the handler knows"),
        (
            {
                "recount": {
                    "accountId": "a",
                    "model": "Items",
                    "start": "2024-05-01T00:00Z",
                    "end": "2024-05-01T01:00Z",
                }
            },
            "unknown model 'Items'",
        ),
        (
            {
                "recount": {
                    "accountId": "a",
                    "model": "Item",
                    "start": "2024-05-01",
                    "end": "2024-05-02T00:00Z",
                }
            },
            "write 2024-05-01T00:00Z",
        ),
        (
            {
                "recount": {
                    "model": "Item",
                    "start": "2024-05-01T00:00Z",
                    "end": "2024-05-01T01:00Z",
                }
            },
            "lacks 'accountId'",
        ),
        ({"Records": "x"}, "must be a list"),
        ([1], "JSON object"),
    ],
)
def test_invoke_names_what_is_wrong_with_the_event(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, event: object, says: str
) -> None:
    path = tmp_path / "ev.json"
    path.write_text(json.dumps(event))
    # No endpoint is configured: the event is refused before any connection is tried.
    assert says in _one_line(capsys, ["invoke", str(path)])


def test_invoke_with_a_directory_or_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert "is a directory" in _one_line(capsys, ["invoke", str(tmp_path)])
    assert "--example" in _one_line(capsys, ["invoke"])


def test_the_help_examples_of_invoke_count_records(
    local_stack: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _seeded(local_stack, "demo-account", 150)
    for kind in ("recount", "stream", "scheduled"):
        assert main(["invoke", "--example", kind]) == 0
        text = capsys.readouterr().out
        assert event_problem(json.loads(text)) is None
        (tmp_path / f"{kind}.json").write_text(text)
    connection = ["--endpoint", local_stack.endpoint, "--api-key", local_stack.api_key]
    assert main(["invoke", str(tmp_path / "recount.json"), *connection]) == 0
    response = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert response["recordsCounted"] == 150
    assert main(["invoke", str(tmp_path / "stream.json"), *connection]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"batchItemFailures": []}


# --------------------------------------------------------------------------- times and windows


def test_times_take_dates_relative_forms_and_now() -> None:
    now = datetime(2026, 3, 4, 10, 17, 30, tzinfo=UTC)
    assert parse_when("2024-05-01", now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("-2h", now) == now - timedelta(hours=2)
    assert parse_when("-1h30m", now) == now - timedelta(minutes=90)
    assert parse_when("-30d", now) == now - timedelta(days=30)
    assert parse_when("now", now) == now
    assert parse_when("2024-05-01T09:00Z", now) == datetime(2024, 5, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="2024-05-01T12:00Z, a date"):
        parse_when("yesterday", now)
    start, end, note = widen(now - timedelta(hours=2), now, 60)
    assert (start, end) == (
        datetime(2026, 3, 4, 8, tzinfo=UTC),
        datetime(2026, 3, 4, 11, tzinfo=UTC),
    )
    assert note == "window widened to whole hours: 2026-03-04T08:00:00Z to 2026-03-04T11:00:00Z"
    assert widen(start, end, 60)[2] is None


def test_count_widens_an_unaligned_window_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = tmp_path / "r.jsonl"
    records.write_text('{"createdAt": "2024-05-01T00:31Z"}\n{"createdAt": "2024-05-01T23:59Z"}\n')
    assert (
        main(["count", str(records), "--start", "2024-05-01T00:07Z", "--end", "2024-05-01T02:00Z"])
        == 0
    )
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "metrics-agg count: window widened to whole hours: 2024-05-01T00:00:00Z to "
        "2024-05-01T02:00:00Z"
    )
    assert "window_start" not in captured.out + captured.err
    assert main(["count", str(records), "--start", "2024-05-01", "--end", "2024-05-02"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "processed 2" in captured.out
    assert main(["count", str(records), "--start", "-2h", "--end", "now", "--json"]) == 0
    assert "window widened" in capsys.readouterr().err
    assert "directory" in _one_line(
        capsys, ["count", str(tmp_path), "--start", "2024-05-01", "--end", "2024-05-02"]
    )


def test_recount_says_when_it_widened(
    local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["recount", "--account", "a", "--model", "Item", "--start", "-90m", "--end", "now"]
    assert main([*argv, "--endpoint", local_stack.endpoint, "--api-key", local_stack.api_key]) == 0
    assert "window widened to whole hours" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip().startswith("metrics-agg 0.")


# --------------------------------------------------------------------------- messages


def test_wrong_key_page_url_and_server_down_read_as_one_sentence_for_a_cli_user(
    local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    show = ["show", "--account", "a", "--record-type", "items", "--endpoint"]
    err = _one_line(capsys, [*show, local_stack.endpoint, "--api-key", "nope"])
    assert err == (
        f"metrics-agg show: {local_stack.endpoint} rejected the credentials with HTTP 401: "
        "set a current key in PLEXUS_API_KEY or pass --api-key"
    )
    page = local_stack.endpoint.removesuffix("graphql")
    err = _one_line(capsys, [*show, page, "--api-key", local_stack.api_key])
    assert "no GraphQL API at" in err and "HTTP 405" in err and "/graphql URL" in err
    down = f"http://127.0.0.1:{_closed_port()}/graphql"
    backfill = [
        *BACKFILL_2H,
        "--endpoint",
        down,
        "--api-key",
        "k",
    ]
    err = _one_line(capsys, backfill)
    assert err.startswith(f"metrics-agg backfill: cannot reach {down}") and "is it up" in err
    for text in (err,):
        assert "((" not in text and ".." not in text


def test_verbose_does_not_print_the_http_librarys_retry_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}/graphql"
    main(
        [
            "-v",
            "show",
            "--account",
            "a",
            "--record-type",
            "items",
            "--endpoint",
            down,
            "--api-key",
            "k",
        ]
    )
    err = capsys.readouterr().err
    assert "Retry(" not in err and "cannot reach" in err


# --------------------------------------------------------------------------- show


def test_show_caps_its_table_and_titles_the_end_date() -> None:
    now = datetime(2026, 3, 4, 10, 17, tzinfo=UTC)
    start = now.replace(minute=0) - timedelta(days=10000)
    text = render_show("a", "items", [], start=start, end=now, now=now)
    lines = text.splitlines()
    assert len(lines) < 70
    assert lines[0].endswith("→ 2026-03-04 10:17 UTC") and str(start.year) in lines[0]
    assert "the newest 48 rows; 239,9" in text


def test_show_says_when_the_stream_is_still_delivering(
    local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    _seeded(local_stack, count=300)  # stream records written; this stack has no mapping
    assert undelivered_records(local_stack.endpoint, local_stack.api_key) == 300
    assert undelivered_records("https://example.invalid/graphql", "k", timeout=0.2) == 0
    argv = ["show", "--account", "acct-x", "--record-type", "items", "--endpoint"]
    assert main([*argv, local_stack.endpoint, "--api-key", local_stack.api_key]) == 0
    assert "still catching up: 300 records not yet delivered" in capsys.readouterr().err


# --------------------------------------------------------------------------- serve


def _serve(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = _popen_interruptible(_cli("serve", "--port", "0", *argv), env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "local AppSync on" in first, first + (proc.stderr.read() if proc.stderr else "")
    return proc, first.split()[4]


def test_serve_creates_the_folder_and_runs_backfill_units_without_the_mapping(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo-data" / "nested" / "demo.sqlite3"
    proc, endpoint = _serve(["--db", str(db), "--no-mapping"], _env())
    try:
        assert db.parent.is_dir()
        done = subprocess.run(
            _cli(
                *BACKFILL_2H,
                "--models",
                "Item",
                "--no-sizing",
                "--journal",
                str(tmp_path / "j.jsonl"),
                "--endpoint",
                endpoint,
                "--api-key",
                "local-dev-key",
            ),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        _clean(done.stderr)
        assert done.returncode == 0, done.stderr + done.stdout
        assert "0 failed" in done.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_serve_with_sandboxes_delivers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "sandboxed.sqlite3"
    proc, endpoint = _serve(["--db", str(db), "--sandboxes", "1", "--batch-window", "0.1"], _env())
    assert proc.stdout is not None
    banner = [proc.stdout.readline()]  # the rest of its startup lines, read before any wait
    while banner[-1] and "Ctrl-C to stop" not in banner[-1]:
        banner.append(proc.stdout.readline())
    assert any("in Lambda-like sandbox processes, 1 warm" in line for line in banner), banner
    try:
        with LocalClient(endpoint, "local-dev-key") as api:
            api.create("Item", accountId="acct-sb", createdAt=iso(datetime.now(UTC)))
        deadline = time.monotonic() + 60
        store = Store(db)
        try:
            while not any(m["count"] for m in store.all_metrics("acct-sb")):
                assert time.monotonic() < deadline, "the sandboxed handler wrote no bucket"
                time.sleep(0.1)
        finally:
            store.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err + out


# --------------------------------------------------------------------------- help


def test_every_command_has_examples_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = ["count", "serve", "seed", "invoke", "recount", "verify", "backfill", "show", "demo"]
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text, command
    with pytest.raises(SystemExit):
        main(["seed", "--help"])
    assert "--start -1h --end now" in capsys.readouterr().out
