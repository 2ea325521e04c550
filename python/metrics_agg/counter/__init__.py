"""The counting core: timestamps in, exact 1/5/15/60-minute buckets out.

`api` is the public entry (argument checks, backend choice, `CountResult`); `_pycounter` is
the pure-Python loop; the compiled loop is the extension `metrics_agg._rust_counter` (its
stub `_rust_counter.pyi` sits beside it, one level up, where the extension is installed).
The timestamp grammar both loops implement is `metrics_agg.timestamps`.
"""

from __future__ import annotations

from metrics_agg.counter.api import count_buckets, count_records, counter_backend

__all__ = ["count_buckets", "count_records", "counter_backend"]
