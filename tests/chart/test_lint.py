"""The chart passes helm lint, ct lint and yamllint, and its files follow the house rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import scenario
from tests.chart.helm import CHART, CI_VALUES, REPO, Helm, ct_binary, require_on_path, tool_path

SCENARIOS = {
    "guide",
    "token-join",
    "separate-secret-namespace",
    "prune",
    "full-options",
    "name-selectors",
    "tbot",
}


def test_every_expected_ci_scenario_exists():
    assert {scenario(p) for p in CI_VALUES} >= SCENARIOS


@pytest.mark.parametrize("values", CI_VALUES, ids=scenario)
def test_ci_values_file_starts_with_a_comment_naming_its_scenario(values: Path):
    first = values.read_text().splitlines()[0]
    assert first.startswith(f"# {scenario(values)}")
    assert len(first) > len(f"# {scenario(values)}: ") + 10, "say what the scenario tests"


@pytest.mark.parametrize("values", CI_VALUES, ids=scenario)
def test_helm_lint_strict_passes(helm: Helm, values: Path):
    proc = helm.run(
        "lint", "--strict", str(CHART), "--values", str(values), "--kube-version", helm.kube_version
    )
    assert "0 chart(s) failed" in proc.stdout


def test_helm_lint_without_values_names_every_required_key(helm: Helm):
    proc = helm.run(
        "lint", "--strict", str(CHART), "--kube-version", helm.kube_version, check=False
    )
    assert proc.returncode != 0
    for key in ("/clusterName", "/token", "/argocd/clusterSelectors"):
        assert key in proc.stdout


def test_ct_lint_passes(helm: Helm):
    path = tool_path(helm.binary)
    for tool in ("helm", "yamllint", "yamale"):
        require_on_path(tool, path)
    proc = subprocess.run(
        [ct_binary(), "lint", "--config", "ct.yaml", "--charts", "chart"],
        cwd=REPO,
        env={**helm.env(), "PATH": path},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "All charts linted successfully" in output
    # ct really linted with every ci/ values file.
    for values in CI_VALUES:
        assert f"chart/ci/{values.name}" in output


def test_yamllint_passes_on_chart_and_ct_configuration():
    yamllint = require_on_path("yamllint", tool_path())
    files = [
        CHART / "Chart.yaml",
        CHART / "values.yaml",
        *CI_VALUES,
        REPO / "ct.yaml",
        *sorted((REPO / ".ct").glob("*.yaml")),
    ]
    proc = subprocess.run(
        [yamllint, "--strict", "-c", str(REPO / ".ct" / "lintconf.yaml"), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_metadata_is_the_contract():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "teleport-argocd-agent"
    assert chart["type"] == "application"
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert isinstance(chart["appVersion"], str)
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_app_version_is_the_agent_version():
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version.group(1)


# -- values.yaml documentation and schema --------------------------------------------------

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9]*):")


def _value_keys() -> list[tuple[str, bool, bool]]:
    """(dotted path, has a `# --` comment, value is a nested mapping) for each values.yaml key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys: list[tuple[str, bool, bool]] = []
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [match["key"]])
        comment: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip())
            j -= 1
        nested = line.rstrip().endswith(":")
        keys.append((path, any(c.startswith("# --") for c in comment), nested))
        stack.append((indent, match["key"]))
    return keys


def test_every_value_has_a_helm_docs_comment():
    keys = _value_keys()
    documented = {path for path, has_doc, _ in keys if has_doc}
    missing = []
    for path, has_doc, nested in keys:
        parents = [".".join(path.split(".")[:n]) for n in range(1, path.count(".") + 1)]
        # helm-docs documents a commented mapping as one value (e.g. resources, securityContext).
        if has_doc or nested or any(p in documented for p in parents):
            continue
        missing.append(path)
    assert not missing, f"values without a `# --` comment: {missing}"


# Kubernetes objects passed through as they are: the schema lists their fields (so typos
# fail) but values.yaml sets only some.
_PASSTHROUGH = {
    "resources.",
    "podSecurityContext.",
    "securityContext.",
    "probes.startup.",
    "probes.liveness.",
    "probes.readiness.",
}
# Keys of Teleport's tbot chart: in the schema only, so the chart can refuse them with what to
# write instead (or, for imagePullPolicy, accept them), and never in this chart's values table.
_TBOT_ONLY = {
    "imagePullPolicy",
    "persistence",
    "customConfig",
    "outputs",
    "services",
    "teleportVersionOverride",
    "anonymousTelemetry",
    "defaultOutput.secretName",
    "teleportAuthAddress",
}


def test_every_value_is_in_the_schema_and_every_schema_key_in_values():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: object, node: dict[str, object], path: str) -> list[str]:
        problems: list[str] = []
        props = node.get("properties")
        if not isinstance(value, dict) or not isinstance(props, dict):
            return problems
        if node.get("additionalProperties") is not False:
            problems.append(f"{path or '<root>'}: additionalProperties is not false")
        for key in value.keys() - props.keys():
            problems.append(f"{path}{key}: in values.yaml but not in the schema")
        if path not in _PASSTHROUGH:
            for key in props.keys() - value.keys():
                if f"{path}{key}" not in _TBOT_ONLY:
                    problems.append(f"{path}{key}: in the schema but not in values.yaml")
        for key in value.keys() & props.keys():
            problems += walk(value[key], props[key], f"{path}{key}.")
        return problems

    assert walk(values, schema, "") == []


def test_every_helper_is_named_after_the_chart_and_has_a_comment():
    lines = (CHART / "templates" / "_helpers.tpl").read_text().splitlines()
    defines = [i for i, line in enumerate(lines) if "define " in line]
    assert defines
    for i in defines:
        name = re.search(r'define "([^"]+)"', lines[i])
        assert name is not None
        assert name.group(1).startswith("teleport-argocd-agent.")
        comment = lines[i - 1]
        assert comment.startswith("{{/*"), lines[i]
        assert comment.endswith("*/}}"), lines[i]
