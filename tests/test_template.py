"""template.yaml rendered with the parameter sets a first deploy uses (issue 14).

cfn-lint (in `.ci/run`) checks the template's shape; these tests check what it becomes
once the parameters are in: no IAM statement without resources, a mapping per given stream
and no other, reserved concurrency only when asked, an arm64 deploy that needs no x86_64
zip, and the signing region set for a custom domain.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from metrics_agg.config import Config
from metrics_agg.models import SOURCE_MODELS, ErrorRule
from template_render import TEMPLATE, Rendered, load_template, local_artifacts, render

ROOT = TEMPLATE.parent
API = {
    "ApiId": "abcdefghijklmnopqrstuvwxyz",
    "ApiEndpoint": "https://metrics.example.com/graphql",  # a custom domain: no region in it
}
MODELS = ("Item", "ScoreResult", "Task", "Evaluation", "Procedure", "FeedbackItem", "ChatSession")


def _stream(model: str) -> str:
    return (
        f"arn:aws:dynamodb:eu-west-1:123456789012:table/{model}-{API['ApiId']}-NONE"
        "/stream/2024-05-01T09:00:00.000"
    )


def _statements(r: Rendered) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for policy in r.properties("FunctionRole")["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            out.append((policy["PolicyName"], statement))
    return out


def _mappings(r: Rendered) -> dict[str, dict[str, Any]]:
    """The stream mappings (the backfill queue's SQS mapping is always there, issue 12)."""
    assert r.resources["BackfillMapping"]["Type"] == "AWS::Lambda::EventSourceMapping"
    return {
        k: v
        for k, v in r.resources.items()
        if v["Type"] == "AWS::Lambda::EventSourceMapping" and k != "BackfillMapping"
    }


STREAM_SETS = {
    "no streams": (),
    "one stream": ("FeedbackItem",),
    "all streams": MODELS,
}


@pytest.mark.parametrize("models", STREAM_SETS.values(), ids=STREAM_SETS.keys())
def test_every_policy_statement_has_resources(models: tuple[str, ...]) -> None:
    """IAM rejects a statement with an empty Resource: the default parameters must deploy."""
    r = render({**API, **{f"{m}StreamArn": _stream(m) for m in models}})
    for policy, statement in _statements(r):
        resource = statement.get("Resource")
        assert resource, f"policy {policy}: a statement without resources: {statement}"
        for item in resource if isinstance(resource, list) else [resource]:
            assert item not in ("", None), f"policy {policy}: empty resource in {statement}"


@pytest.mark.parametrize("models", STREAM_SETS.values(), ids=STREAM_SETS.keys())
def test_stream_permissions_and_mappings_follow_the_given_streams(
    models: tuple[str, ...],
) -> None:
    r = render({**API, **{f"{m}StreamArn": _stream(m) for m in models}})
    mappings = _mappings(r)
    assert {m["Properties"]["EventSourceArn"] for m in mappings.values()} == {
        _stream(m) for m in models
    }
    assert len(mappings) == len(models)
    read = [s for _, s in _statements(r) if "dynamodb:GetRecords" in s.get("Action", [])]
    if not models:
        assert read == []
        assert "streams" not in {p for p, _ in _statements(r)}
    else:
        (statement,) = read
        assert sorted(statement["Resource"]) == sorted(_stream(m) for m in models)


def test_every_model_has_a_guarded_mapping() -> None:
    """Each mapping exists only with its stream ARN (an empty EventSourceArn fails)."""
    doc = load_template()
    for model in MODELS:
        mapping = doc["Resources"][f"{model}Mapping"]
        assert mapping["Condition"] == f"Has{model}"
        assert doc["Conditions"][f"Has{model}"] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": f"{model}StreamArn"}, ""]}]
        }


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", None), ("12", "12")])
def test_reserved_concurrency_zero_means_not_reserved(
    value: str | None, expected: str | None
) -> None:
    params = dict(API) if value is None else {**API, "ReservedConcurrency": value}
    props = render(params).properties("Function")
    assert props.get("ReservedConcurrentExecutions") == expected
    assert load_template()["Parameters"]["ReservedConcurrency"]["MinValue"] == 0


def _build_layer_output() -> str:
    """The zip `lambda/build_layer.sh` leaves for the template, whatever --arch."""
    script = (ROOT / "lambda" / "build_layer.sh").read_text(encoding="utf-8")
    m = re.search(r'^DEPLOY_ZIP="([^"$]+)"$', script, re.MULTILINE)
    assert m, "build_layer.sh no longer names DEPLOY_ZIP"
    return m.group(1)


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_a_fresh_checkout_deploys_either_architecture(architecture: str) -> None:
    """`sam package` uploads every ContentUri whatever its Condition: after
    `build_layer.sh --arch <a>` alone, each of them must exist."""
    built = {_build_layer_output(), "lambda/function/"}
    assert local_artifacts() <= built
    r = render({**API, "Architecture": architecture})
    assert r.failed_rules == ()
    assert r.properties("Function")["Architectures"] == [architecture]
    layer = r.properties("Layer")
    assert layer["CompatibleArchitectures"] == [architecture]
    assert r.properties("Function")["Layers"] == [{"Ref": "Layer"}]


