"""Which event this is, and the units of the scheduled and recount events (docs/design.md §4).

Stream batches are `stream_events`' and `planning`'s; this module classifies the event and
plans the two other kinds. The scheduled event may ask the API which pairs were active
(`graphql.discovery`: accounts, then one key-condition query per account), the one piece
of I/O in planning, so it lives here, not in `planning`.
"""

from __future__ import annotations

__all__ = ["ScheduledPlan", "event_kind", "recount_unit", "scheduled_units"]

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from metrics_agg.aggregator.plan import floor_hour, group_hours, plan_recount
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLApi
from metrics_agg.models import MODEL_OF_RECORD_TYPE, SOURCE_MODELS, UnitKey, WorkUnit
from metrics_agg.timestamps import parse_instant

_log = logging.getLogger("metrics_agg")
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ScheduledPlan:
    """The scheduled pass's units, and the accounts discovery could not finish (reported,
    not dropped: issue 15)."""

    units: list[WorkUnit]
    unfinished: tuple[tuple[str, str], ...] = ()  # (accountId, reason)


def scheduled_units(
    event: Mapping[str, Any],
    client: GraphQLApi,
    now: datetime,
    deadline: Deadline,
    *,
    configured_accounts: Sequence[str] = (),
) -> ScheduledPlan:
    """Units of the scheduled pass: the event's accountIds, else ``Config.account_ids``,
    else the pairs discovery finds.

    Raises:
        TransportError: discovery could not list the accounts.
    """
    detail = event.get("detail")
    given = event.get("accountIds") or (
        detail.get("accountIds") if isinstance(detail, Mapping) else None
    )
    accounts = [a for a in given if isinstance(a, str) and a] if isinstance(given, list) else []
    if not accounts:
        accounts = list(configured_accounts)
    pairs: set[UnitKey]
    unfinished: tuple[tuple[str, str], ...] = ()
    if accounts:
        pairs = {UnitKey(model, a) for a in accounts for model in SOURCE_MODELS}
        _log.info("Scheduled finalize: %d account(s) given, all models", len(accounts))
    else:
        from metrics_agg.graphql import discovery

        scopes = discovery.list_recent_metric_scopes(
            client, since=now - 2 * _HOUR, deadline=deadline
        )
        unfinished = scopes.unfinished
        model_of = MODEL_OF_RECORD_TYPE
        pairs = {UnitKey(model_of[rt], a) for a, rt in scopes if rt in model_of}
        _log.info(
            "Scheduled finalize: %d active (model, account) pair(s) in the last 2 h "
            "(%d account(s) listed%s)",
            len(pairs),
            scopes.accounts,
            f", {len(unfinished)} not finished: reported" if unfinished else "",
        )
    ranges = group_hours([floor_hour(now) - _HOUR, floor_hour(now)])
    return ScheduledPlan([WorkUnit(key=k, ranges=ranges) for k in sorted(pairs)], unfinished)


def event_kind(event: Mapping[str, Any]) -> str:
    """``stream``, ``sqs`` (the backfill queue), ``recount`` or ``scheduled``.

    Raises:
        ValueError: none of those; the message lists the shapes expected.
    """
    if "Records" in event:
        from metrics_agg.aggregator.queue_events import is_queue_event

        return "sqs" if is_queue_event(event) else "stream"
    if "recount" in event:
        return "recount"
    if event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event":
        return "scheduled"
    raise ValueError(
        "unrecognised event: expected a DynamoDB stream batch ({'Records': [...]}), "
        "an SQS batch of recount events, an EventBridge 'Scheduled Event', or "
        "{'recount': {'accountId', 'model', 'start', 'end'}}"
    )


def recount_unit(spec: Mapping[str, Any]) -> WorkUnit:
    try:
        return plan_recount(
            str(spec["model"]),
            str(spec["accountId"]),
            parse_instant(str(spec["start"])),
            parse_instant(str(spec["end"])),
        )
    except KeyError as exc:
        raise ValueError(
            f"recount event lacks {exc.args[0]!r}; expected accountId, model, start, end"
        ) from None
