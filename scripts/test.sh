#!/usr/bin/env bash
# The test command: install the test tooling into .venv (scripts/bootstrap.sh test), then run
# the tests. Arguments go to pytest:
#
#   bash scripts/test.sh                       # every test
#   bash scripts/test.sh tests/test_demo.py -x
#
# Tests that need the Rust counter, the Lambda layer (bash lambda/build_layer.sh) or Chromium
# skip without them, unless METRICS_AGG_REQUIRE_RUST / _LAYER / _BROWSER is set (as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
