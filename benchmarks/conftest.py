"""The counting summary table printed after a benchmark run.

`pytest benchmarks` collects `bench_*.py` through pyproject's `python_files`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from _counting_results import NS_PER_RECORD


def _rows() -> Iterator[str]:
    sizes = sorted({n for n, _ in NS_PER_RECORD})
    for n in sizes:
        row = {impl: ns for (m, impl), ns in NS_PER_RECORD.items() if m == n}
        naive, floor, polars = row.get("naive"), row.get("rust-floor"), row.get("polars")
        yield f"{n:,} records"
        for impl, ns in sorted(row.items(), key=lambda item: item[1]):
            notes = []
            if naive and impl != "naive":
                notes.append(f"{naive / ns:,.0f}x faster than naive")
            if floor and impl != "rust-floor":
                notes.append(f"{ns / floor:.2f}x the Rust floor")
            if polars and impl not in ("polars", "naive"):
                notes.append(f"{polars / ns:.1f}x faster than polars")
            yield f"  {impl:<22} {ns:>10,.1f} ns/record   {' · '.join(notes)}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if NS_PER_RECORD:
        terminalreporter.section("counting: median ns/record and ratios (same run)")
        for line in _rows():
            terminalreporter.write_line(line)
