"""The Lambda cold-start import cost of the handler from the built layer (docs/design.md §7).

    python scripts/measure_cold_start.py [--layer dist/metrics-agg-layer-x86_64.zip]
                                         [--runs 21] [--top 15] [--budget-ms 300]

Each run is a fresh CPython 3.12 (`-I -S`: only the unzipped layer's python/, the handler
and the standard library on sys.path, as in a Lambda with API-key auth) that times
- `import handler`: config, logging, the package, the compiled counter, the GraphQL client;
- the first invocation's lazy imports (sgqlc's operation builder, the generated schema and
  operations), paid once on the first event rather than at import.
It prints the median and range of each and of the whole process (interpreter start
included), then the heaviest imports of one `python -X importtime` run. Exits 1 when the
median `import handler` is over --budget-ms. The Lambda runtime has already imported json,
logging and friends before it loads the handler, so these figures err on the slow side.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAZY_MODULES = ("sgqlc.operation", "metrics_agg.graphql.schema", "metrics_agg.graphql.operations")

CHILD = r"""
import sys, time
t0 = time.perf_counter()
sys.path[:0] = sys.argv[1:3]
import handler
t1 = time.perf_counter()
for name in sys.argv[3].split(","):
    __import__(name)
t2 = time.perf_counter()
import json, metrics_agg
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "lazy_ms": (t2 - t1) * 1e3,
                  "backend": metrics_agg.counter_backend()}))
"""


def find_python312(explicit: str | None) -> str:
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [explicit or "", os.environ.get("PYTHON312", ""), shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return candidate
    raise SystemExit("measure_cold_start: no CPython 3.12 found (use --python or PYTHON312)")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(values):6.1f} ms"
        f"   (min {min(values):6.1f}, max {max(values):6.1f}, n={len(values)})"
    )


def importtime_top(argv: list[str], env: dict[str, str], top: int) -> list[str]:
    """The `top` imports with the largest cumulative time, from one -X importtime run."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    rows.sort(reverse=True)
    return [f"  {c / 1e3:7.1f} ms cumulative {s / 1e3:6.1f} ms self  {n}" for c, s, n in rows[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--layer", type=Path, default=ROOT / "dist/metrics-agg-layer-x86_64.zip")
    parser.add_argument("--python", help="CPython 3.12 (default: found on PATH or in pyenv)")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--top", type=int, default=15, help="heaviest imports to list")
    parser.add_argument("--budget-ms", type=float, default=300.0)
    args = parser.parse_args()
    if not args.layer.exists():
        raise SystemExit(f"measure_cold_start: {args.layer} is absent: bash lambda/build_layer.sh")
    python = find_python312(args.python)

    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        with zipfile.ZipFile(args.layer) as z:
            z.extractall(Path(tmp) / "opt")
        task = Path(tmp) / "task"
        task.mkdir()
        shutil.copy2(ROOT / "lambda" / "function" / "handler.py", task / "handler.py")
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PLEXUS_API_URL": "https://example.appsync-api.us-east-1.amazonaws.com/graphql",
            "PLEXUS_API_KEY": "da2-not-a-real-key",
            "AWS_LAMBDA_FUNCTION_NAME": "metrics-agg-cold-start",
            "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda
        }
        layer_python = str(Path(tmp) / "opt" / "python")
        argv = [python, "-I", "-S", "-c", CHILD, str(task), layer_python, ",".join(LAZY_MODULES)]
        process_ms, import_ms, lazy_ms, backends = [], [], [], set()
        for _ in range(args.runs):
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            process_ms.append((time.perf_counter() - t0) * 1e3)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            import_ms.append(result["import_ms"])
            lazy_ms.append(result["lazy_ms"])
            backends.add(result["backend"])
        heaviest = importtime_top(argv, env, args.top)

    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"layer {args.layer.name}, CPython {version}, counter backend {'/'.join(backends)}")
    print(summary("import handler", import_ms))
    print(summary("first invocation's lazy imports", lazy_ms))
    total_ms = [a + b for a, b in zip(import_ms, lazy_ms, strict=True)]
    print(summary("import + lazy imports", total_ms))
    print(summary("whole process (interpreter start)", process_ms))
    print(f"heaviest imports (one -X importtime run, top {args.top}):")
    print("\n".join(heaviest))
    median = statistics.median(import_ms)
    if median > args.budget_ms:
        print(f"over budget: median import {median:.1f} ms > {args.budget_ms:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
