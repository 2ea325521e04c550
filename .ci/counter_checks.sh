#!/usr/bin/env bash
# Memory-safety checks of the compiled counter (issue 10), run by .ci/run after the main
# test suite (.venv ready, extension built):
#   1. the counter tests, both backends, under CPython's debug allocator;
#   2. the Rust-backend counter tests under valgrind memcheck (Debian's valgrind, installed
#      here when absent);
#   3. the counter tests on CPython 3.12 and 3.13 (pyenv) against one abi3 wheel built
#      once, with the package installed from that wheel, not from python/.
set -euo pipefail
cd "$(dirname "$0")/.."
export METRICS_AGG_REQUIRE_RUST=1
COUNTER_TESTS=(tests/test_counter_hostile.py tests/test_counting_contract.py
    tests/test_parity.py tests/test_counting_units.py tests/test_error_rules.py)
step() { printf '\n=== %s ===\n' "$*"; }

step "counter tests under PYTHONMALLOC=debug (both backends)"
PYTHONMALLOC=debug PYTHONFAULTHANDLER=1 .venv/bin/python -m pytest -q -p no:cacheprovider \
    "${COUNTER_TESTS[@]}"

step "counter tests under valgrind memcheck (Rust backend)"
if ! command -v valgrind >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
# PYTHONMALLOC=malloc: every object is its own heap block, so memcheck sees a freed one.
PYTHONMALLOC=malloc valgrind --quiet --error-exitcode=99 --leak-check=no \
    --suppressions=.ci/valgrind-python.supp \
    .venv/bin/python -m pytest -q -p no:cacheprovider -k rust \
    tests/test_counter_hostile.py tests/test_counting_contract.py tests/test_error_rules.py

step "counter tests on CPython 3.12 and 3.13 against one abi3 wheel"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/maturin build --release --quiet --out "$work/wheels"
wheel="$(find "$work/wheels" -name 'metrics_agg-*-cp311-abi3-*.whl' | head -n 1)"
[ -n "$wheel" ] || { echo "no abi3 wheel built" >&2; exit 1; }
echo "wheel: $(basename "$wheel")"
pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for version in 3.12 3.13; do
    python="$(find "$pyenv_root/versions" -maxdepth 3 -path "*/$version.*/bin/python$version" \
        | sort -V | tail -n 1)"
    [ -x "$python" ] || { echo "CPython $version not found under $pyenv_root" >&2; exit 1; }
    "$python" -m venv "$work/py$version"
    "$work/py$version/bin/python" -m pip install --quiet "$wheel[local]" pytest \
        pytest-timeout hypothesis
    # Run from a directory without python/ on the path: the wheel's package is the one tested.
    (cd "$work" && "$work/py$version/bin/python" -c "
import metrics_agg._rust_counter as rc, sys
assert '$work/py$version/' in rc.__file__, rc.__file__
print(sys.version.split()[0], rc.__file__)")
    "$work/py$version/bin/python" -m pytest -q -p no:cacheprovider "${COUNTER_TESTS[@]}"
done
