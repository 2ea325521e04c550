"""Shared fixtures (import lines only)."""

from fixtures_counter import backend  # noqa: F401
from fixtures_local import *  # noqa: F403
