"""`metrics-agg backfill`: a long range recounted in parallel units through an SQS queue.

`units` plans the units and their messages, `sqs` is the one place that talks to SQS (AWS
or the local server's emulation), `progress` is what a unit reports when it ends,
`runner` is the CLI side (send, follow, journal) and `accounts` finds every account.
The worker side is the ordinary pipeline: `pipeline.handle_event` runs an SQS batch of
recount events (`queue_events`).
"""
