"""Which event this is, and the units of the scheduled and recount events (docs/design.md §4).

Stream batches are `stream_events`' and `planning`'s; this module classifies the event and
plans the two other kinds. The scheduled event reads which pairs were active from the
activity table (`activity`), or, in the daily sweep, asks the API (`graphql.discovery`:
accounts, then one key-condition query per account): the one piece of I/O in planning,
so it lives here, not in `planning`.
"""

from __future__ import annotations

__all__ = ["ScheduledPlan", "event_kind", "is_sweep", "recount_unit", "scheduled_units"]

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from metrics_agg.aggregator.activity import ActivityLog
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


def is_sweep(event: Mapping[str, Any]) -> bool:
    """The daily sweep's event (``"sweep": true`` in the event or its ``detail``)."""
    detail = event.get("detail")
    return event.get("sweep") is True or (
        isinstance(detail, Mapping) and detail.get("sweep") is True
    )


def scheduled_units(
    event: Mapping[str, Any],
    client: GraphQLApi,
    now: datetime,
    deadline: Deadline,
    *,
    configured_accounts: Sequence[str] = (),
    activity: ActivityLog | None = None,
) -> ScheduledPlan:
    """Units of the scheduled pass (docs/operations.md, "How the scheduled pass finds
    active pairs"):

    - the event's accountIds: every model of exactly those accounts (a run by hand);
    - the sweep (`is_sweep`): the pairs discovery finds, plus ``Config.account_ids``;
    - otherwise: the pairs recorded in ``activity`` for the previous and current hour, plus
      ``Config.account_ids``; without an activity table, ``Config.account_ids`` alone, or
      discovery as in the sweep when there are none.

    Raises:
        TransportError: discovery could not list the accounts, or the activity table
            could not be read (`ActivityError`).
    """
    detail = event.get("detail")
    given = event.get("accountIds") or (
        detail.get("accountIds") if isinstance(detail, Mapping) else None
    )
    accounts = [a for a in given if isinstance(a, str) and a] if isinstance(given, list) else []
    pairs: set[UnitKey]
    unfinished: tuple[tuple[str, str], ...] = ()
    if accounts:
        pairs = {UnitKey(model, a) for a in accounts for model in SOURCE_MODELS}
        _log.info("Scheduled finalize: %d account(s) given, all models", len(accounts))
    else:
        pairs = {UnitKey(model, a) for a in configured_accounts for model in SOURCE_MODELS}
        sweep = is_sweep(event)
        if activity is not None and not sweep:
            recorded = activity.active_pairs(now)
            _log.info(
                "Scheduled finalize: %d (model, account) pair(s) recorded active in the "
                "previous and current hour, %d configured account(s)",
                len(recorded),
                len(configured_accounts),
            )
            pairs |= recorded
        elif sweep or not configured_accounts:
            from metrics_agg.graphql import discovery

            scopes = discovery.list_recent_metric_scopes(
                client, since=now - 2 * _HOUR, deadline=deadline
            )
            unfinished = scopes.unfinished
            model_of = MODEL_OF_RECORD_TYPE
            found = {UnitKey(model_of[rt], a) for a, rt in scopes if rt in model_of}
            _log.info(
                "Scheduled %s: %d active (model, account) pair(s) in the last 2 h "
                "(%d account(s) listed%s), %d configured account(s)",
                "sweep" if sweep else "finalize (no activity table: discovery)",
                len(found),
                scopes.accounts,
                f", {len(unfinished)} not finished: reported" if unfinished else "",
                len(configured_accounts),
            )
            pairs |= found
        else:
            _log.info(
                "Scheduled finalize: %d configured account(s), all models",
                len(configured_accounts),
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
