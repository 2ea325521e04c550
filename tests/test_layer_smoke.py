"""The Lambda layer runs where a Lambda would (issue 5, item 3).

A fresh CPython 3.12 virtual environment holds only boto3/botocore (with urllib3 1.26, as
the Lambda runtime may), never this project or a Rust toolchain. The layer zip is unzipped
and its ``python/`` folder put on ``sys.path`` ahead of that environment's site-packages,
the way Lambda orders ``/var/task``, ``/opt/python`` and the runtime; ``lambda/function/handler.py``
is copied alone into a task folder. The handler then runs on a stream event against the
local server (started here, from the project's environment, without its mapping): first
with the compiled counter, then with the compiled module deleted from a copy of the layer.
Both runs must store the same buckets, and the right ones.

Needs ``dist/metrics-agg-layer-x86_64.zip`` (``bash lambda/build_layer.sh``): skipped
without it unless ``METRICS_AGG_REQUIRE_LAYER`` is set, as `.ci/run` does; then it fails.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from layout_rules import is_local_tooling, runtime_sources
from metrics_agg.local.server import LocalStack
from metrics_agg.local.server.stack import BACKFILL_QUEUE

ROOT = Path(__file__).resolve().parents[1]
LAYER_ZIP = ROOT / "dist" / "metrics-agg-layer-x86_64.zip"
REQUIRED = bool(os.environ.get("METRICS_AGG_REQUIRE_LAYER"))
ACCOUNT = "acct-layer-smoke"

# Runs inside the layer's interpreter: argv = layer dir, task dir, event file, result file.
CHILD = r"""
import json, sys, time
layer, task, event_path, result_path = sys.argv[1:5]
sys.path[:0] = [task, layer]  # Lambda: /var/task, /opt/python, then the runtime's packages

import handler  # cold start: config, logging, the package, the extension, SDK clients
from metrics_agg.aggregator.activity import activity_for
from metrics_agg.aggregator.recheck import sqs_sink
made_at_init = [
    sqs_sink(handler.CONFIG.recheck_queue_url, handler.CONFIG.recheck_delay_seconds)._client
    is not None,
    activity_for(handler.CONFIG).store._client is not None,
]

import botocore.session, metrics_agg, urllib3

class Context:
    function_name = "metrics-agg-smoke"
    aws_request_id = "smoke"
    def __init__(self):
        self._end = time.monotonic() + 120.0
    def get_remaining_time_in_millis(self):
        return int((self._end - time.monotonic()) * 1000)

with open(event_path) as f:
    event = json.load(f)
response = handler.handler(event, Context())
# The runtime's botocore must still work with the layer's urllib3 2.x ahead of its own.
botocore.session.get_session().create_client("sts", region_name="us-east-1")
with open(result_path, "w") as f:
    json.dump({
        "response": response,
        "made_at_init": made_at_init,
        "backend": metrics_agg.counter_backend(),
        "metrics_agg": metrics_agg.__file__,
        "urllib3": urllib3.__version__,
        "botocore": botocore.__file__,
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("cargo", "maturin")),
    }, f)
"""


def _python312() -> str | None:
    candidates = [os.environ.get("PYTHON312", ""), shutil.which("python3.12") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        try:
            subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (METRICS_AGG_REQUIRE_LAYER is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh 3.12 venv mimicking the Lambda runtime: boto3 and urllib3 1.26, nothing else."""
    if not LAYER_ZIP.exists():
        _unavailable(f"{LAYER_ZIP.relative_to(ROOT)} is absent: run `bash lambda/build_layer.sh`")
    python = _python312()
    if python is None:
        _unavailable("no CPython 3.12 interpreter (set PYTHON312)")
    assert python is not None
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check", "boto3", "urllib3<2"]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        _unavailable(f"cannot install boto3 into the runtime venv: {done.stderr[-500:]}")
    return venv


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory, runtime: Path) -> dict[str, Path]:
    """The unzipped layer, and a copy of it without the compiled counter."""
    base = tmp_path_factory.mktemp("layers")
    with zipfile.ZipFile(LAYER_ZIP) as z:
        z.extractall(base / "rust")
    shutil.copytree(base / "rust", base / "python")
    compiled = list((base / "python" / "python" / "metrics_agg").glob("_rust_counter*.so"))
    assert compiled, "the layer holds no compiled counter"
    for path in compiled:
        path.unlink()
    task = base / "task"
    task.mkdir()
    shutil.copy2(ROOT / "lambda" / "function" / "handler.py", task / "handler.py")
    return {"rust": base / "rust" / "python", "python": base / "python" / "python", "task": task}


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    # No mapping: the only handler that writes buckets is the one running from the layer.
    with LocalStack(tmp_path / "smoke.sqlite3", mapping=False) as s:
        yield s


