"""One place per model (issue 11): everything else follows `models.SOURCE_MODELS` or is
checked against it, so a model added to the registry but missing anywhere fails here."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics_agg.graphql._slices import generated_queries
from metrics_agg.local.server import LocalStack
from metrics_agg.local.server._store_tables import INDEXES, TABLES, table_name
from metrics_agg.local.server.mapping import BATCHING
from metrics_agg.local.server.seeding import SEEDERS, generate_records
from metrics_agg.models import FEEDBACK_RECORD_TYPES, SCOPE_OF, SOURCE_MODELS, ModelSpec
from template_render import load_template

MODELS = list(SOURCE_MODELS.values())
T0, T1 = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_the_template_maps_the_models_stream_with_its_batching(spec: ModelSpec) -> None:
    doc = load_template()
    assert f"{spec.name}StreamArn" in doc["Parameters"]
    mapping = doc["Resources"].get(f"{spec.name}Mapping")
    assert mapping is not None, f"template.yaml has no {spec.name}Mapping"
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Ref": f"{spec.name}StreamArn"}
    # Batching is per-table parameters (issue 9) whose defaults are the registry's.
    size, window, factor = (
        f"{spec.name}{p}" for p in ("BatchSize", "BatchingWindowSeconds", "ParallelizationFactor")
    )
    assert props["BatchSize"] == {"Ref": size}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": window}
    assert props["ParallelizationFactor"] == {"Ref": factor}
    params = doc["Parameters"]
    defaults = (params[size]["Default"], params[window]["Default"])
    assert defaults == spec.batching and params[factor]["Default"] == 1


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_the_local_stack_maps_seeds_and_stores_the_model(spec: ModelSpec) -> None:
    assert BATCHING[spec.name] == spec.batching
    assert spec.name in TABLES and table_name(spec.name).startswith(f"{spec.name}-")
    assert set(spec.list_queries) <= set(INDEXES)
    assert spec.name in SEEDERS, f"no seeder for {spec.name} in local/server/seeding.py"
    kinds: Counter[str] = Counter()
    rows = list(generate_records(spec.name, "acct", 50, T0, T1, seed=1, kinds=kinds))
    assert len({r["id"] for r in rows}) == 50
    for row in rows:
        assert any(row.get(f) for f in spec.timestamp_fields), row
        assert all(key in row for key in spec.sort_keys[-1:]), row


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_the_models_queries_are_generated(spec: ModelSpec) -> None:
    assert len(spec.list_queries) == len(spec.sort_keys) >= 1
    assert set(spec.list_queries) <= set(generated_queries())


def test_record_types_belong_to_one_model() -> None:
    owners = Counter(rt for spec in MODELS for rt in spec.record_types)
    assert [rt for rt, n in owners.items() if n > 1] == []
    assert set(FEEDBACK_RECORD_TYPES) == set(SOURCE_MODELS["FeedbackItem"].record_types)
    assert set(SCOPE_OF) == set(FEEDBACK_RECORD_TYPES)


def test_no_seeder_for_a_model_is_an_error() -> None:
    assert set(SEEDERS) == set(SOURCE_MODELS)
    with pytest.raises(ValueError, match="unknown model"):
        next(generate_records("Widget", "acct", 1, T0, T1))


def test_every_table_the_local_mapping_polls_comes_from_the_registry(tmp_path: Path) -> None:
    with LocalStack(tmp_path / "r.sqlite3", mapping=True) as stack:
        assert stack.mapping is not None
        polled = {p.table for p in stack.mapping._pollers}
    assert polled == {table_name(m) for m in SOURCE_MODELS}
