"""Fault harness, fast part (issue 6): every FaultPlan fault against the real pipeline.

For each scenario (tests/reliability_harness.py): no partial count is stored (a failed
read writes nothing; a failed write leaves only buckets equal to the truth), retries stop
at max_attempts or at the deadline, the handler reports the unit's lowest sequence number
exactly when the fault outlasts the invocation, and the redelivery after the fault clears
brings every bucket to the truth. `python scripts/reliability.py` prints the same table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics_agg.local.server import LocalClient, LocalStack
from reliability_harness import SCENARIOS, Scenario, run_fault_scenario
from truth_helpers import Stream


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, LocalClient, Stream]]:
    db: Path = tmp_path_factory.mktemp("faults") / "faults.sqlite3"
    with LocalStack(db, mapping=False) as stack, LocalClient(stack.endpoint, stack.api_key) as api:
        yield stack, api, Stream(stack)


@pytest.mark.parametrize(
    ("index", "scenario"),
    list(enumerate(SCENARIOS)),
    ids=[f"{s.name} @ {s.field}" for s in SCENARIOS],
)
def test_fault(env: tuple[LocalStack, LocalClient, Stream], index: int, scenario: Scenario) -> None:
    stack, api, stream = env
    row = run_fault_scenario(stack, api, stream, scenario, index)
    assert row.fired >= 1, "the fault never fired: the scenario tests nothing"
    assert not row.partial, "\n".join(row.partial)
    assert row.failures == row.expected_failures, row.error
    if scenario.persistent:
        assert row.error, "a failed unit must say why in the log"
        # docs/design.md §4.6: the deadline, not the attempts, stopped it.
        if scenario.deadline < 10:
            assert "deadline" in row.error and row.fired < scenario.config["max_attempts"]
        else:
            assert row.fired <= scenario.config["max_attempts"] * max(1, row.requests)
    if (
        scenario.field
        in ("listItemByAccountIdAndCreatedAt", "listFeedbackItemByAccountIdAndUpdatedAt")
        and scenario.persistent
    ):
        assert row.changed == 0, "a failed read must write nothing for its unit"
    assert not row.final, "\n".join(row.final)
    assert row.final_failures == []
