"""Print the reliability figures of docs/reliability.md (issue 6).

    .venv/bin/python scripts/reliability.py            # fault table, 15 s load, concurrency
    .venv/bin/python scripts/reliability.py --long     # the same with a 2-minute load
    .venv/bin/python scripts/reliability.py --long --accounts 24 --writers 3 --pause 0.05
    .venv/bin/python scripts/reliability.py --load-seconds 300 --accounts 5 --writers 6
    .venv/bin/python scripts/reliability.py --load-only --load-seconds 30 --writers 2 \
        --pause 0.05 --batch-window 5      # one point of the batching trade-off

Every scenario runs against a fresh local stack (127.0.0.1, SQLite in a temp dir); the
truth is computed from the tables by tests/truth_helpers.truth (datetime, not the
package's counter). The sustained load runs the aggregator in Lambda-like sandbox
processes, apart from the server, as a deployment does (`--in-process`: in the mapping's
threads). Without `--pause` the writers write as fast as the local server acknowledges,
so the lag then measures the server's queue (docs/reliability.md). Exits 1 if any
scenario fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from metrics_agg.local.server import LocalClient, LocalStack
from metrics_agg.models import SOURCE_MODELS
from reliability_harness import (
    SCENARIOS,
    fault_table,
    run_concurrent,
    run_fault_scenario,
    run_load,
)
from truth_helpers import Stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="two minutes of sustained load")
    parser.add_argument("--load-seconds", type=float, default=None)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--faults-only", action="store_true")
    parser.add_argument("--load-only", action="store_true", help="only the sustained load")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds each writer waits between writes"
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        default=None,
        help="every table's batching window (default: the template's, 1 s)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the aggregator in the mapping's threads, in the server's process, instead of "
        "in Lambda-like sandbox processes (one warm per source table)",
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="first fill the previous and current hour with N records per model and account "
        "and recount them, so the load runs into busy hours",
    )
    args = parser.parse_args(argv)
    seconds = args.load_seconds or (120.0 if args.long else 15.0)
    logging.basicConfig(level=logging.CRITICAL)  # the table is the output
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.CRITICAL)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        made: list[LocalStack] = []

        def factory(**kwargs: Any) -> LocalStack:
            stack = LocalStack(Path(tmp) / f"stack-{len(made)}.sqlite3", **kwargs)
            made.append(stack)
            stack.start()
            return stack

        try:
            if not args.skip_faults and not args.load_only:
                stack = factory(mapping=False)
                with LocalClient(stack.endpoint, stack.api_key) as api:
                    stream = Stream(stack)
                    rows = [
                        run_fault_scenario(stack, api, stream, sc, i)
                        for i, sc in enumerate(SCENARIOS)
                    ]
                print("## Fault scenarios\n")
                print(fault_table(rows))
                for r in rows:
                    if not r.ok:
                        ok = False
                        print(
                            f"\nFAIL {r.scenario.name}: {r.partial[:5]} {r.final[:5]} "
                            f"{r.failures} != {r.expected_failures}"
                        )
            if args.faults_only:
                return 0 if ok else 1
            print(f"\n## Sustained load ({seconds:.0f} s)\n")
            options: dict[str, Any] = {"sandboxes": 0 if args.in_process else len(SOURCE_MODELS)}
            if args.batch_window is not None:
                options["batch_window"] = args.batch_window
            report = run_load(
                factory,
                seconds=seconds,
                accounts=args.accounts,
                writers=args.writers,
                pause=args.pause,
                busy=args.busy,
                **options,
            )
            print(report.summary())
            ok &= not report.mismatches and report.undelivered == 0
            ok &= report.drift_repaired == 0
            for m in report.mismatches[:20]:
                print("  mismatch:", m)
            if args.load_only:
                print("\nresult:", "OK" if ok else "FAILED")
                return 0 if ok else 1
            print("\n## Concurrent invocations on overlapping windows\n")
            stack = factory(mapping=False)
            with LocalClient(stack.endpoint, stack.api_key) as api:
                problems = run_concurrent(stack, api, rounds=4 if args.long else 2, threads=3)
            print("final state exact" if not problems else "\n".join(problems[:20]))
            ok &= not problems
        finally:
            for s in reversed(made):
                s.stop()
    print("\nresult:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
