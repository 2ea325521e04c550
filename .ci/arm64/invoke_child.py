"""One Lambda invocation from an unzipped layer (stdlib only; runs under emulation too).

    python invoke_child.py LAYER_PYTHON_DIR TASK_DIR EVENT.json RESULT.json

sys.path as Lambda orders it: /var/task (the handler), /opt/python (the layer), then the
runtime's own packages.
"""

import json
import platform
import sys
import time

layer, task, event_path, result_path = sys.argv[1:5]
sys.path[:0] = [task, layer]

import handler  # noqa: E402 - the cold start: config, logging, the package, the extension

import metrics_agg  # noqa: E402


class Context:
    function_name = "metrics-agg-arm64-check"
    aws_request_id = "arm64-check"

    def __init__(self) -> None:
        self._end = time.monotonic() + 600.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


with open(event_path) as f:
    event = json.load(f)
response = handler.handler(event, Context())
with open(result_path, "w") as f:
    json.dump(
        {
            "response": response,
            "backend": metrics_agg.counter_backend(),
            "metrics_agg": metrics_agg.__file__,
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        f,
    )