def test_a_published_layer_replaces_the_bundled_one() -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:layer:metrics-agg-arm64:3"
    r = render({**API, "Architecture": "arm64", "LayerArn": arn})
    assert "Layer" not in r.resources
    assert r.properties("Function")["Layers"] == [arn]


def test_function_code_is_the_handler_alone() -> None:
    (code_uri,) = {
        r["Properties"]["CodeUri"]
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    }
    files = {
        p.relative_to(ROOT / code_uri).as_posix()
        for p in (ROOT / code_uri).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert files == {"handler.py"}


def test_signing_region_is_the_stack_region() -> None:
    """A custom domain names no region; Lambda's AWS_REGION is the fallback in Config, and
    the template sets METRICS_AGG_REGION explicitly (the IAM policy already requires the
    stack to be in the API's region)."""
    env = render(API).properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_REGION"] == {"Ref": "AWS::Region"}
    assert env["PLEXUS_API_URL"] == API["ApiEndpoint"]


def test_role_has_a_stable_name_for_allow_listing() -> None:
    r = render(API)
    assert r.properties("FunctionRole")["RoleName"] == {
        "Fn::Sub": "${AWS::StackName}-${AWS::Region}"
    }
    assert r.outputs["FunctionRoleName"]["Value"] == {"Ref": "FunctionRole"}


@pytest.mark.parametrize("tracing", ["PassThrough", "Active"])
def test_tracing_parameter_and_its_permission(tracing: str) -> None:
    r = render({**API, "Tracing": tracing})
    assert r.properties("Function")["Tracing"] == tracing
    xray = [s for _, s in _statements(r) if "xray:PutTraceSegments" in s["Action"]]
    assert len(xray) == (1 if tracing == "Active" else 0)


def test_schedule_failures_are_bounded_and_land_in_a_queue() -> None:
    r = render(API)
    config = r.properties("Function")["EventInvokeConfig"]
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    target = config["DestinationConfig"]["OnFailure"]
    assert target == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["InvokeFailureQueue", "Arn"]}}
    send = [s for _, s in _statements(r) if s["Action"] == "sqs:SendMessage"]
    assert {"Fn::GetAtt": ["InvokeFailureQueue", "Arn"]} in send[0]["Resource"]


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_log_group_deletion_policy_is_a_parameter(policy: str) -> None:
    doc = load_template()
    assert "AWS::LanguageExtensions" in doc["Transform"]  # resolves Ref in DeletionPolicy
    group = render({**API, "LogGroupDeletionPolicy": policy}).resources["FunctionLogGroup"]
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == (policy, policy)


def test_taggable_resources_carry_the_stack_tag() -> None:
    r = render(API)
    assert r.properties("Function")["Tags"]["metrics-agg:stack"] == {"Ref": "AWS::StackName"}
    for logical_id in ("FunctionRole", "FunctionLogGroup", "OnFailureQueue", "InvokeFailureQueue"):
        tags = {t["Key"]: t["Value"] for t in r.properties(logical_id)["Tags"]}
        assert tags["metrics-agg:stack"] == {"Ref": "AWS::StackName"}, logical_id


def test_emf_stack_dimension_comes_from_the_stack_name() -> None:
    env = render(API).properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_STACK"] == {"Ref": "AWS::StackName"}


def test_renderer_rejects_unknown_parameters(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="NoSuchParameter"):
        render({**API, "NoSuchParameter": "x"})


def test_error_rules_parameter_reaches_the_function_config() -> None:
    """ErrorRules -> METRICS_AGG_ERRORS (issue 13): empty keeps upstream's rules, a JSON
    value overrides the models it names, exactly as the function's Config reads it."""
    base = {"PLEXUS_API_URL": "https://x.appsync-api.eu-west-1.amazonaws.com/graphql"}
    env = render(API).properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_ERRORS"] == ""
    defaults = Config.from_env({**base, "METRICS_AGG_ERRORS": env["METRICS_AGG_ERRORS"]})
    assert defaults.error_rules() == {m: s.errors for m, s in SOURCE_MODELS.items()}
    rules = '{"Task": [{"field": "status", "values": ["FAILED", "CANCELLED"]}], "Procedure": []}'
    env = render({**API, "ErrorRules": rules}).properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_ERRORS"] == rules
    got = Config.from_env({**base, "METRICS_AGG_ERRORS": env["METRICS_AGG_ERRORS"]})
    assert got.error_rules()["Task"] == (ErrorRule("status", ("FAILED", "CANCELLED")),)
    assert got.error_rules()["Procedure"] == ()
    assert got.error_rules()["ScoreResult"] == SOURCE_MODELS["ScoreResult"].errors


