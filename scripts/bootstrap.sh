#!/usr/bin/env bash
# Set up a development environment in .venv: build the Rust counter (release) into the
# package and install it editable with its test, local-server and benchmark extras.
# Idempotent; re-run after changing Rust code. Needs python3 (>=3.11) and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "bootstrap: cargo not found; install Rust (https://rustup.rs) or use the pure-Python" >&2
    echo "           counter: pip install -e . then METRICS_AGG_COUNTER=python" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "maturin>=1.7,<2"
echo "bootstrap: building the extension (release) and installing metrics-agg[test,bench]"
# maturin develop installs the package editable (python/ is live) with the compiled module.
# The `bench` feature adds the benchmark-only `_OwnedStrings` (never in the wheel or layer).
VIRTUAL_ENV="$PWD/$VENV" "$VENV/bin/maturin" develop --release --quiet --extras test,bench \
    --features python,bench
"$VENV/bin/python" -c "import metrics_agg; print('bootstrap: counter backend =', metrics_agg.counter_backend())"
