"""Rehearse a deploy of `template.yaml` offline: package, transform with the SAM library, resolve.

What CloudFormation does with the template, in order, as far as it can be done without AWS:
1. `sam package` uploads every local ``CodeUri``/``ContentUri`` and writes the template
   back as YAML with those replaced by S3 URLs (`packaged_text`, whose size is what the
   inline limit applies to);
2. the ``AWS::LanguageExtensions`` transform resolves the parameter given as a
   ``DeletionPolicy``/``UpdateReplacePolicy`` (the only extension the template uses);
3. the ``AWS::Serverless-2016-10-31`` transform, run here by `samtranslator`, the library
   AWS runs, turns the SAM resources into CloudFormation ones;
4. conditions, ``Fn::If`` and parameter ``Ref``s are resolved for one parameter set
   (`template_render.render` over the transformed template).
A test helper: no network (no IAM managed-policy lookup: the template names none).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from template_render import TEMPLATE, Rendered, load_template, render

REGION = "eu-west-1"
INLINE_LIMIT = 51_200  # bytes: CloudFormation's TemplateBody limit (larger ones go via S3)
_ARTIFACT_KEYS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


# The bucket `sam deploy --resolve-s3` creates (its name's length is what matters here).
ARTIFACT_BUCKET = "aws-sam-cli-managed-default-samclisourcebucket-1a2b3c4d5e6f"


def packaged(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as `sam package` leaves it: local artifacts replaced by S3 URLs."""
    doc = load_template(path)
    for logical_id, resource in doc.get("Resources", {}).items():
        key = _ARTIFACT_KEYS.get(resource.get("Type", ""))
        props = resource.get("Properties", {})
        if key and isinstance(props.get(key), str) and not props[key].startswith("s3://"):
            # sam package names the object by its content's MD5: 32 hex digits.
            props[key] = f"s3://{ARTIFACT_BUCKET}/{logical_id.lower():0<32}"
    return doc


class _PackageDumper(yaml.SafeDumper):
    """Writes YAML the way `sam package` does: no anchors, strings starting with 0 quoted."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if value.startswith("0") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PackageDumper.add_representer(str, _str)


def packaged_text(path: Path = TEMPLATE) -> str:
    """`packaged` written as `sam package` writes it: block-style YAML, intrinsics in long form,
    comments gone, non-ASCII escaped, keys in template order."""
    text = yaml.dump(
        packaged(path), Dumper=_PackageDumper, default_flow_style=False, sort_keys=False
    )
    assert isinstance(text, str)
    return text


def _language_extensions(doc: dict[str, Any], params: Mapping[str, str]) -> None:
    for resource in doc.get("Resources", {}).values():
        for key in ("DeletionPolicy", "UpdateReplacePolicy"):
            value = resource.get(key)
            if isinstance(value, dict) and set(value) == {"Ref"}:
                resource[key] = params[value["Ref"]]
    transforms = doc.get("Transform")
    if isinstance(transforms, list):
        rest = [t for t in transforms if t != "AWS::LanguageExtensions"]
        doc["Transform"] = rest[0] if len(rest) == 1 else rest


def parameter_values(doc: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's value for a deploy with ``given`` (defaults for the rest)."""
    values: dict[str, str] = {}
    for name, spec in doc.get("Parameters", {}).items():
        if name in given:
            values[name] = str(given[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise KeyError(f"parameter {name} has no default and was not given")
    return values


def transform(given: Mapping[str, str], path: Path = TEMPLATE) -> dict[str, Any]:
    """Steps 1-3: the CloudFormation template AWS would deploy, conditions unresolved.

    Raises:
        samtranslator.model.exceptions.InvalidDocumentException: the SAM transform rejects
            the template (AWS would fail the change set the same way).
    """
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    doc = packaged(path)
    params = parameter_values(doc, given)
    _language_extensions(doc, params)
    translator = Translator(
        managed_policy_map={},
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name=REGION),
    )
    result = translator.translate(
        copy.deepcopy(doc),
        parameter_values=dict(params),
        get_managed_policy_map=dict,
    )
    assert isinstance(result, dict)
    # Round-trip through JSON: plain dicts and lists, as CloudFormation receives them.
    out = json.loads(json.dumps(result))
    assert isinstance(out, dict)
    return out


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """One parameter set's deploy: the transformed template and its resolved resources."""

    given: dict[str, str]
    transformed: dict[str, Any]
    rendered: Rendered


def rehearse(given: Mapping[str, str], tmp_dir: Path, path: Path = TEMPLATE) -> Rehearsal:
    transformed = transform(given, path)
    out = tmp_dir / "transformed.json"  # JSON is YAML: template_render reads it as is
    out.write_text(json.dumps(transformed, indent=1), encoding="utf-8")
    return Rehearsal(dict(given), transformed, render(given, path=out))


def lint(transformed: Mapping[str, Any], given: Mapping[str, str]) -> list[str]:
    """cfn-lint's findings on the transformed template, with ``given`` as the defaults."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    doc = copy.deepcopy(dict(transformed))
    for name, value in given.items():
        doc["Parameters"][name]["Default"] = value
    matches = cfn_lint(json.dumps(doc), regions=[REGION], config=ManualArgs(regions=[REGION]))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path or ()))})" for m in matches]
