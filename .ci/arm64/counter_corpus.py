"""Write the counter's parity corpus (natively, where hypothesis is installed).

The cases are drawn from tests/test_parity.py's own strategies with a fixed seed, so the
corpus is the same on every run, plus that file's hand-written corpus. Pickled: the values
include lone surrogates, bytes, floats and lists, which JSON would not carry as they are.

    python .ci/arm64/counter_corpus.py OUT.pickle [EXAMPLES]
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_parity as parity

SEED = 20240507
SHAPES = ["first", "second", "empty-first", "none", "nondict"]


def _records(values: list[object], labels: list[object], shapes: list[str]) -> list[object]:
    """Records with the timestamp in editedAt, updatedAt, both, neither or no mapping at all."""
    records: list[object] = []
    for value, label, shape in zip(values, labels, shapes, strict=True):
        if shape == "nondict":
            records.append(value)
            continue
        record: dict[str, object] = {
            "first": {"editedAt": value, "updatedAt": "2024-05-07T12:00Z"},
            "second": {"updatedAt": value},
            "empty-first": {"editedAt": None if len(str(value)) % 2 else "", "updatedAt": value},
            "none": {"id": "x"},
        }[shape]
        record["type"] = label
        records.append(record)
    return records


def generate(examples: int) -> list[dict[str, Any]]:
    corpus: list[dict[str, Any]] = []
    quiet = settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @seed(SEED)
    @quiet
    @given(parity.cases(), st.data())
    def windows(case: tuple[Any, ...], data: st.DataObject) -> None:
        values, start, end, sizes, labels = case
        shapes = [data.draw(st.sampled_from(SHAPES)) for _ in values]
        corpus.append(
            {"kind": "buckets", "values": values, "start": start, "end": end, "sizes": sizes}
            | {"labels": labels}
        )
        corpus.append(
            {"kind": "records", "records": _records(values, labels, shapes), "start": start}
            | {"end": end, "sizes": sizes}
        )

    @seed(SEED)
    @quiet
    @given(
        st.one_of(
            st.text(max_size=40),
            parity.near_misses(parity.ANCHORS[0]),
            parity.near_misses(parity.ANCHORS[7]),
        )
    )
    def grammar(text: str) -> None:
        minute = parity.reference_minute(text)
        start = minute if isinstance(minute, int) else 0
        corpus.append({"kind": "text", "text": text, "start": start})

    windows()
    grammar()
    w0 = (parity.W0 - parity.window(0, 1)[0]).total_seconds() // 60
    for value, _ in parity.CORPUS:
        corpus.append(
            {"kind": "buckets", "values": [value], "start": int(w0), "end": int(w0) + 60}
            | {"sizes": (1, 5, 15, 60), "labels": None}
        )
    return corpus


def main() -> None:
    out = Path(sys.argv[1])
    examples = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    corpus = generate(examples)
    out.write_bytes(pickle.dumps(corpus, protocol=4))
    kinds = {k: sum(1 for c in corpus if c["kind"] == k) for k in ("buckets", "records", "text")}
    print(f"counter corpus: {len(corpus)} cases {kinds} (seed {SEED}) -> {out}")


if __name__ == "__main__":
    main()
