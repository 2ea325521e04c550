"""The tooling of the emulated arm64 checks (.ci/arm64_checks.sh), checked natively.

The checks themselves run the arm64 layer under qemu in CI; here: the layer builder refuses
what it cannot build, the parity corpus is the same on every run (so a saved x86_64 result
stays comparable), and the comparison does fail on a single differing count.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_counter import require_rust

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".ci" / "arm64"


def _build_layer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "lambda" / "build_layer.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "3.10"], "--python must be 3.11, 3.12 or 3.13"),
        (["--python"], "--python needs a value"),
        (["--wheel", "/nonexistent/metrics_agg.whl"], "--wheel: no such file"),
        (["--out"], "--out needs a value"),
    ],
)
def test_build_layer_refuses_what_it_cannot_build(args: list[str], message: str) -> None:
    done = _build_layer(*args)
    assert done.returncode == 1
    assert message in done.stderr


def _corpus(path: Path, examples: int) -> None:
    argv = [sys.executable, str(TOOLS / "counter_corpus.py"), str(path), str(examples)]
    subprocess.run(argv, check=True, capture_output=True, timeout=300, cwd=ROOT)


def test_the_parity_corpus_is_the_same_every_run(tmp_path: Path) -> None:
    _corpus(tmp_path / "a.pickle", 15)
    _corpus(tmp_path / "b.pickle", 15)
    assert (tmp_path / "a.pickle").read_bytes() == (tmp_path / "b.pickle").read_bytes()
    corpus = pickle.loads((tmp_path / "a.pickle").read_bytes())
    kinds = [case["kind"] for case in corpus]
    # 15 windows (each also as records), 15 texts, and the hand-written cases.
    assert kinds.count("records") == 15
    assert kinds.count("text") == 15
    assert kinds.count("buckets") > 15


def test_the_comparison_fails_on_one_differing_count(tmp_path: Path) -> None:
    require_rust()
    _corpus(tmp_path / "corpus.pickle", 15)
    replay = [sys.executable, "-I", str(TOOLS / "counter_replay.py"), str(ROOT / "python")]
    subprocess.run(
        [*replay, str(tmp_path / "corpus.pickle"), str(tmp_path / "ref.pickle")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    compare = [sys.executable, str(TOOLS / "counter_compare.py"), str(tmp_path / "ref.pickle")]
    same = subprocess.run([*compare, str(tmp_path / "ref.pickle")], capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert "cases identical" in same.stdout

    data = pickle.loads((tmp_path / "ref.pickle").read_bytes())
    for result in data["results"]["rust"]:
        if isinstance(result, list) and result[0][0]["processed"]:
            counts = result[0][0]["counts"]
            size = next(iter(counts))
            counts[size][next(i for i, n in enumerate(counts[size]) if n)] += 1
            break
    else:
        pytest.fail("no case of the corpus counted anything")
    (tmp_path / "other.pickle").write_bytes(pickle.dumps(data))
    differs = subprocess.run(
        [*compare, str(tmp_path / "other.pickle")], capture_output=True, text=True
    )
    assert differs.returncode == 1
    assert "differs" in differs.stderr
