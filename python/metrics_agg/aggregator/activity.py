"""Which (model, account, hour) the stream path touched: what the 5-minute reconcile reads.

The scheduled pass recounts the current and previous hour of every active pair. Instead of
rediscovering those pairs through the API (one query per account, however quiet), the
units that touch them say so: after its units ran, an invocation writes one record per
(model, account, hour) to a small DynamoDB table the stack owns, and the scheduled pass
reads the two hours it reconciles with one Query each (docs/operations.md, "How the
scheduled pass finds active pairs"; why DynamoDB and not an SQS FIFO queue: ibid.).

- Key: partition ``hour`` (the UTC hour, ``2024-05-01T09:00:00Z``), sort ``pair``
  (``Model#accountId``). A put is idempotent, so a busy pair is one item per hour however
  often it is written; ``expiresAt`` (TTL) removes it after the reconcile window, and a
  reconcile never deletes it, so a pair whose reconcile failed is read again next pass.
- Cost: at most one BatchWriteItem per invocation per 5-minute slot (`SLOT_SECONDS`): a
  warm process remembers what it wrote in the current slot and skips it.
- Only hours the reconcile can still read are recorded (the previous hour on); older ones
  are the rechecks' (docs/incremental.md).

A write that fails raises `ActivityError`; the pipeline then fails the units it was
recording, so the stream (or queue) retries them and the record with them: a pair must
never be recounted by the stream and then left out of the reconcile without a trace.
"""

from __future__ import annotations

__all__ = [
    "SLOT_SECONDS",
    "TTL_SECONDS",
    "Activity",
    "ActivityLog",
    "ActivityStore",
    "DynamoActivityTable",
    "activity_for",
    "reconcile_hours",
    "unit_activity",
]

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from metrics_agg.config import Config
from metrics_agg.errors import ActivityError
from metrics_agg.models import SOURCE_MODELS, UnitKey, WorkUnit
from metrics_agg.timestamps import format_bucket_time

SLOT_SECONDS = 300  # the schedule's period: at most one write per pair per slot
# A record of hour H is read by the passes of H and H + 1 h; an hour more covers a late
# schedule and clock skew between the writer and the pass.
TTL_SECONDS = 3 * 3600
_HOUR = timedelta(hours=1)
_BATCH = 25  # BatchWriteItem's limit
_ATTEMPTS = 5  # rounds of UnprocessedItems before giving up
_LOCAL_HOSTS = ("http://127.0.0.1", "http://localhost", "http://[::1]")


def _floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def reconcile_hours(now: datetime) -> tuple[datetime, datetime]:
    """The previous and current UTC hour: what the scheduled pass recounts and reads."""
    hour = _floor_hour(now)
    return hour - _HOUR, hour


@dataclass(frozen=True, slots=True, order=True)
class Activity:
    """One (model, account, hour) a unit touched; ``hour`` aware UTC, aligned."""

    model: str
    account_id: str
    hour: datetime


def unit_activity(units: Iterable[WorkUnit], now: datetime) -> set[Activity]:
    """The (model, account, hour) of each unit that the reconcile of ``now`` on can read.

    The hours are those of the unit's ranges and of the buckets it touched (a stream unit's
    ranges may be minute spans), from the previous hour on.
    """
    first = reconcile_hours(now)[0]
    out: set[Activity] = set()
    for unit in units:
        hours = {_floor_hour(b.start) for b in unit.touched}
        for r in unit.ranges:
            hour = _floor_hour(r.start)
            while hour < r.end:
                hours.add(hour)
                hour += _HOUR
        key = unit.key
        out.update(Activity(key.model, key.account_id, h) for h in hours if h >= first)
    return out


class ActivityStore(Protocol):
    """Where the records go: the stack's DynamoDB table, or a test's stand-in."""

    @property
    def request_count(self) -> int: ...

    def put(self, records: Sequence[Activity], *, slot: int) -> None:
        """Write every record (idempotent). Raises: ActivityError."""
        ...

    def pairs(self, hour: datetime) -> set[UnitKey]:
        """Every (model, account) recorded for ``hour``. Raises: ActivityError."""
        ...


