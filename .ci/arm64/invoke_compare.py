"""One stream invocation per layer/interpreter, each into a fresh local server: same buckets?

    python invoke_compare.py TASK_DIR LABEL:COUNTER:LAYER_PYTHON_DIR:COMMAND...

Runs natively in the project's environment. For each run it starts the local server
(`metrics-agg serve`'s LocalStack, on 127.0.0.1, without its stream mapping, so the only
writer is the handler under test), stores the same Items, and runs the handler in COMMAND
(an interpreter, e.g. `qemu-aarch64 -L ROOTFS ROOTFS/usr/bin/python3.11`; words split on
spaces) on their stream batch, with METRICS_AGG_COUNTER=COUNTER unless COUNTER is `auto`.
Every run must store the same AggregatedMetrics counts, and the right totals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metrics_agg.local.server import LocalStack

ACCOUNT = "acct-arm64-check"
CHILD = Path(__file__).with_name("invoke_child.py")


@dataclass(frozen=True)
class Run:
    label: str
    counter: str  # "auto" (the compiled counter must load) or "python"
    layer: str
    command: list[str]


def parse(spec: str) -> Run:
    label, counter, layer, command = spec.split(":", 3)
    return Run(label, counter, layer, command.split())


def items(now: datetime) -> list[dict[str, Any]]:
    """Items of the last two hours in mixed categories, a few minutes apart."""
    out: list[dict[str, Any]] = []
    kinds = [("prediction", 9), ("evaluation", 6), (None, 5)]
    n = 0
    for kind, count in kinds:
        for _ in range(count):
            n += 1
            at = (now - timedelta(minutes=5 * n + 1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            item: dict[str, Any] = {"id": f"arm64-{n}", "accountId": ACCOUNT, "createdAt": at}
            item["updatedAt"] = at
            if kind is not None:
                item["createdByType"] = kind
            out.append(item)
    return out


def invoke(run: Run, task: str, seeded: list[dict[str, Any]], work: Path) -> dict[str, int]:
    with LocalStack(work / f"{run.label}.sqlite3", mapping=False) as stack:
        for item in seeded:
            stack.store.create("Item", dict(item))
        event = work / f"{run.label}.event.json"
        event.write_text(json.dumps({"Records": stack.store.read_stream("Item")}))
        result = work / f"{run.label}.result.json"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "LANG": "C.UTF-8",
            "PLEXUS_API_URL": stack.endpoint,
            "PLEXUS_API_KEY": stack.api_key,
            "AWS_LAMBDA_FUNCTION_NAME": "metrics-agg-arm64-check",
            "AWS_REGION": "us-east-1",
            "LOG_LEVEL": "WARNING",
        }
        if run.counter != "auto":
            env["METRICS_AGG_COUNTER"] = run.counter
        argv = [*run.command, "-I", str(CHILD), run.layer, task, str(event), str(result)]
        began = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        took = time.monotonic() - began
        if done.returncode != 0:
            sys.exit(f"{run.label}: handler failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        got = json.loads(result.read_text())
        want_backend = "rust" if run.counter == "auto" else run.counter
        problems = []
        if got["response"] != {"batchItemFailures": []}:
            problems.append(f"response {got['response']}")
        if got["backend"] != want_backend:
            problems.append(f"counter backend {got['backend']}, expected {want_backend}")
        if not got["metrics_agg"].startswith(run.layer):
            problems.append(f"metrics_agg from {got['metrics_agg']}, not the layer")
        if problems:
            sys.exit(f"{run.label}: " + "; ".join(problems))
        stored = {
            m["compositeKey"]: m["count"] for m in stack.store.all_metrics(ACCOUNT) if m["count"]
        }
        print(
            f"invoke: {run.label}: {got['machine']} CPython {got['python']}, counter "
            f"{got['backend']}, {len(stored)} non-empty buckets stored, {took:.1f} s"
        )
        return stored


def check_totals(stored: dict[str, int], seeded: list[dict[str, Any]]) -> None:
    kinds = Counter(item.get("createdByType") or "none" for item in seeded)
    for record_type, expected in (
        ("items", len(seeded)),
        ("predictionItems", kinds["prediction"]),
        ("evaluationItems", kinds["evaluation"]),
    ):
        for size in (1, 5, 15, 60):
            total = sum(
                count
                for key, count in stored.items()
                if key.startswith(f"{record_type}#") and key.endswith(f"#{size}")
            )
            if total != expected:
                sys.exit(
                    f"invoke: {record_type} {size}-minute buckets sum to {total}, not {expected}"
                )


def main() -> None:
    task, runs = sys.argv[1], [parse(spec) for spec in sys.argv[2:]]
    seeded = items(datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="metrics-agg-invoke.") as tmp:
        results = {run.label: invoke(run, task, seeded, Path(tmp)) for run in runs}
    first, reference = next(iter(results.items()))
    check_totals(reference, seeded)
    for label, stored in results.items():
        if stored != reference:
            diff = sorted(set(stored.items()) ^ set(reference.items()))[:20]
            sys.exit(f"invoke: {label} stored other buckets than {first}: {diff}")
    print(
        f"invoke: {len(seeded)} stream records -> the same {len(reference)} buckets "
        f"({sum(reference.values())} counts) from all {len(results)} runs: {', '.join(results)}"
    )


if __name__ == "__main__":
    main()
