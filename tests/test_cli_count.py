"""`metrics-agg count` on JSON-lines files and stdin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from metrics_agg.local.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "items.jsonl"
WINDOW = ["--start", "2024-05-07T12:00Z", "--end", "2024-05-07T14:00Z"]


def test_example_file_summary(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["count", str(EXAMPLE), *WINDOW, "--category-field", "createdByType", "--backend", backend]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "processed 300 · missing 3 · invalid 4 · outside window 3" in out
    assert "Cross-check: 300 in 1-min buckets vs 300 records ✓" in out
    assert f"({backend} counter)" in out
    for size, buckets in ((1, 120), (5, 24), (15, 8), (60, 2)):
        assert f"/{buckets}" in out and f"{size}-min" in out
    assert "prediction" in out and "(none)" in out
    assert "'yesterday'" in out


def test_json_has_every_bucket(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "count",
                str(EXAMPLE),
                *WINDOW,
                "--json",
                "--backend",
                backend,
                "--category-field",
                "createdByType",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["window"] == {"start": "2024-05-07T12:00:00Z", "end": "2024-05-07T14:00:00Z"}
    assert data["backend"] == backend
    assert [len(data["counts"][str(s)]) for s in (1, 5, 15, 60)] == [120, 24, 8, 2]
    assert all(sum(data["counts"][str(s)]) == data["processed"] == 300 for s in (1, 5, 15, 60))
    labels = {c["category"] for c in data["categories"]}
    assert labels == {"prediction", "evaluation", None}
    assert sum(sum(c["counts"]["60"]) for c in data["categories"]) == 300


def test_stdin_fields_sizes_and_bad_lines(
    backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"editedAt": "2024-05-07T12:01:00Z", "updatedAt": "2024-05-07T13:59:00Z"},
        {"editedAt": None, "updatedAt": "2024-05-07T13:59:00Z"},
        {"createdAt": "2024-05-07T12:00Z"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n{not json\n[1, 2]\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code = main(
        [
            "count",
            "-",
            *WINDOW,
            "--field",
            "editedAt,updatedAt",
            "--sizes",
            "30,60",
            "--json",
            "--backend",
            backend,
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (data["processed"], data["missing"], data["invalid"]) == (2, 1, 2)
    assert data["counts"] == {"30": [1, 0, 0, 1], "60": [1, 1]}
    assert data["invalid_examples"][0] == "'{not json'"


def test_cross_check_uses_smallest_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", str(EXAMPLE), *WINDOW, "--sizes", "15,60"]) == 0
    assert "Cross-check: 300 in 15-min buckets vs 300 records ✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*WINDOW, "--sizes", "0,60"], "positive whole minutes"),
        (["--start", "2024-05-07T14:00Z", "--end", "2024-05-07T12:00Z"], "must be after"),
    ],
)
def test_wrong_window_is_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["count", str(EXAMPLE), *args]) == 2
    assert message in capsys.readouterr().err


def test_an_unaligned_window_is_widened_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["count", str(EXAMPLE), "--start", "2024-05-07T12:05Z", "--end", "2024-05-07T14:00Z"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "window widened to whole hours: 2024-05-07T12:00:00Z to" in captured.err
    assert "in [2024-05-07T12:00:00Z, 2024-05-07T14:00:00Z)" in captured.out


def test_unreadable_file_and_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["count", str(tmp_path / "absent.jsonl"), *WINDOW]) == 2
    assert "absent.jsonl" in capsys.readouterr().err
    for bad in (["--start", "noon"], ["--sizes", "a,b"]):
        with pytest.raises(SystemExit) as exc:
            main(["count", str(EXAMPLE), *WINDOW, *bad])
        assert exc.value.code == 2
