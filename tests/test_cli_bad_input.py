"""A user's mistake gets one clear line and exit status 2, never a traceback (issue 11).

Every command is run through the real entry point (`metrics_agg.local.cli.main`) with the
mistakes a new user makes: wrong dates, a missing file, an unreachable server, a wrong key,
a database path that cannot be opened, the same seed twice, a missing extra.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from metrics_agg.local.cli import main
from metrics_agg.local.server import LocalStack

W = ["--start", "2024-05-01T00:00Z", "--end", "2024-05-01T01:00Z"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv``; it must exit 2 with exactly one line on stderr and no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("metrics-agg"), err
    return err


@pytest.fixture(autouse=True)
def _no_ambient_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PLEXUS_API_URL", "GRAPHQL_ENDPOINT", "PLEXUS_API_KEY", "GRAPHQL_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "argv, says",
    [
        (
            ["count", "--start", "2024-13-01T00:00Z", "--end", "2024-05-01T01:00Z", "FILE"],
            "--start",
        ),
        (["count", "--start", "2024-05-01T02:00Z", "--end", "2024-05-01T01:00Z", "FILE"], "after"),
        (["count", *W, "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["count", *W, "--sizes", "0", "FILE"], "positive"),
        (["invoke", "no-such-event.json"], "no such file"),
        (["recount", "--account", "a", "--model", "Item", *W], "no GraphQL endpoint"),
        (["recount", "--account", "a", "--model", "Nope", *W], "--model"),
        (["recount", "--account", "a", "--model", "Item", "--start", "x", "--end", "y"], "--start"),
        (["verify", "--account", "a", "--since", "soon"], "--since"),
        (["verify", "--account", "a", "--endpoint", "localhost:8765/graphql"], "http://"),
        (["show", "--account", "a", "--record-type", "nope"], "--record-type"),
        (["demo", "--records", "0"], "--records"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], says: str
) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text('{"createdAt": "2024-05-01T00:01Z"}\n')
    argv = [str(records) if a == "FILE" else a for a in argv]
    assert says in _one_line_error(capsys, argv)


def test_bad_event_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "event.json"
    bad.write_text('{"Records": [')
    assert "not JSON" in _one_line_error(capsys, ["invoke", str(bad)])
    bad.write_text("[1, 2]")
    assert "JSON object" in _one_line_error(capsys, ["invoke", str(bad)])


@pytest.mark.parametrize(
    "command",
    [
        ["invoke", "EVENT"],
        ["recount", "--account", "a", "--model", "Item", *W],
        ["verify", "--account", "a"],
        ["show", "--account", "a", "--record-type", "items"],
    ],
)
def test_unreachable_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"Records": []}')
    argv = [str(event) if a == "EVENT" else a for a in command]
    endpoint = f"http://127.0.0.1:{_closed_port()}/graphql"
    err = _one_line_error(capsys, [*argv, "--endpoint", endpoint, "--api-key", "k"])
    assert f"cannot reach {endpoint}" in err and "metrics-agg serve" in err


def test_wrong_key_and_wrong_path(
    capsys: pytest.CaptureFixture[str], local_stack: LocalStack
) -> None:
    show = ["show", "--account", "a", "--record-type", "items", "--endpoint"]
    err = _one_line_error(capsys, [*show, local_stack.endpoint, "--api-key", "wrong-key"])
    assert "rejected the credentials" in err and "PLEXUS_API_KEY" in err
    assert "wrong-key" not in err  # the key itself is never echoed
    wrong_path = local_stack.endpoint.replace("/graphql", "/nothing-here")
    err = _one_line_error(capsys, [*show, wrong_path, "--api-key", local_stack.api_key])
    assert "no GraphQL API" in err


def test_seed_mistakes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    seed = ["seed", "--model", "Item", "--count", "20", *W]
    err = _one_line_error(
        capsys, [*seed, "--db", str(tmp_path / "no" / "x.sqlite"), "--account", "a"]
    )
    assert "cannot use the database" in err
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database, just some text that sqlite cannot read" * 50)
    err = _one_line_error(capsys, [*seed, "--db", str(not_a_db), "--account", "a"])
    assert "cannot use the database" in err
    assert _one_line_error(capsys, [*seed, "--db", str(db), "--account", "a", "--count", "-1"])
    assert "fractions" in _one_line_error(
        capsys, [*seed, "--db", str(db), "--account", "a", "--late-fraction", "2"]
    )

    # Two accounts, one default seed: different ids, both land.
    assert main([*seed, "--db", str(db), "--account", "a"]) == 0
    assert main([*seed, "--db", str(db), "--account", "b"]) == 0
    capsys.readouterr()
    # The same account and seed again: one line saying what to do, and nothing lost.
    err = _one_line_error(capsys, [*seed, "--db", str(db), "--account", "a"])
    assert "--seed" in err and "already" in err
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        item = next(t for t in tables if t.startswith("Item"))
        assert conn.execute(f'SELECT COUNT(*) FROM "{item}"').fetchone() == (40,)
    assert main([*seed, "--db", str(db), "--account", "a", "--seed", "1"]) == 0


def test_serve_on_a_path_that_cannot_be_opened(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("a file where a folder would be")
    argv = ["serve", "--db", str(tmp_path / "notes.txt" / "x.sqlite"), "--port", "0"]
    assert "cannot use the database" in _one_line_error(capsys, argv)


_WITHOUT_EXTRA = """
import sys
for name in ("ariadne", "uvicorn"):
    sys.modules[name] = None  # as if `pip install metrics-agg` without [local]
from metrics_agg.local.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--db", "x.sqlite", "--port", "0"],
        ["seed", "--db", "x.sqlite", "--account", "a", "--model", "Item", "--count", "1", *W],
        ["demo"],
    ],
)
def test_missing_local_extra(tmp_path: Path, argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "pip install 'metrics-agg[local]'" in err
    assert not (tmp_path / "x.sqlite").exists()  # nothing was started or written


def test_serve_never_prints_a_key_of_the_users_own(tmp_path: Path) -> None:
    """The export hint shows the well-known development key only; a chosen key is a secret."""
    secret = "s3cret-key-of-my-own"
    db = str(tmp_path / "a.sqlite3")
    argv = ["serve", "--db", db, "--port", "0", "--no-mapping", "--api-key", secret]
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrics_agg", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    out = "".join(lines)
    assert "PLEXUS_API_KEY=<your --api-key>" in out, out + err
    assert secret not in out + err
