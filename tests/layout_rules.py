"""What belongs to the Lambda runtime and what is local tooling (tests' side of the rule).

`lambda/build_layer.sh` leaves LOCAL_TOOLING out of the layer; `test_layout.py` checks
that its list is this one and that no runtime module imports the tooling.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "metrics_agg"

# Paths relative to the layer's python/ folder (= relative to python/ in the repo).
LOCAL_TOOLING = ("metrics_agg/local", "metrics_agg/__main__.py", "metrics_agg/graphql/codegen.py")


def is_local_tooling(path: str) -> bool:
    """``path`` relative to python/ (``metrics_agg/...``), file or folder."""
    return any(path == t or path.startswith(t + "/") for t in LOCAL_TOOLING)


def runtime_sources() -> list[str]:
    """The package's .py files the layer must ship, relative to python/."""
    out = []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).as_posix()
        if not is_local_tooling(rel):
            out.append(rel)
    return out
