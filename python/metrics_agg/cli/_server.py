"""Placeholder: replaced by the module's owner."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:  # pragma: no cover - placeholder
    del sub, argparse
