"""Write an editable, pure-Python wheel of metrics-agg for a machine without cargo.

    python scripts/editable_wheel.py OUT_DIR      # prints the wheel's path

The project's build backend (maturin) always compiles the Rust counter, and without cargo it
downloads a whole Rust toolchain first. The package runs without the extension (the
pure-Python counter takes over), so scripts/bootstrap.sh installs this wheel instead: a `.pth`
line pointing at python/ (the source stays live, as with `pip install -e`), and the metadata,
extras and `metrics-agg` command read from pyproject.toml. pip installs it and resolves its
dependencies like any wheel (`pip install "WHEEL[local]"`); `pip uninstall metrics-agg`
removes it.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _requires_dist(project: dict[str, Any]) -> list[str]:
    """`Requires-Dist` lines: the dependencies, then each extra's behind its marker."""
    lines = [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for req in reqs:
            spec, _, marker = req.partition(";")
            condition = f'extra == "{extra}"'
            if marker.strip():
                condition = f"({marker.strip()}) and {condition}"
            lines.append(f"Requires-Dist: {spec.strip()}; {condition}")
    return lines


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(out_dir: Path) -> Path:
    """Write the wheel into `out_dir` and return its path."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '')}",
        f"License: {project.get('license', {}).get('text', '')}",
        *_requires_dist(project),
    ]
    scripts = project.get("scripts", {})
    files = {
        f"{dist}_editable.pth": f"{ROOT / 'python'}\n",
        f"{info}/METADATA": "\n".join(metadata) + "\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: metrics-agg scripts/editable_wheel.py\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": "[console_scripts]\n"
        + "".join(f"{cmd} = {target}\n" for cmd, target in scripts.items()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{dist}-{version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            data = text.encode()
            zf.writestr(path, data)
            records.append(_record_line(path, data))
        records.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return wheel


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    print(build(Path(sys.argv[1])))
