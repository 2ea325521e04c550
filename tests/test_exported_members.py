"""The public surface is a contract (docs/design.md §3): changing it must be deliberate."""

import metrics_agg


def test_all_is_pinned() -> None:
    assert sorted(metrics_agg.__all__) == sorted(
        [
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
    )


def test_every_exported_name_exists() -> None:
    for name in metrics_agg.__all__:
        assert getattr(metrics_agg, name) is not None, name
