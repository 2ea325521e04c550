"""The CloudWatch dashboard and alarms of template.yaml name only metrics the code emits.

A dashboard widget or an alarm on a metric nobody emits shows "no data" forever and never
fires, silently. The emitted set is read from what `emf.render` actually writes (metric
names, dimension sets); event kinds from `event_kinds.event_kind`'s answers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics_agg.aggregator import emf

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
EVENT_KINDS = {"stream", "scheduled", "recount", "sqs"}
LAMBDA_METRICS = {"Invocations", "Errors", "Throttles", "IteratorAge", "Duration"}
SQS_METRICS = {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags as their long forms (`!Ref x` -> {"Ref": x})."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else ("Condition" if suffix == "Condition" else f"Fn::{suffix}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    doc = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_Loader)
    return dict(doc["Resources"])


def _emitted() -> tuple[set[str], list[set[str]]]:
    """(metric names, dimension sets) of an EMF line with every figure present."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(emf.InvocationMetrics):
        values[f.name] = "stream" if f.name == "event_kind" else 1
    doc = json.loads(emf.render(emf.InvocationMetrics(**values)))
    names: set[str] = set()
    dims: list[set[str]] = []
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        assert directive["Namespace"] == emf.NAMESPACE
        names |= {m["Name"] for m in directive["Metrics"]}
        dims += [set(d) for d in directive["Dimensions"]]
    return names, dims


def _dashboard_metrics(
    resources: dict[str, Any],
) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric, dimensions, options) of every dashboard metric line."""
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = re.sub(r"\$\{[^}]+\}", "X", body)
    out = []
    for widget in json.loads(body)["widgets"]:
        props = widget["properties"]
        for line in props.get("metrics", []):
            options = line[-1] if isinstance(line[-1], dict) else {}
            parts = [p for p in line if isinstance(p, str)]
            assert "." not in parts, "write metric lines in full: the test reads them"
            namespace, name, *rest = parts
            dims = dict(zip(rest[::2], rest[1::2], strict=True))
            out.append((namespace, name, dims, {"stat": props.get("stat"), **options}))
    return out


def _alarm_metrics(resources: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for res in resources.values():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            p = res["Properties"]
            dims = {d["Name"]: d["Value"] for d in p.get("Dimensions", [])}
            out.append((p["Namespace"], p["MetricName"], dims))
    return out


def test_every_custom_metric_named_is_emitted_with_its_dimensions(
    resources: dict[str, Any],
) -> None:
    names, dim_sets = _emitted()
    named = [(ns, n, d) for ns, n, d, _ in _dashboard_metrics(resources)]
    named += _alarm_metrics(resources)
    custom = [(n, d) for ns, n, d in named if ns == emf.NAMESPACE]
    assert custom
    for name, dims in custom:
        assert name in names, f"{name} is on the dashboard or an alarm but never emitted"
        assert set(dims) in dim_sets, f"{name} with dimensions {sorted(dims)}: not emitted so"
        if "EventKind" in dims:
            assert dims["EventKind"] in EVENT_KINDS
    for ns, name, _ in named:
        if ns == "AWS/Lambda":
            assert name in LAMBDA_METRICS
        elif ns == "AWS/SQS":
            assert name in SQS_METRICS
        else:
            assert ns == emf.NAMESPACE, ns


def test_the_dashboard_shows_what_operators_watch(resources: dict[str, Any]) -> None:
    lines = _dashboard_metrics(resources)
    freshness = {o.get("stat") for ns, n, _, o in lines if n == "FreshnessSeconds"}
    assert {"p50", "p99"} <= freshness
    shown = {n for _, n, _, _ in lines}
    assert {
        "IteratorAge",
        "Invocations",
        "Errors",
        "Throttles",
        "FailedUnits",
        "RecordsCounted",
        "HttpRequests",
        "DriftRepaired",
    } <= shown
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for queue in ("OnFailureQueue", "BackfillDeadLetterQueue"):
        assert f"${{{queue}.QueueName}}" in body


def test_alarms_cover_lag_failures_errors_and_drift(resources: dict[str, Any]) -> None:
    alarms = {(ns, n) for ns, n, _ in _alarm_metrics(resources)}
    assert ("AWS/Lambda", "IteratorAge") in alarms
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in alarms
    assert ("AWS/Lambda", "Errors") in alarms
    assert (emf.NAMESPACE, "DriftRepaired") in alarms
    for res in resources.values():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            actions = res["Properties"]["AlarmActions"]
            assert actions == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }


def test_backfill_queue_has_a_dead_letter_queue_and_a_bounded_mapping(
    resources: dict[str, Any],
) -> None:
    queue = resources["BackfillQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["BackfillDeadLetterQueue", "Arn"]
    }
    mapping = resources["BackfillMapping"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["BackfillQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "BackfillMaximumConcurrency"}}
