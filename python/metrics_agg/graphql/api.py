"""The operations the pipeline needs, on top of ``GraphQLClient`` (docs/design.md §2, §4.3, §4.5).

The public surface of ``metrics_agg.graphql``: the pipeline, CLI, benchmarks and tests
import from here. Each concern lives in its own module:

- `reads`: source-model list reads (sort-key ranges with margins, pagination, splitting);
- `stored`: stored AggregatedMetrics buckets (read and decode);
- `writes`: aliased conditional create/update mutations;
- `shared_reads`: the reads of many units in shared requests (aliases across accounts).

The sgqlc modules are imported on first use, not at import, to keep the handler's cold
start small.
"""

from __future__ import annotations

__all__ = [
    "SORT_KEY_MARGIN",
    "STORED_BUCKETS_QUERY",
    "UnitReads",
    "UnitRows",
    "WriteResult",
    "bucket_input",
    "decode_stored_bucket",
    "list_source_reads",
    "list_stored_buckets",
    "list_stored_buckets_over",
    "read_units",
    "stored_is_newer",
    "write_buckets",
]

from metrics_agg.graphql.reads import SORT_KEY_MARGIN, list_source_reads
from metrics_agg.graphql.shared_reads import UnitReads, UnitRows, read_units
from metrics_agg.graphql.stored import (
    STORED_BUCKETS_QUERY,
    decode_stored_bucket,
    list_stored_buckets,
    list_stored_buckets_over,
)
from metrics_agg.graphql.writes import (
    WriteResult,
    bucket_input,
    stored_is_newer,
    write_buckets,
)
