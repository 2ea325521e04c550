"""The runtime stands apart from the local tooling (issue 11): the layer can leave it out."""

from __future__ import annotations

import ast
import re

from layout_rules import LOCAL_TOOLING, PACKAGE, ROOT, is_local_tooling, runtime_sources


def _imports(path: str) -> set[str]:
    tree = ast.parse((PACKAGE.parent / path).read_text(), filename=path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_runtime_module_imports_the_local_tooling() -> None:
    sources = runtime_sources()
    assert "metrics_agg/aggregator/pipeline.py" in sources
    assert not [s for s in sources if s.startswith("metrics_agg/local/")]
    offenders = {}
    for src in sources:
        bad = sorted(
            m
            for m in _imports(src)
            if (m.startswith("metrics_agg") and is_local_tooling(m.replace(".", "/")))
            or m in ("metrics_agg.__main__", "metrics_agg.graphql.codegen")
        )
        if bad:
            offenders[src] = bad
    assert offenders == {}


def test_the_rule_catches_a_tooling_import() -> None:
    assert is_local_tooling("metrics_agg/local/cli/_count.py")
    assert is_local_tooling("metrics_agg/local")
    assert is_local_tooling("metrics_agg/graphql/codegen.py")
    assert not is_local_tooling("metrics_agg/localized.py")
    assert not is_local_tooling("metrics_agg/aggregator/pipeline.py")
    assert {"metrics_agg.local.render"} <= _imports("metrics_agg/local/demo/run.py")


def test_build_layer_leaves_out_the_same_tooling() -> None:
    script = (ROOT / "lambda" / "build_layer.sh").read_text()
    m = re.search(r'^LOCAL_TOOLING="([^"]*)"$', script, re.MULTILINE)
    assert m is not None
    assert tuple(m.group(1).split()) == LOCAL_TOOLING


def test_only_config_reads_the_environment() -> None:
    """All configuration is `Config` (issue 11); the Lambda bootstrap reads the log level
    and the secret's ARN before a Config exists."""
    readers = {
        src
        for src in runtime_sources()
        if re.search(r"\bos\.environ\b|\bgetenv\(", (PACKAGE.parent / src).read_text())
    }
    assert readers == {"metrics_agg/config.py", "metrics_agg/aggregator/lambda_support.py"}