class DynamoActivityTable:
    """The activity table through botocore (SigV4; retries in standard mode).

    ``endpoint``: another DynamoDB endpoint (`metrics-agg serve` answers DynamoDB's JSON
    protocol on its own port); on 127.0.0.1/localhost placeholder credentials are used.
    """

    def __init__(self, table: str, *, region: str | None, endpoint: str | None = None) -> None:
        self.table = table
        self._region = region
        self._endpoint = endpoint
        self._client: Any = None
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def request_count(self) -> int:
        return self._requests

    def connect(self) -> Any:
        """The botocore client, made on first use (or at init: `lambda_support.prepare`).

        Raises:
            botocore.exceptions.BotoCoreError: botocore could not make it (no region).
        """
        # botocore is imported on first use, so a cold start that records nothing (the
        # schedule, a recount) does not pay for it, unless the init made it.
        with self._lock:
            if self._client is None:
                import botocore.config
                import botocore.session

                session = botocore.session.get_session()
                options: dict[str, Any] = {
                    "region_name": self._region or session.get_config_variable("region"),
                    "config": botocore.config.Config(
                        retries={"mode": "standard", "total_max_attempts": 3},
                        connect_timeout=3,
                        read_timeout=10,
                    ),
                }
                if self._endpoint:
                    options["endpoint_url"] = self._endpoint
                    if self._endpoint.startswith(_LOCAL_HOSTS):
                        options["region_name"] = options["region_name"] or "us-east-1"
                        options["aws_access_key_id"] = "local"
                        options["aws_secret_access_key"] = "local"
                self._client = session.create_client("dynamodb", **options)
            return self._client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.connect()
        with self._lock:
            self._requests += 1
        try:
            result: dict[str, Any] = getattr(client, operation)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ActivityError(
                f"DynamoDB {operation} on {self.table} failed: {error.get('Code', '?')}: "
                f"{error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise ActivityError(
                f"DynamoDB {operation} on {self.table} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return result

    def put(self, records: Sequence[Activity], *, slot: int) -> None:
        """BatchWriteItem, 25 records a request; unprocessed items are sent again.

        Raises:
            ActivityError: a request failed, or items stayed unprocessed after 5 rounds.
        """
        for i in range(0, len(records), _BATCH):
            pending: dict[str, Any] = {
                self.table: [
                    {"PutRequest": {"Item": _item(r, slot)}} for r in records[i : i + _BATCH]
                ]
            }
            for _ in range(_ATTEMPTS):
                out = self._call("batch_write_item", RequestItems=pending)
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
            if pending:
                left = sum(len(v) for v in pending.values())
                raise ActivityError(
                    f"DynamoDB BatchWriteItem on {self.table}: {left} record(s) still "
                    f"unprocessed after {_ATTEMPTS} rounds"
                )

    def pairs(self, hour: datetime) -> set[UnitKey]:
        """A Query on the hour's partition, every page.

        Raises:
            ActivityError: a page failed, or an item is malformed.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            # A pair recorded a moment before the pass must be in it.
            "ConsistentRead": True,
            "KeyConditionExpression": "#h = :h",
            "ProjectionExpression": "#p",
            "ExpressionAttributeNames": {"#h": "hour", "#p": "pair"},
            "ExpressionAttributeValues": {":h": {"S": format_bucket_time(hour)}},
        }
        found: set[UnitKey] = set()
        while True:
            out = self._call("query", **kwargs)
            for item in out.get("Items") or []:
                found.add(_pair(item))
            start = out.get("LastEvaluatedKey")
            if not start:
                return found
            kwargs["ExclusiveStartKey"] = start


def _item(record: Activity, slot: int) -> dict[str, dict[str, str]]:
    hour = format_bucket_time(record.hour)
    return {
        "hour": {"S": hour},
        "pair": {"S": f"{record.model}#{record.account_id}"},
        "slot": {"N": str(slot)},
        "expiresAt": {"N": str(int(record.hour.timestamp()) + TTL_SECONDS)},
    }


def _pair(item: Any) -> UnitKey:
    pair = item.get("pair", {}).get("S") if isinstance(item, dict) else None
    model, sep, account = pair.partition("#") if isinstance(pair, str) else ("", "", "")
    if not sep or model not in SOURCE_MODELS or not account:
        raise ActivityError(f"malformed activity item: pair {pair!r}")
    return UnitKey(model, account)


class ActivityLog:
    """Records units' activity at most once per slot, and reads the reconcile's pairs.

    One per process and table (`activity_for`): in a warm Lambda the slot memory carries
    over between invocations, which is what makes a busy pair O(1) writes per slot.
    """

    def __init__(self, store: ActivityStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._slot = -1
        self._written: set[Activity] = set()

    def record(self, records: Iterable[Activity], now: datetime) -> int:
        """Write the records not yet written in ``now``'s slot; how many were written.

        Raises:
            ActivityError: the write failed (nothing of it is remembered as written).
        """
        slot = int(now.timestamp()) // SLOT_SECONDS
        with self._lock:
            if slot != self._slot:
                self._slot, self._written = slot, set()
            fresh = sorted(set(records) - self._written)
        if not fresh:
            return 0
        self.store.put(fresh, slot=slot)
        with self._lock:
            if slot == self._slot:
                self._written.update(fresh)
        return len(fresh)

    def active_pairs(self, now: datetime) -> set[UnitKey]:
        """The pairs recorded for the previous and current hour (two Queries).

        Raises:
            ActivityError: a Query failed.
        """
        pairs: set[UnitKey] = set()
        for hour in reconcile_hours(now):
            pairs |= self.store.pairs(hour)
        return pairs


_LOGS: dict[tuple[str, str | None, str | None], ActivityLog] = {}
_LOGS_LOCK = threading.Lock()


def activity_for(config: Config) -> ActivityLog | None:
    """The process's `ActivityLog` for the config's table; None without one."""
    if not config.activity_table:
        return None
    region = config.region or config.default_region
    key = (config.activity_table, config.activity_endpoint, region)
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None:
            table = DynamoActivityTable(
                config.activity_table, region=region, endpoint=config.activity_endpoint
            )
            log = _LOGS[key] = ActivityLog(table)
        return log
