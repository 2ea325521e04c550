"""The scheduled pass finds active pairs at a cost that follows activity.

Against the local stack. The 5-minute pass reads the pairs the stream path recorded
(`aggregator.activity`, tests/test_activity.py) and asks the API nothing to find them. The
sweep (the opt-in daily schedule) discovers them: accounts come from `listAccounts`; each
account costs one key-condition query on `byAccountTimeRangeRecord` (timeRangeStart >=
now - 2 h), which reads nothing of its history. Explicit account ids still win. Accounts
discovery cannot finish are reported, not dropped. And no operation that a schedule or
stream path sends is an unkeyed `list<Model>` query (a Scan), except `listAccounts` itself.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
    value_from_ast_untyped,
)

from metrics_agg.aggregator import pipeline
from metrics_agg.deadline import Deadline
from metrics_agg.graphql import SCHEMA_PATH, discovery
from metrics_agg.graphql.transport import GraphQLClient
from metrics_agg.local.server import LocalStack, seed_accounts, seed_records
from metrics_agg.models import SOURCE_MODELS
from recording_client import RecordingClient
from truth_helpers import assert_matches_truth

SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
# What the daily sweep schedule sends (template.yaml `Sweep`).
SWEEP = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {"sweep": True}}
HISTORY_ACCOUNTS = ("acct-1", "acct-2", "acct-3")
# The one scan a schedule path may send: the Account table, one row per account.
ALLOWED_SCANS = frozenset({"listAccounts"})


def _fields(client: RecordingClient) -> list[str]:
    return [name for s in client.requests for name in _list_fields(s.document, s.variables)]


def _list_fields(document: str, variables: Mapping[str, Any]) -> list[str]:
    """Top-level list fields of a document, each marked ``!scan`` when it names no key."""
    schema = _schema()
    out = []
    for definition in parse(document).definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for sel in definition.selection_set.selections:
            if not isinstance(sel, FieldNode) or not sel.name.value.startswith("list"):
                continue
            name = sel.name.value
            assert schema.query_type is not None
            field = schema.query_type.fields[name]
            # A list-by-index query requires its partition key (a non-null argument); the
            # primary-key list takes `accountId` optionally: without it, a Scan.
            keyed = any(isinstance(a.type, GraphQLNonNull) for a in field.args.values())
            if not keyed:
                args = {
                    a.name.value: value_from_ast_untyped(a.value, variables) for a in sel.arguments
                }
                keyed = args.get("accountId") is not None
            out.append(name if keyed else f"{name}!scan")
    return out


@functools.cache
def _schema() -> GraphQLSchema:
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def _scans(client: RecordingClient) -> set[str]:
    return {f[: -len("!scan")] for f in _fields(client) if f.endswith("!scan")}


def test_scan_guard_catches_the_old_discovery_query() -> None:
    # The document the scheduled pass used to send, and the same query given a key.
    old = """query Q($filter: ModelAggregatedMetricsFilterInput, $limit: Int, $nextToken: String) {
      listAggregatedMetrics(filter: $filter, limit: $limit, nextToken: $nextToken) {
        items { accountId recordType } nextToken } }"""
    assert _list_fields(old, {"filter": {"updatedAt": {"ge": "x"}}}) == [
        "listAggregatedMetrics!scan"
    ]
    keyed = old.replace("listAggregatedMetrics(", 'listAggregatedMetrics(accountId: "a", ')
    assert _list_fields(keyed, {}) == ["listAggregatedMetrics"]


def _history(stack: LocalStack, now: datetime) -> None:
    """Three accounts with half a day of Items, recounted; nothing in the last 3 hours.

    (scripts/measure_discovery.py measures the same with three days of history.)
    """
    end = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=12)
    with GraphQLClient(stack.config()) as client:
        for n, account in enumerate(HISTORY_ACCOUNTS):
            seed_records(stack.store, "Item", account, 400, start, end, seed=n, stream=False)
            outcome = pipeline.recount(
                config=stack.config(),
                account_id=account,
                model="Item",
                start=start,
                end=end,
                client=client,
            )
            assert outcome.ok


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _activity(stack: LocalStack, account: str, now: datetime) -> None:
    """One Task written now, delivered to the stream path (one active pair)."""
    table = "Task-local-NONE"
    after = stack.store.stream_end(table)
    stamp = _stamp(now - timedelta(minutes=1))
    stack.store.create(
        "Task",
        {"id": str(uuid.uuid4()), "accountId": account, "createdAt": stamp, "updatedAt": stamp},
    )
    event = {"Records": stack.store.read_stream(table, after, 10)}
    with RecordingClient(stack.config()) as client:
        assert pipeline.handle_event(event, config=stack.config(), client=client) == {
            "batchItemFailures": []
        }
        assert not _scans(client), _fields(client)


def _recent_rows(stack: LocalStack, account: str, since: datetime) -> int:
    cut = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return sum(1 for r in stack.store.all_metrics(account) if r["timeRangeStart"] >= cut)


@pytest.mark.parametrize("model", sorted(SOURCE_MODELS))
def test_stream_path_sends_no_scan(local_stack: LocalStack, model: str) -> None:
    now = datetime.now(UTC)
    table = f"{model}-local-NONE"
    after = local_stack.store.stream_end(table)
    stamp = _stamp(now)
    record = {"id": "r1", "accountId": "acct", "createdAt": stamp, "updatedAt": stamp}
    if model == "FeedbackItem":
        record |= {"scorecardId": "sc", "scoreId": "s", "editedAt": stamp}
    local_stack.store.create(model, record)
    local_stack.store.update(model, ["r1"], {"updatedAt": _stamp(now + timedelta(seconds=1))})
    local_stack.store.delete(model, ["r1"])
    event = {"Records": local_stack.store.read_stream(table, after, 10)}
    assert len(event["Records"]) == 3  # INSERT, MODIFY, REMOVE
    with RecordingClient(local_stack.config()) as client:
        out = pipeline.handle_event(event, config=local_stack.config(), client=client)
        assert out == {"batchItemFailures": []}
        assert _fields(client) and not _scans(client), _fields(client)


def test_scheduled_pass_asks_the_api_nothing_to_find_pairs(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_AGG_ACCOUNT_IDS", raising=False)
    stack = local_stack
    now = datetime.now(UTC)
    _history(stack, now)
    _activity(stack, "acct-2", now)
    stack.store.rows_read.clear()
    stack.activity_faults.reset_counts()
    with RecordingClient(stack.config()) as client:
        out = pipeline.handle_event(SCHEDULED, config=stack.config(), client=client)
        fields = _fields(client)
    assert (out["status"], out["units"]) == ("SUCCESS", 1)
    assert not _scans(client) and discovery.RECENT_QUERY not in fields, fields
    reads = stack.store.rows_read
    assert reads["Account"] == 0 and reads["byAccountTimeRangeRecord"] == 0
    # The pairs came from two Queries of the activity table, one per reconciled hour.
    assert stack.activity_faults.field_requests["dynamodb.Query"] == 2
    assert_matches_truth(stack.store, "acct-2")


def test_sweep_reads_only_the_active_accounts_recent_rows(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_AGG_ACCOUNT_IDS", raising=False)
    stack = local_stack
    now = datetime.now(UTC)
    _history(stack, now)
    _activity(stack, "acct-2", now)
    stack.store.rows_read.clear()
    with RecordingClient(stack.config()) as client:
        out = pipeline.handle_event(SWEEP, config=stack.config(), client=client)
        fields = _fields(client)
    assert (out["status"], out["units"]) == ("SUCCESS", 1)
    assert _scans(client) == {"listAccounts"}
    # One key-condition query per account; only acct-2 has recent rows to read.
    recent = "listAggregatedMetricsByAccountIdAndTimeRangeStartAndRecordType"
    assert fields.count(recent) == len(HISTORY_ACCOUNTS)
    reads = stack.store.rows_read
    assert reads["AggregatedMetrics"] == 0  # the base table was never scanned
    assert reads["Account"] == len(HISTORY_ACCOUNTS)
    assert reads["byAccountTimeRangeRecord"] == _recent_rows(
        stack, "acct-2", now - timedelta(hours=2)
    )
    assert 0 < reads["byAccountTimeRangeRecord"] <= 16  # tasks: 1-, 5-, 15-, 60-min buckets
    assert_matches_truth(stack.store, "acct-2")


def test_explicit_account_ids_win(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    seed_accounts(local_stack.store, ["listed-only"])
    configured = local_stack.config(account_ids=("env-acct",))  # METRICS_AGG_ACCOUNT_IDS
    with RecordingClient(local_stack.config()) as client:
        out = pipeline.handle_event(SCHEDULED, config=configured, client=client, now=now)
        sent = _fields(client)
        assert out["units"] == 7 and not _scans(client), sent
        assert discovery.RECENT_QUERY not in sent
    with RecordingClient(local_stack.config()) as client:
        event = {**SCHEDULED, "accountIds": ["event-acct"]}
        out = pipeline.handle_event(event, config=local_stack.config(), client=client, now=now)
        assert out["units"] == 7 and "listAccounts!scan" not in _fields(client)


def test_failed_account_query_is_reported_not_dropped(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_AGG_ACCOUNT_IDS", raising=False)
    now = datetime.now(UTC)
    seed_accounts(local_stack.store, ["a-quiet", "b-broken", "c-quiet"])
    _activity(local_stack, "a-quiet", now)
    local_stack.faults.add(field=discovery.RECENT_QUERY, nth=2, action="http_400")
    config = local_stack.config(read_parallelism=1)  # accounts in order: b is the 2nd query
    with GraphQLClient(config) as client:
        out = pipeline.handle_event(SWEEP, config=config, client=client)
    assert out["status"] == "PARTIAL"
    assert out["failedUnits"] == ["*/b-broken"]
    assert out["units"] == 2  # Task · a-quiet recounted, b-broken reported


def test_deadline_share_reports_the_accounts_left(
    make_local_stack: Callable[..., LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_AGG_ACCOUNT_IDS", raising=False)
    stack = make_local_stack()
    accounts = [f"acct-{n:02d}" for n in range(12)]
    seed_accounts(stack.store, accounts)
    # Every per-account query takes 0.5 s; discovery may use half of a 2 s deadline.
    stack.faults.add(field=discovery.RECENT_QUERY, action="delay", delay=0.5, times=None)
    config = stack.config(read_parallelism=2)
    with GraphQLClient(config) as client:
        found = discovery.list_recent_metric_scopes(
            client, since=datetime.now(UTC) - timedelta(hours=2), deadline=Deadline.after(2.0)
        )
    assert found.accounts == len(accounts)
    unfinished = [a for a, _ in found.unfinished]
    assert 0 < len(unfinished) < len(accounts)  # some finished in the share, the rest left
    queried = stack.faults.field_requests[discovery.RECENT_QUERY]
    assert queried < len(accounts)  # accounts past the share were not even queried
    assert set(unfinished) | set(accounts[: len(accounts) - len(unfinished)]) == set(accounts)
    assert all(why for _, why in found.unfinished)


def test_account_listing_pages(local_stack: LocalStack) -> None:
    accounts = [f"acct-{n:03d}" for n in range(25)]
    seed_accounts(local_stack.store, accounts)
    config = local_stack.config(page_limit=7)
    with RecordingClient(config) as client:
        assert discovery.list_account_ids(client) == accounts
        assert _fields(client).count("listAccounts!scan") == 4


def test_seeded_records_create_their_account(local_stack: LocalStack) -> None:
    now = datetime.now(UTC)
    seed_records(local_stack.store, "Task", "fresh", 3, now - timedelta(hours=1), now)
    assert local_stack.store.get("Account", ["fresh"]) is not None
    assert seed_accounts(local_stack.store, ["fresh", "other"]) == 1
