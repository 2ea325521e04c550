"""The operations the pipeline needs, on top of ``GraphQLClient`` (DESIGN §2, §4.3, §4.5).

The public surface of ``metrics_agg.graphql``: the pipeline, CLI, benchmarks and tests
import from here. Each concern lives in its own module:

- `reads`: source-model list reads (sort-key ranges with margins, pagination, splitting);
- `stored`: stored AggregatedMetrics buckets (read and decode);
- `writes`: aliased conditional create/update mutations.

The sgqlc modules are imported on first use, not at import, to keep the handler's cold
start small.
"""

from __future__ import annotations

__all__ = [
    "SORT_KEY_MARGIN",
    "STORED_BUCKETS_QUERY",
    "WriteResult",
    "bucket_input",
    "decode_stored_bucket",
    "list_source_reads",
    "list_source_records",
    "list_stored_buckets",
    "list_stored_buckets_over",
    "preload_documents",
    "query_document",
    "sort_key_ranges",
    "stored_is_newer",
    "write_buckets",
]

from metrics_agg.graphql.reads import (
    SORT_KEY_MARGIN,
    list_source_reads,
    list_source_records,
    query_document,
    sort_key_ranges,
)
from metrics_agg.graphql.stored import (
    STORED_BUCKETS_QUERY,
    decode_stored_bucket,
    list_stored_buckets,
    list_stored_buckets_over,
)
from metrics_agg.graphql.writes import (
    WriteResult,
    _write_document,
    bucket_input,
    stored_is_newer,
    write_buckets,
)


def preload_documents() -> None:
    """Build the query documents and the common write shapes now (e.g. at handler import,
    so the first invocation does not pay for importing the sgqlc modules)."""
    query_document(STORED_BUCKETS_QUERY)
    _write_document(1, 0)
    _write_document(0, 1)
