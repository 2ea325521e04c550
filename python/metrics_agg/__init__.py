"""metrics-agg: exact 1/5/15/60-minute counts of Amplify records.

Kept current from DynamoDB Streams.
"""

from __future__ import annotations

from metrics_agg.config import Config
from metrics_agg.counter.api import count_buckets, count_records, counter_backend
from metrics_agg.errors import (
    BackendUnavailableError,
    ConfigError,
    MetricsAggError,
    ReadError,
    TransportError,
    WriteError,
)
from metrics_agg.models import BUCKET_SIZES, SOURCE_MODELS, CountResult

__version__ = "0.1.0"

__all__ = [
    "BUCKET_SIZES",
    "SOURCE_MODELS",
    "BackendUnavailableError",
    "Config",
    "ConfigError",
    "CountResult",
    "MetricsAggError",
    "ReadError",
    "TransportError",
    "WriteError",
    "__version__",
    "count_buckets",
    "count_records",
    "counter_backend",
]
