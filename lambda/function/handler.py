"""AWS Lambda entry point (SAM `Handler: handler.handler`): adapts, decides nothing.

Stream batches, backfill-queue (SQS) batches, the 5-minute schedule and `{"recount": {...}}`
events all go to `metrics_agg.aggregator.pipeline.handle_event` (docs/design.md §4), which
returns the typed response: `{"batchItemFailures": [...]}` for streams and SQS
(ReportBatchItemFailures), a summary otherwise.
Configuration is read, and the SDK clients made, once per cold start; the deadline comes
from the Lambda context so the pipeline stops and reports before Lambda's timeout, and the
request id and cold start from it mark every log line (`metrics_agg.logs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metrics_agg.aggregator.lambda_support import configure_logging, load_config, prepare
from metrics_agg.aggregator.pipeline import InvocationResponse, handle_event
from metrics_agg.deadline import Deadline
from metrics_agg.logs import begin_invocation

configure_logging()
CONFIG = load_config()
prepare(CONFIG)  # SDK clients at init, not in the first invocation


def handler(event: Mapping[str, Any], context: object) -> InvocationResponse:
    begin_invocation(context)
    return handle_event(event, config=CONFIG, deadline=Deadline.from_lambda_context(context))
