"""Replay the parity corpus through one interpreter's counter, both backends (stdlib only).

Runs wherever the layer runs, e.g. an aarch64 CPython under qemu with the unzipped layer
on sys.path; the results are pickled for an exact comparison with another build's.

    python counter_replay.py LAYER_PYTHON_DIR CORPUS.pickle OUT.pickle
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import platform
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

layer, corpus_path, out_path = sys.argv[1:4]
sys.path.insert(0, layer)

import metrics_agg  # noqa: E402
from metrics_agg import _rust_counter as rust  # noqa: E402
from metrics_agg import count_buckets, count_records  # noqa: E402
from metrics_agg.counter import _pycounter  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOPS = {"python": _pycounter, "rust": rust}


def at(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


def run(case: dict[str, Any], backend: str) -> object:
    """The whole result (every field of CountResult, or the loop's raw tuple), or the error."""
    try:
        if case["kind"] == "text":
            start = case["start"]
            loop: Any = LOOPS[backend]
            return tuple(
                loop.count_strings(
                    [case["text"]], start_minute=start, end_minute=start + 1, sizes=[1]
                )
            )
        w0, w1 = at(case["start"]), at(case["end"])
        if case["kind"] == "records":
            got = [
                count_records(
                    case["records"],
                    w0,
                    w1,
                    fields=("editedAt", "updatedAt"),
                    category_field=category,
                    sizes=case["sizes"],
                    backend=backend,  # type: ignore[arg-type]
                )
                for category in (None, "type")
            ]
        else:
            got = [
                count_buckets(case["values"], w0, w1, sizes=case["sizes"], backend=backend)  # type: ignore[arg-type]
            ]
            if case["labels"] is not None:
                got.append(
                    count_buckets(
                        case["values"],
                        w0,
                        w1,
                        sizes=case["sizes"],
                        categories=case["labels"],
                        backend=backend,  # type: ignore[arg-type]
                    )
                )
        # Category order too (first seen), not only the contents.
        return [(dataclasses.asdict(r), list(r.category_counts)) for r in got]
    except Exception as exc:  # an error is a result to compare too
        return ("error", type(exc).__name__, str(exc))


def main() -> None:
    logging.disable(logging.CRITICAL)  # the counters' invalid-input warnings: results suffice
    with open(corpus_path, "rb") as f:
        corpus = pickle.load(f)
    results = {backend: [run(case, backend) for case in corpus] for backend in LOOPS}
    info = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "backend": metrics_agg.counter_backend(),
        "rust_counter": rust.__file__,
        "build_profile": rust.build_profile,
    }
    with open(out_path, "wb") as f:
        pickle.dump({"info": info, "results": results}, f, protocol=4)
    print(f"counter replay: {len(corpus)} cases x 2 backends on {info}")


if __name__ == "__main__":
    main()
