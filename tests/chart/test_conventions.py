"""Chart conventions users expect from anchor charts (argo-helm's argo-cd, cert-manager,
external-secrets): pod settings passed through, the image by digest, use as a subchart of an
umbrella chart (real ``helm dependency build`` and ``helm template``), and the chart's own files
(LICENSE, Artifact Hub annotations, the generated README)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import CHART, CHART_VERSION, REPO, Helm, Rendered

GUIDE = CHART / "ci" / "guide-values.yaml"
DIGEST = "sha256:" + "ab" * 32


def _guide(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(GUIDE.read_text())
    values.update(overrides)
    return values


def test_pod_settings_reach_the_deployment(helm: Helm):
    spread = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "teleport-argocd-agent"}},
    }
    values = _guide(
        priorityClassName="platform-critical",
        revisionHistoryLimit=1,
        topologySpreadConstraints=[spread],
        envFrom=[{"secretRef": {"name": "egress-proxy"}, "prefix": "EGRESS_"}],
        extraVolumes=[{"name": "corporate-ca", "configMap": {"name": "corporate-ca"}}],
        extraVolumeMounts=[
            {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}
        ],
    )
    rendered = helm.template([values])
    deployment = rendered.deployment()
    assert deployment["spec"]["revisionHistoryLimit"] == 1
    spec = rendered.pod_spec()
    assert spec["priorityClassName"] == "platform-critical"
    assert spec["topologySpreadConstraints"] == [spread]
    assert spec["volumes"][-1] == {"name": "corporate-ca", "configMap": {"name": "corporate-ca"}}
    container = rendered.container()
    assert container["envFrom"] == [{"secretRef": {"name": "egress-proxy"}, "prefix": "EGRESS_"}]
    assert container["volumeMounts"][-1] == {
        "name": "corporate-ca",
        "mountPath": "/etc/ssl/corporate",
        "readOnly": True,
    }
    # The chart's own volumes and mounts are still there, first.
    assert [v["name"] for v in spec["volumes"]][:2] == ["config", "join-sa-token"]


def test_defaults_leave_the_optional_pod_settings_out(helm: Helm):
    rendered = helm.template([GUIDE])
    spec = rendered.pod_spec()
    for key in ("priorityClassName", "topologySpreadConstraints"):
        assert key not in spec
    assert "envFrom" not in rendered.container()
    assert rendered.deployment()["spec"]["revisionHistoryLimit"] == 3


def test_image_by_digest_ignores_the_tag(helm: Helm):
    rendered = helm.template([_guide(image={"tag": "9.9.9", "digest": DIGEST})])
    assert rendered.container()["image"] == (
        f"ghcr.io/teleport-argocd-agent/teleport-argocd-agent@{DIGEST}"
    )


def test_tbot_image_pull_policy_overrides_image_pull_policy(helm: Helm):
    rendered = helm.template([_guide(imagePullPolicy="Never")])
    assert rendered.container()["imagePullPolicy"] == "Never"
    assert helm.template([GUIDE]).container()["imagePullPolicy"] == "IfNotPresent"


# -- as a subchart ------------------------------------------------------------------------------


def _umbrella(tmp_path: Path, helm: Helm) -> Path:
    """An umbrella chart depending on this chart (a file:// dependency, vendored by the real
    ``helm dependency build``) with a condition on its ``enabled`` value, as platform teams
    bundle Argo CD add-ons."""
    umbrella = tmp_path / "platform"
    (umbrella / "templates").mkdir(parents=True)
    local = tmp_path / "teleport-argocd-agent"
    shutil.copytree(CHART, local)
    (umbrella / "Chart.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v2
            name: platform
            version: 1.0.0
            dependencies:
              - name: teleport-argocd-agent
                version: {CHART_VERSION}
                repository: file://{local}
                condition: teleport-argocd-agent.enabled
            """
        )
    )
    guide = yaml.safe_load(GUIDE.read_text())
    (umbrella / "values.yaml").write_text(
        yaml.safe_dump(
            {
                # Globals every subchart receives: the strict schema must let them through.
                "global": {"domain": "example.com", "imageRegistry": "registry.example.com"},
                "teleport-argocd-agent": {"enabled": True, **guide},
            }
        )
    )
    helm.run("dependency", "build", str(umbrella))
    return umbrella


def test_works_as_a_subchart_of_an_umbrella_chart_with_globals(helm: Helm, tmp_path: Path):
    umbrella = _umbrella(tmp_path, helm)
    rendered = helm.template(chart=umbrella, release="platform")
    kinds = sorted(o["kind"] for o in rendered.objects)
    assert "Deployment" in kinds
    assert "ConfigMap" in kinds
    assert rendered.deployment()["metadata"]["name"] == "platform-teleport-argocd-agent"
    config = rendered.config()
    assert config["proxy_server"] == "teleport.example.com:443"
    # helm lint of the umbrella validates the subchart's values against its schema too.
    lint = helm.run("lint", "--strict", str(umbrella), "--kube-version", helm.kube_version)
    assert "0 chart(s) failed" in lint.stdout


def test_umbrella_condition_turns_the_subchart_off(helm: Helm, tmp_path: Path):
    umbrella = _umbrella(tmp_path, helm)
    off = helm.values_args([{"teleport-argocd-agent": {"enabled": False}}])
    args = helm.template_args(release="platform", chart=umbrella)
    out = helm.run(*args, *off).stdout
    assert Rendered.parse(out).objects == []


def test_umbrella_typo_in_the_subchart_values_is_still_rejected(helm: Helm, tmp_path: Path):
    umbrella = _umbrella(tmp_path, helm)
    typo = helm.values_args([{"teleport-argocd-agent": {"clusterSelector": [{"name": "a"}]}}])
    proc = helm.run(*helm.template_args(release="platform", chart=umbrella), *typo, check=False)
    assert proc.returncode != 0
    assert "additional properties 'clusterSelector' not allowed" in proc.stderr


# -- the chart's files --------------------------------------------------------------------------


def test_license_is_apache_2_and_ships_with_the_chart():
    for license_file in (REPO / "LICENSE", CHART / "LICENSE"):
        text = license_file.read_text()
        assert "Apache License" in text
        assert "Version 2.0, January 2004" in text
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"


def test_artifact_hub_images_match_the_default_image(helm: Helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert images == [
        {"name": "teleport-argocd-agent", "image": helm.template([GUIDE]).container()["image"]}
    ]


def test_artifact_hub_changes_are_well_formed():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    changes = yaml.safe_load(chart["annotations"]["artifacthub.io/changes"])
    assert changes
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    for change in changes:
        assert set(change) == {"kind", "description"}, change
        assert change["kind"] in kinds, change
        assert change["description"].strip(), change


def test_chart_readme_has_upgrade_notes_for_this_version(helm: Helm):
    readme = (CHART / "README.md").read_text()
    assert f"### {CHART_VERSION}" in readme.split("## Upgrade notes", 1)[1]
    # `helm show readme` is what Artifact Hub and users see.
    shown = helm.run("show", "readme", str(CHART)).stdout
    assert "## Values" in shown
    assert "| clusterName |" in shown
