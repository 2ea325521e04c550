"""Render `template.yaml` for given parameters the way CloudFormation would before deploying.

Only what the template uses: short-form tags, parameter defaults, `Conditions`
(Equals/Not/Or/And/Condition), resource and output `Condition`s, `Fn::If`,
`AWS::NoValue` (dropped from lists and mappings), `Ref` to a parameter (its value, also in
`DeletionPolicy`, as the LanguageExtensions transform resolves it) and `Rules` assertions.
Everything else (`Fn::Sub`, `Fn::GetAtt`, `Ref` to a resource or pseudo parameter) stays
as written, so tests can compare it. A test helper, not a CloudFormation implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
_DROP = object()  # what AWS::NoValue resolves to


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation's short-form tags into their long form."""


def _long_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _long_form)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        doc = yaml.load(f, Loader=_Loader)  # a SafeLoader subclass
    assert isinstance(doc, dict)
    return doc


@dataclass(frozen=True, slots=True)
class Rendered:
    """The template as deployed with one set of parameters."""

    parameters: dict[str, str]
    conditions: dict[str, bool]
    resources: dict[str, dict[str, Any]]
    outputs: dict[str, Any]
    failed_rules: tuple[str, ...]  # AssertDescription of every failed Rules assertion

    def properties(self, logical_id: str) -> dict[str, Any]:
        props = self.resources[logical_id].get("Properties", {})
        assert isinstance(props, dict)
        return props


def render(parameters: Mapping[str, str] | None = None, *, path: Path = TEMPLATE) -> Rendered:
    """Resolve the template for ``parameters`` (defaults for the rest).

    Raises:
        KeyError: a required parameter (no default) is missing, or an unknown one is given.
    """
    doc = load_template(path)
    declared: dict[str, Any] = doc.get("Parameters", {})
    given = dict(parameters or {})
    unknown = set(given) - set(declared)
    if unknown:
        raise KeyError(f"not parameters of the template: {sorted(unknown)}")
    params: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            params[name] = str(given[name])
        elif "Default" in spec:
            params[name] = str(spec["Default"])
        else:
            raise KeyError(f"parameter {name} has no default and was not given")

    raw_conditions: dict[str, Any] = doc.get("Conditions", {})
    conditions: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = _truth(raw_conditions[name])
        return conditions[name]

    def _truth(expr: Any) -> bool:
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Condition":
                return condition(arg)
            if fn == "Fn::Equals":
                left, right = (_value(a) for a in arg)
                return str(left) == str(right)
            if fn == "Fn::Not":
                return not _truth(arg[0])
            if fn == "Fn::Or":
                return any(_truth(a) for a in arg)
            if fn == "Fn::And":
                return all(_truth(a) for a in arg)
        raise ValueError(f"not a condition expression: {expr!r}")

    def _value(expr: Any) -> Any:
        """Resolve Fn::If, NoValue and parameter Refs; leave other intrinsics as written."""
        if isinstance(expr, list):
            items = [_value(e) for e in expr]
            return [e for e in items if e is not _DROP]
        if not isinstance(expr, dict):
            return expr
        if len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Ref" and arg == "AWS::NoValue":
                return _DROP
            if fn == "Ref" and arg in params:
                return params[arg]
            if fn == "Fn::If":
                name, then, otherwise = arg
                return _value(then if condition(name) else otherwise)
            if fn in {"Fn::Equals", "Fn::Not", "Fn::Or", "Fn::And", "Condition"}:
                return _truth(expr)
        out = {k: _value(v) for k, v in expr.items()}
        return {k: v for k, v in out.items() if v is not _DROP}

    for name in raw_conditions:
        condition(name)

    resources: dict[str, dict[str, Any]] = {}
    for logical_id, resource in doc.get("Resources", {}).items():
        if "Condition" in resource and not condition(resource["Condition"]):
            continue
        resources[logical_id] = _value(resource)
    outputs = {
        name: _value(out)
        for name, out in doc.get("Outputs", {}).items()
        if "Condition" not in out or condition(out["Condition"])
    }

    failed: list[str] = []
    for rule in doc.get("Rules", {}).values():
        if "RuleCondition" in rule and not _truth(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not _truth(assertion["Assert"]):
                failed.append(str(assertion.get("AssertDescription", assertion["Assert"])))

    return Rendered(params, conditions, resources, outputs, tuple(failed))


def local_artifacts(path: Path = TEMPLATE) -> set[str]:
    """Every local path `sam package` uploads: each ContentUri/CodeUri, whatever its Condition."""
    found: set[str] = set()
    for resource in load_template(path).get("Resources", {}).values():
        props = resource.get("Properties", {})
        for key in ("ContentUri", "CodeUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                found.add(value)
    return found
