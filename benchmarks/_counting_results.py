"""Median ns/record per (size, implementation), filled by bench_counting, printed by conftest."""

from __future__ import annotations

NS_PER_RECORD: dict[tuple[int, str], float] = {}
