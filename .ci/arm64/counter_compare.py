"""Compare counter replays exactly: every build and backend must give the reference's results.

    python counter_compare.py REFERENCE.pickle OTHER.pickle...

The reference is the x86_64 layer's compiled counter; each other file (an aarch64 replay)
must match it case for case, with its compiled counter and with the pure-Python fallback,
and the reference's own fallback must match too. Prints the case counts; exits 1 on the
first differing case (shown).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any


def load(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        data: dict[str, Any] = pickle.load(f)
    return data


def check(name: str, got: list[object], want: list[object]) -> int:
    if len(got) != len(want):
        sys.exit(f"counter parity: {name}: {len(got)} results, expected {len(want)}")
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        if a != b:
            sys.exit(f"counter parity: {name}: case {index} differs:\n  got  {a!r}\n  want {b!r}")
    return len(got)


def main() -> None:
    reference = load(sys.argv[1])
    want = reference["results"]["rust"]
    info = reference["info"]
    label = f"{info['machine']} {info['python']}"
    n = check(f"{label} python vs {label} rust", reference["results"]["python"], want)
    print(f"counter parity: {label}: pure-Python fallback == compiled counter, {n} cases")
    for path in sys.argv[2:]:
        other = load(path)
        assert other["info"]["backend"] == "rust", other["info"]
        tag = f"{other['info']['machine']} {other['info']['python']}"
        for backend in ("rust", "python"):
            n = check(f"{tag} {backend} vs {label} rust", other["results"][backend], want)
            print(f"counter parity: {tag} {backend} == {label} rust: {n} cases identical")


if __name__ == "__main__":
    main()
