#!/usr/bin/env bash
# Run the reliability suite N times in fresh interpreters under PYTHONFAULTHANDLER=1 and
# report how many runs passed, failed (a test failed) and crashed (killed by a signal or a
# "Fatal Python error"), issue 10. Logs of runs that did not pass are kept.
#
#   bash scripts/stress.sh [N]                   # default 30 runs
#   STRESS_TESTS="tests/test_reliability_load.py" bash scripts/stress.sh 10
#
# Exits 1 if any run failed or crashed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-30}"
tests="${STRESS_TESTS:-tests/test_reliability_bad_input.py tests/test_reliability_faults.py tests/test_reliability_load.py tests/test_reliability_security.py tests/test_stack_stop.py}"
python="${PYTHON:-.venv/bin/python}"
logs="$(mktemp -d "${TMPDIR:-/tmp}/stress.XXXXXX")"
passed=0 failed=0 crashed=0
for i in $(seq 1 "$runs"); do
    log="$logs/run-$i.log"
    # shellcheck disable=SC2086  # the test list is word-split on purpose
    PYTHONFAULTHANDLER=1 "$python" -m pytest -q -p no:cacheprovider $tests >"$log" 2>&1
    rc=$?
    if [ "$rc" -ge 128 ] || grep -q "Fatal Python error" "$log"; then
        crashed=$((crashed + 1))
        echo "run $i: CRASH (exit $rc), log $log"
    elif [ "$rc" -ne 0 ]; then
        failed=$((failed + 1))
        echo "run $i: FAIL (exit $rc): $(tail -n 1 "$log"), log $log"
    else
        passed=$((passed + 1))
        echo "run $i: ok: $(tail -n 1 "$log")"
        rm -f "$log"
    fi
done
echo "stress: $runs runs: $passed passed, $failed failed, $crashed crashed (logs: $logs)"
[ "$failed" -eq 0 ] && [ "$crashed" -eq 0 ]
