"""A deploy rehearsed offline: `template.yaml` through the SAM transform AWS runs, per set.

cfn-lint checks the template as written; these tests check what AWS deploys: the template
transformed by `samtranslator` (`sam_rehearsal`), conditions resolved, linted again, and
the resources and IAM statements each code path needs. CI sets METRICS_AGG_REQUIRE_SAM=1,
so a missing samtranslator fails here instead of skipping.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("METRICS_AGG_REQUIRE_SAM") == "1":
    import samtranslator  # noqa: F401  (required: fail, do not skip)
else:
    pytest.importorskip("samtranslator")

import sam_rehearsal
from sam_rehearsal import Rehearsal, rehearse
from template_render import TEMPLATE

ROOT = TEMPLATE.parent
API = {"ApiId": "abcdefghijklmnopqrstuvwxyz", "ApiEndpoint": "https://x.example.com/graphql"}
MODELS = ("Item", "ScoreResult", "Task", "Evaluation", "Procedure", "FeedbackItem", "ChatSession")
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:metrics-agg/api-key"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:metrics-agg-alarms"


def _stream(model: str) -> str:
    return (
        f"arn:aws:dynamodb:eu-west-1:123456789012:table/{model}-{API['ApiId']}-NONE"
        "/stream/2024-05-01T09:00:00.000"
    )


SETS: dict[str, dict[str, str]] = {
    "defaults": {},
    "all streams": {
        **{f"{m}StreamArn": _stream(m) for m in MODELS},
        "ItemBatchSize": "500",
        "TaskBatchingWindowSeconds": "5",
        "ChatSessionParallelizationFactor": "3",
    },
    "arm64": {"Architecture": "arm64", "ItemStreamArn": _stream("Item")},
    "tracing": {"Tracing": "Active"},
    "api key": {"ApiKeySecretArn": SECRET},
    "reserved, no schedule, sweep on, alarm topic": {
        "ReservedConcurrency": "10",
        "ScheduleEnabled": "false",
        "SweepEnabled": "true",
        "AlarmTopicArn": TOPIC,
    },
}


@pytest.fixture(scope="module", params=list(SETS))
def deploy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    given = {**API, **SETS[request.param]}
    return rehearse(given, tmp_path_factory.mktemp("rehearsal"))


def _of_type(r: Rehearsal, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in r.rendered.resources.items() if v["Type"] == kind}


def _statements(r: Rehearsal) -> Iterator[dict[str, Any]]:
    """Every Allow statement of the function's role: its inline and attached policies."""
    role = r.rendered.resources["FunctionRole"]["Properties"]
    docs = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for policy in _of_type(r, "AWS::IAM::Policy").values():
        if {"Ref": "FunctionRole"} in policy["Properties"]["Roles"]:
            docs.append(policy["Properties"]["PolicyDocument"])
    for doc in docs:
        for statement in doc["Statement"]:
            if statement["Effect"] == "Allow":
                yield statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _granted(r: Rehearsal, action: str) -> list[Any]:
    return [
        resource
        for s in _statements(r)
        if action in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    ]


def test_transform_is_lint_clean(deploy: Rehearsal) -> None:
    errors = [m for m in sam_rehearsal.lint(deploy.transformed, deploy.given) if m[0] == "E"]
    assert errors == []


def test_stream_mappings_follow_the_streams_with_their_batching(deploy: Rehearsal) -> None:
    mappings = {
        k: v["Properties"]
        for k, v in _of_type(deploy, "AWS::Lambda::EventSourceMapping").items()
        if k != "BackfillMapping"
    }
    expected = {f"{m}Mapping" for m in MODELS if f"{m}StreamArn" in deploy.given}
    assert set(mappings) == expected
    params = deploy.rendered.parameters
    for model in MODELS:
        if f"{model}Mapping" not in mappings:
            continue
        props = mappings[f"{model}Mapping"]
        assert props["EventSourceArn"] == _stream(model)
        assert props["BatchSize"] == params[f"{model}BatchSize"]
        assert props["MaximumBatchingWindowInSeconds"] == params[f"{model}BatchingWindowSeconds"]
        assert props["ParallelizationFactor"] == params[f"{model}ParallelizationFactor"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["OnFailureQueue", "Arn"]
        }
    if deploy.given.get("ItemBatchSize"):
        assert mappings["ItemMapping"]["BatchSize"] == "500"


