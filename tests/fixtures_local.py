"""Pytest fixtures for the local stack (SERVER workstream); imported by conftest.py.

- `local_stack`: a running LocalStack on a free port with a fresh database, mapping off.
- `local_stack_with_mapping`: the same with the event source mapping on (default handler:
  metrics_agg.aggregator.pipeline.handle_event) and a 0.1 s batching window.
- `make_local_stack`: a factory, `make_local_stack(handler=fake, batch_window=0.05)`; every
  stack it made is stopped at teardown. Databases live in the test's tmp_path.
- `local_client`: a LocalClient (single requests, raises on errors) for `local_stack`.
"""

from __future__ import annotations

__all__ = ["local_client", "local_stack", "local_stack_with_mapping", "make_local_stack"]

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.local.server import LocalClient, LocalStack


@pytest.fixture
def make_local_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    made: list[LocalStack] = []

    def make(db: str | Path | None = None, **kwargs: Any) -> LocalStack:
        kwargs.setdefault("mapping", False)
        stack = LocalStack(db or tmp_path / f"local-{len(made)}.sqlite3", **kwargs)
        made.append(stack)
        stack.start()
        return stack

    yield make
    for stack in reversed(made):
        stack.stop()


@pytest.fixture
def local_stack(make_local_stack: Callable[..., LocalStack]) -> LocalStack:
    return make_local_stack()


@pytest.fixture
def local_stack_with_mapping(make_local_stack: Callable[..., LocalStack]) -> LocalStack:
    return make_local_stack(mapping=True, batch_window=0.1)


@pytest.fixture
def local_client(local_stack: LocalStack) -> Iterator[LocalClient]:
    with LocalClient(local_stack.endpoint, local_stack.api_key) as client:
        yield client
