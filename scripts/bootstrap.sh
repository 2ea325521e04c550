#!/usr/bin/env bash
# Set up .venv with metrics-agg installed editable (python/ stays live) and the extras asked for:
#
#   bash scripts/bootstrap.sh              # the runtime and the local server: the quick start
#   bash scripts/bootstrap.sh test         # plus the test tooling (scripts/test.sh runs this)
#   bash scripts/bootstrap.sh test,bench   # plus the benchmarks' (polars, the `bench` feature)
#
# With cargo on PATH the Rust counter is built (release) into the package. Without it, or with
# METRICS_AGG_COUNTER=python, nothing is compiled and nothing is downloaded but the Python
# dependencies: the pure-Python counter runs (same results, slower; scripts/editable_wheel.py).
# Idempotent; re-run after changing Rust code. Needs python3 (>=3.11). Environment: PYTHON
# (default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${1:-local}"
case "$EXTRAS" in
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *[!a-z,]*) echo "bootstrap: extras are a comma-separated list such as test,bench, got '$EXTRAS'" >&2; exit 2 ;;
esac
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

if [ "${METRICS_AGG_COUNTER:-}" != python ] && command -v cargo >/dev/null 2>&1; then
    features=python
    case ",$EXTRAS," in *,bench,*) features=python,bench ;; esac
    echo "bootstrap: building the Rust counter (release, features $features) and installing metrics-agg[$EXTRAS]"
    # maturin is the build backend (fetched into pip's isolated build environment); the
    # `bench` feature adds the benchmark-only `_OwnedStrings` (never in the wheel or layer).
    MATURIN_PEP517_ARGS="--features $features" pip install --quiet -e ".[$EXTRAS]"
else
    if [ "${METRICS_AGG_COUNTER:-}" = python ]; then why="METRICS_AGG_COUNTER=python"; else why="cargo not found"; fi
    echo "bootstrap: $why: installing metrics-agg[$EXTRAS] without the Rust counter"
    wheel_dir="$(mktemp -d)"
    trap 'rm -rf "$wheel_dir"' EXIT
    wheel="$("$VENV/bin/python" scripts/editable_wheel.py "$wheel_dir")"
    pip install --quiet --force-reinstall --no-deps "$wheel"
    pip install --quiet "$wheel[$EXTRAS]"
fi
backend="$("$VENV/bin/python" -c 'import metrics_agg; print(metrics_agg.counter_backend())')"
case "$backend" in
    rust) echo "bootstrap: counter backend = rust (the compiled counter in python/metrics_agg/)" ;;
    *) echo "bootstrap: counter backend = python (pure Python, same counts; install Rust from https://rustup.rs and re-run for the compiled one)" ;;
esac