def _seed(stack: LocalStack, now: datetime) -> dict[str, Any]:
    """A few Items of the last 40 minutes (mixed categories); their stream as one batch."""
    kinds = [("prediction", 5), ("evaluation", 3), (None, 2)]
    n = 0
    for kind, count in kinds:
        for _ in range(count):
            n += 1
            at = (now - timedelta(minutes=3 * n + 1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            item: dict[str, Any] = {"id": f"smoke-{n}", "accountId": ACCOUNT, "createdAt": at}
            item["updatedAt"] = at
            if kind is not None:
                item["createdByType"] = kind
            stack.store.create("Item", item)
    return {"Records": stack.store.read_stream("Item")}


def _run(runtime: Path, layer: Path, task: Path, stack: LocalStack, event_path: Path) -> Any:
    result = event_path.with_suffix(f".{layer.parent.name}.json")
    env = {
        "PATH": f"{runtime / 'bin'}:/usr/bin:/bin",  # no cargo, no project tools
        "HOME": str(event_path.parent),
        "LANG": "C.UTF-8",
        "PLEXUS_API_URL": stack.endpoint,
        "PLEXUS_API_KEY": stack.api_key,
        "AWS_LAMBDA_FUNCTION_NAME": "metrics-agg-smoke",
        "AWS_REGION": "us-east-1",
        "LOG_LEVEL": "INFO",
        # As the template wires them: the init makes both botocore clients
        # (`lambda_support.prepare`) with the runtime's botocore and the layer's urllib3.
        "METRICS_AGG_RECHECK_QUEUE_URL": stack.queue_url(BACKFILL_QUEUE),
        "METRICS_AGG_ACTIVITY_TABLE": stack.activity_table,
        "METRICS_AGG_ACTIVITY_ENDPOINT": stack.endpoint.rsplit("/graphql", 1)[0],
    }
    argv = [str(runtime / "bin" / "python"), "-I", "-c", CHILD, str(layer), str(task)]
    argv += [str(event_path), str(result)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"handler failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(result.read_text())


def _stored(stack: LocalStack) -> dict[str, int]:
    """compositeKey -> count of every non-empty bucket (`complete` moves with the clock)."""
    return {m["compositeKey"]: m["count"] for m in stack.store.all_metrics(ACCOUNT) if m["count"]}


def test_layer_runs_the_handler_with_and_without_the_compiled_counter(
    runtime: Path, layers: dict[str, Path], stack: LocalStack, tmp_path: Path
) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(_seed(stack, datetime.now(UTC))))
    seeded = Counter(
        (r.get("createdByType") or "none") for r in stack.store.all_records("Item", ACCOUNT)
    )

    rust = _run(runtime, layers["rust"], layers["task"], stack, event_path)
    assert rust["response"] == {"batchItemFailures": []}
    assert rust["backend"] == "rust"
    assert rust["metrics_agg"].startswith(str(layers["rust"]))
    assert rust["urllib3"].startswith("2.")
    assert str(runtime) in rust["botocore"]
    assert rust["modules"] == []
    assert rust["made_at_init"] == [True, True]
    # The stream units recorded their pairs in the activity table through that client.
    assert any(pair == f"Item#{ACCOUNT}" for _, pair in stack.store.activity_pairs())
    with_rust = _stored(stack)
    for record_type, expected in (
        ("items", sum(seeded.values())),
        ("predictionItems", seeded["prediction"]),
        ("evaluationItems", seeded["evaluation"]),
    ):
        for size in (1, 5, 15, 60):
            total = sum(
                count
                for key, count in with_rust.items()
                if key.startswith(f"{record_type}#") and key.endswith(f"#{size}")
            )
            assert total == expected, (record_type, size)

    for metric in stack.store.all_metrics(ACCOUNT):
        stack.store.delete("AggregatedMetrics", [ACCOUNT, metric["compositeKey"]])
    assert _stored(stack) == {}

    fallback = _run(runtime, layers["python"], layers["task"], stack, event_path)
    assert fallback["response"] == {"batchItemFailures": []}
    assert fallback["backend"] == "python"
    assert fallback["metrics_agg"].startswith(str(layers["python"]))
    assert _stored(stack) == with_rust


def test_layer_leaves_out_what_the_runtime_provides() -> None:
    if not LAYER_ZIP.exists():
        _unavailable(f"{LAYER_ZIP.relative_to(ROOT)} is absent: run `bash lambda/build_layer.sh`")
    with zipfile.ZipFile(LAYER_ZIP) as z:
        names = z.namelist()
    tops = {n.split("/")[1] for n in names if n.count("/") >= 2}
    assert {"metrics_agg", "sgqlc", "orjson", "urllib3"} <= tops
    assert not tops & {"botocore", "boto3", "bin"}
    assert all(n.startswith("python/") for n in names)
    assert not [n for n in names if "/tests/" in n]
    assert [n for n in names if n.startswith("python/metrics_agg/_rust_counter")]
    # Precompiled for the runtime (the layer is read-only there).
    assert "python/metrics_agg/aggregator/__pycache__/pipeline.cpython-312.pyc" in names


def test_the_template_deploys_the_layer_just_built() -> None:
    """build_layer.sh leaves its zip at the one path template.yaml deploys (issue 14, item 4)."""
    deploy_zip = ROOT / "dist" / "metrics-agg-layer.zip"
    if not LAYER_ZIP.exists() or not deploy_zip.exists():
        _unavailable("the layer is not built: run `bash lambda/build_layer.sh`")
    built = [p for p in (ROOT / "dist").glob("metrics-agg-layer-*.zip")]
    assert deploy_zip.read_bytes() in {p.read_bytes() for p in built}


def test_layer_holds_only_the_runtime() -> None:
    """The local tooling (server, demo, CLI, rendering, codegen) stays out of the layer."""
    if not LAYER_ZIP.exists():
        _unavailable(f"{LAYER_ZIP.relative_to(ROOT)} is absent: run `bash lambda/build_layer.sh`")
    with zipfile.ZipFile(LAYER_ZIP) as z:
        names = [n for n in z.namelist() if n.startswith("python/metrics_agg/")]
    tooling = [n for n in names if is_local_tooling(n.removeprefix("python/"))]
    assert not tooling, tooling[:10]
    # ... and every runtime module is there (the list comes from the source tree).
    shipped = {n.removeprefix("python/") for n in names if n.endswith(".py")}
    assert set(runtime_sources()) <= shipped
