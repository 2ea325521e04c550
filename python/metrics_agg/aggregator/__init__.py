"""The Lambda runtime: one invocation, stage by stage, in data-flow order.

`pipeline.handle_event` dispatches (stream batch, schedule, recount) and builds the batch
response. The stages, each a module with typed dataclasses at its boundary:
`events` (stream records -> Batch) and `event_kinds` (schedule/recount -> units),
`plan` (Batch -> WorkUnits), `read` (stored buckets and source snapshot),
`count` (desired buckets), `write` (conditional writes of what changed),
`report` (the human log) and `emf` (the CloudWatch metrics line).
"""
