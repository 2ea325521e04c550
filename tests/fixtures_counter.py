"""The ``backend`` fixture: every counting behaviour runs against both loops.

The Rust param is skipped only when the extension is not importable, and fails instead
when ``METRICS_AGG_REQUIRE_RUST=1`` (CI), so a broken build cannot pass as "skipped".
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

__all__ = ["backend", "require_rust", "rust_counter"]


def rust_counter() -> ModuleType | None:
    try:
        return importlib.import_module("metrics_agg._rust_counter")
    except ImportError:
        return None


def require_rust() -> ModuleType:
    """The extension, or skip (fail under ``METRICS_AGG_REQUIRE_RUST=1``)."""
    module = rust_counter()
    if module is None:
        if os.environ.get("METRICS_AGG_REQUIRE_RUST") == "1":
            pytest.fail("METRICS_AGG_REQUIRE_RUST=1 but metrics_agg._rust_counter is not built")
        pytest.skip("metrics_agg._rust_counter is not built")
    return module


@pytest.fixture(params=["python", "rust"])
def backend(request: pytest.FixtureRequest) -> str:
    """``"python"`` or ``"rust"``, for ``count_buckets(..., backend=backend)``."""
    if request.param == "rust":
        require_rust()
    return str(request.param)