def test_queues_redrive_and_the_backfill_mapping(deploy: Rehearsal) -> None:
    queues = _of_type(deploy, "AWS::SQS::Queue")
    assert set(queues) == {
        "OnFailureQueue",
        "InvokeFailureQueue",
        "BackfillQueue",
        "BackfillDeadLetterQueue",
        "BackfillProgressQueue",
    }
    redrive = queues["BackfillQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["BackfillDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == deploy.rendered.parameters["BackfillMaxReceiveCount"]
    backfill = deploy.rendered.properties("BackfillMapping")
    assert backfill["EventSourceArn"] == {"Fn::GetAtt": ["BackfillQueue", "Arn"]}
    invoke = _of_type(deploy, "AWS::Lambda::EventInvokeConfig")
    ((config,),) = [list(invoke.values())]
    assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["InvokeFailureQueue", "Arn"]
    }


def test_schedule_alarms_and_dashboard(deploy: Rehearsal) -> None:
    rules = {
        r["Properties"]["ScheduleExpression"]: r["Properties"]
        for r in _of_type(deploy, "AWS::Events::Rule").values()
    }
    assert set(rules) == {"rate(5 minutes)", "rate(1 day)"}  # the reconcile, the sweep
    on = deploy.given.get("ScheduleEnabled", "true") == "true"
    assert rules["rate(5 minutes)"]["State"] == ("ENABLED" if on else "DISABLED")
    (finalize,) = rules["rate(5 minutes)"]["Targets"]
    assert "Input" not in finalize  # the recorded pairs, not discovery
    sweep = deploy.given.get("SweepEnabled", "false") == "true"
    assert rules["rate(1 day)"]["State"] == ("ENABLED" if sweep else "DISABLED")
    (target,) = rules["rate(1 day)"]["Targets"]
    assert '"sweep": true' in target["Input"]
    alarms = _of_type(deploy, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 7
    for alarm in alarms.values():
        actions = alarm["Properties"].get("AlarmActions")
        assert actions == ([TOPIC] if "AlarmTopicArn" in deploy.given else None)
    assert len(_of_type(deploy, "AWS::CloudWatch::Dashboard")) == 1
    function = deploy.rendered.properties("Function")
    reserved = function.get("ReservedConcurrentExecutions")
    assert reserved == deploy.given.get("ReservedConcurrency")
    assert function["Architectures"] == [deploy.given.get("Architecture", "x86_64")]
    assert function["LoggingConfig"]["LogFormat"] == "JSON"


def _code_fields() -> set[tuple[str, str]]:
    """(type, field) of every top-level field the code's GraphQL documents send."""
    from graphql import OperationDefinitionNode, parse

    from metrics_agg.graphql.writes import _write_document

    texts = [p.read_text() for p in (ROOT / "python/metrics_agg/graphql/documents").iterdir()]
    texts.append(_write_document(1, 1))
    found = set()
    for text in texts:
        for op in parse(text).definitions:
            assert isinstance(op, OperationDefinitionNode)
            kind = op.operation.value.capitalize()
            for sel in op.selection_set.selections:
                found.add((kind, sel.name.value))  # type: ignore[attr-defined]
    return found


def test_appsync_grants_every_field_the_code_sends_and_no_other(deploy: Rehearsal) -> None:
    granted = set()
    for resource in _granted(deploy, "appsync:GraphQL"):
        m = re.search(r"/types/(\w+)/fields/(\w+)$", resource["Fn::Sub"])
        assert m, resource
        granted.add((m.group(1), m.group(2)))
    fields = _code_fields()
    assert ("Mutation", "createAggregatedMetrics") in fields
    assert granted == fields


def test_sqs_sends_to_every_queue_the_code_and_lambda_send_to(deploy: Rehearsal) -> None:
    send = _granted(deploy, "sqs:SendMessage")
    env = deploy.rendered.properties("Function")["Environment"]["Variables"]
    # The code sends to the queues whose URLs it is given; Lambda (with the function's
    # role) to the on-failure destinations.
    targets = {v["Ref"] for k, v in env.items() if k.endswith("_URL") and isinstance(v, dict)}
    targets |= {"OnFailureQueue", "InvokeFailureQueue"}
    assert targets >= {"BackfillProgressQueue", "BackfillQueue"}
    for queue in targets:
        assert {"Fn::GetAtt": [queue, "Arn"]} in send, queue
    receive = _granted(deploy, "sqs:ReceiveMessage")
    assert receive == [{"Fn::GetAtt": ["BackfillQueue", "Arn"]}]


def test_stream_reads_only_on_the_mapped_streams(deploy: Rehearsal) -> None:
    streams = {_stream(m) for m in MODELS if f"{m}StreamArn" in deploy.given}
    for action in ("dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"):
        assert set(_granted(deploy, action)) == streams
    assert _granted(deploy, "dynamodb:ListStreams") == (["*"] if streams else [])


def test_activity_table_and_only_its_two_calls(deploy: Rehearsal) -> None:
    """The reconcile's pairs: the stack's own table, written in batches and queried, and no
    other DynamoDB call than the stream reads on any resource."""
    (name,) = _of_type(deploy, "AWS::DynamoDB::Table")
    assert name == "ActivityTable"
    table = {"Fn::GetAtt": ["ActivityTable", "Arn"]}
    assert _granted(deploy, "dynamodb:BatchWriteItem") == [table]
    assert _granted(deploy, "dynamodb:Query") == [table]
    stream_reads = {
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
        "dynamodb:ListStreams",
    }
    actions = {
        a
        for s in _statements(deploy)
        for a in _as_list(s["Action"])
        if str(a).startswith("dynamodb:")
    }
    assert actions - stream_reads == {"dynamodb:BatchWriteItem", "dynamodb:Query"}
    env = deploy.rendered.properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_ACTIVITY_TABLE"] == {"Ref": "ActivityTable"}
    alarm = deploy.rendered.properties("ActivityNotRecordedAlarm")
    assert alarm["MetricName"] == "ActivityRecordsNotWritten"


def test_nothing_on_star_beyond_what_cannot_be_narrowed(deploy: Rehearsal) -> None:
    star = {
        action
        for s in _statements(deploy)
        if "*" in _as_list(s["Resource"])
        for action in _as_list(s["Action"])
    }
    assert star <= {"dynamodb:ListStreams", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    if deploy.given.get("Tracing") == "Active":
        assert "xray:PutTraceSegments" in star


@pytest.mark.parametrize("given", [SECRET, SECRET + "-AbC123"])
def test_secret_grant_matches_the_real_arn(tmp_path: Path, given: str) -> None:
    """Secrets Manager appends -XXXXXX to a secret's name; an ARN given without it must
    still match the real one (IAM's ? is one character)."""
    r = rehearse({**API, "ApiKeySecretArn": given}, tmp_path)
    resources = []
    for resource in _granted(r, "secretsmanager:GetSecretValue"):
        if isinstance(resource, dict):
            resource = resource["Fn::Sub"].replace("${ApiKeySecretArn}", given)
        resources.append(resource)
    real = SECRET + "-AbC123"
    assert any(fnmatch.fnmatchcase(real, pattern) for pattern in resources), resources
    other = SECRET + "-other-AbC123"  # another secret whose name merely starts the same
    assert not any(fnmatch.fnmatchcase(other, pattern) for pattern in resources)


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt":
                yield inner[0]
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                yield from (v.split(".")[0] for v in re.findall(r"\$\{([^}!]+)\}", text))
                if not isinstance(inner, str):
                    yield from _references(inner[1])
            else:
                yield from _references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _references(inner)


def test_nothing_invokes_the_function_before_it_may_send(deploy: Rehearsal) -> None:
    """First deploy: a mapping or the schedule can invoke as soon as it exists, and the
    invocation may send (progress, rechecks), so each must wait for the SQS send policy."""
    resources = deploy.rendered.resources

    def depends(logical_id: str, seen: set[str]) -> set[str]:
        resource = resources[logical_id]
        direct = set(_as_list(resource.get("DependsOn", []))) | set(_references(resource))
        direct &= set(resources)
        for d in direct - seen:
            seen.add(d)
            depends(d, seen)
        return seen

    invokers = [
        k
        for k, v in resources.items()
        if v["Type"] in ("AWS::Lambda::EventSourceMapping", "AWS::Events::Rule")
    ]
    assert invokers
    for logical_id in [*invokers, "Function"]:
        assert "BackfillPolicy" in depends(logical_id, set()), logical_id


def test_packaged_template_size_and_the_guide_uploads_it() -> None:
    """CloudFormation takes a template body of at most 51,200 bytes inline; a larger one
    must go through S3. The guide's deploy commands always upload it."""
    size = len(sam_rehearsal.packaged_text().encode())
    assert size > 40_000  # the measure sees the whole template
    commands = []
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for line in doc.read_text(encoding="utf-8").splitlines():
            if re.match(r"\s*(sam deploy|aws cloudformation deploy)\b", line):
                commands.append(line.strip())
    assert commands
    if size > sam_rehearsal.INLINE_LIMIT:
        for command in commands:
            assert re.search(r"--(resolve-s3|s3-bucket|guided)\b", command), command
    for command in commands:
        if command.startswith("sam deploy"):  # never the stale .aws-sam/build copy
            assert "--template-file template.yaml" in command, command