@pytest.mark.parametrize("delay", [None, "900"])
def test_rechecks_go_to_the_backfill_queue_with_a_delay(delay: str | None) -> None:
    """Stream invocations queue their rechecks on the backfill queue (docs/incremental.md),
    which the role may send to; the delay is a parameter within SQS's 0-900 s."""
    r = render({**API, **({"RecheckDelaySeconds": delay} if delay else {})})
    env = r.properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_RECHECK_QUEUE_URL"] == {"Ref": "BackfillQueue"}
    assert str(env["METRICS_AGG_RECHECK_DELAY_SECONDS"]) == (delay or "120")
    param = load_template()["Parameters"]["RecheckDelaySeconds"]
    assert (param["MinValue"], param["MaxValue"]) == (0, 900)
    statements = r.resources["BackfillPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Action"] == "sqs:SendMessage"
        and s["Resource"] == {"Fn::GetAtt": ["BackfillQueue", "Arn"]}
        for s in statements
    )
    queued = Config.from_env(
        {
            "PLEXUS_API_URL": "https://x.appsync-api.eu-west-1.amazonaws.com/graphql",
            "METRICS_AGG_RECHECK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
            "METRICS_AGG_RECHECK_DELAY_SECONDS": str(env["METRICS_AGG_RECHECK_DELAY_SECONDS"]),
        }
    )
    assert queued.recheck_delay_seconds == int(delay or 120)


def test_activity_table_is_the_stacks_with_least_privilege() -> None:
    """The table the 5-minute reconcile reads its pairs from (docs/operations.md): owned by
    the stack, on-demand, items expiring by TTL, and the role may only write batches to it
    and query it."""
    r = render(API)
    table = r.resources["ActivityTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == [
        ("hour", "HASH"),
        ("pair", "RANGE"),
    ]
    dynamo = [
        s
        for _, s in _statements(r)
        if any(str(a).startswith("dynamodb:") for a in _list(s["Action"]))
        and s["Resource"] == {"Fn::GetAtt": ["ActivityTable", "Arn"]}
    ]
    assert len(dynamo) == 1
    assert sorted(_list(dynamo[0]["Action"])) == ["dynamodb:BatchWriteItem", "dynamodb:Query"]
    env = r.properties("Function")["Environment"]["Variables"]
    assert env["METRICS_AGG_ACTIVITY_TABLE"] == {"Ref": "ActivityTable"}
    base = {"PLEXUS_API_URL": "https://x.appsync-api.eu-west-1.amazonaws.com/graphql"}
    assert Config.from_env({**base, "METRICS_AGG_ACTIVITY_TABLE": "t"}).activity_table == "t"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("enabled", [None, "true"])
def test_sweep_schedule_is_opt_in_and_sends_the_sweep_event(enabled: str | None) -> None:
    import json

    from metrics_agg.aggregator.event_kinds import event_kind, is_sweep

    r = render({**API, **({"SweepEnabled": enabled} if enabled else {})})
    events = r.properties("Function")["Events"]
    sweep = events["Sweep"]["Properties"]
    assert sweep["State"] == ("ENABLED" if enabled else "DISABLED")
    assert sweep["Schedule"] == "rate(1 day)"
    event = json.loads(sweep["Input"])
    assert event_kind(event) == "scheduled" and is_sweep(event)
    finalize = events["Finalize"]["Properties"]
    assert finalize["State"] == "ENABLED" and "Input" not in finalize  # the recorded pairs


def test_activity_alarm_watches_a_metric_the_function_emits() -> None:
    from metrics_agg.aggregator import emf

    alarm = render(API).properties("ActivityNotRecordedAlarm")
    assert alarm["Namespace"] == emf.NAMESPACE
    assert alarm["MetricName"] == "ActivityRecordsNotWritten" in emf.metric_names()
    assert alarm["Dimensions"] == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}]


def test_paths_named_in_template_comments_exist() -> None:
    """A comment that points a reader at a file must point at one that exists."""
    named = set()
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        if "#" not in line:
            continue
        comment = line.split("#", 1)[1]
        named |= set(re.findall(r"\b((?:python|tests|docs|lambda|scripts)/[\w./-]*\w)", comment))
    assert named  # the template does point at files
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_build_output_and_deploy_answers_stay_out_of_git() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".aws-sam/" in ignored
    assert "samconfig.toml" in ignored
