"""Every config the chart renders is accepted by the agent's own config loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.cli import build_parser
from agent.config import load_config
from tests.chart.conftest import scenario
from tests.chart.helm import CI_VALUES, REPO, Rendered

ALL_SCENARIOS = [scenario(p) for p in CI_VALUES]


def _write(rendered: Rendered, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config_text())
    return path


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_rendered_config_is_accepted_by_load_config(rendered_ci, name, tmp_path, monkeypatch):
    # As in the pod: the agent resolves defaults from POD_NAMESPACE, which the chart sets.
    monkeypatch.setenv("POD_NAMESPACE", "argocd")
    rendered = rendered_ci[name]
    config = load_config(_write(rendered, tmp_path))
    values = rendered.config()
    assert config.onboarding.join_method == values["onboarding"]["join_method"]
    assert config.storage.type == values["storage"]["type"]
    assert config.instance == "argocd/rel"
    assert config.diag_addr == values["diag_addr"]
    (service,) = config.services
    assert service.resolved_namespace() == values["services"][0]["secret_namespace"]
    assert len(service.selectors) == len(values["services"][0]["selectors"])
    assert service.prune is values["services"][0]["prune"]


def test_unset_argocd_keys_fall_back_to_the_agent_defaults(rendered_ci, tmp_path):
    (service,) = load_config(_write(rendered_ci["guide"], tmp_path)).services
    assert service.secret_name_prefix == "teleport.argocd-cluster"
    assert service.project == ""
    assert service.namespaces == []
    assert service.cluster_resources is False


def test_every_set_argocd_key_reaches_the_agent(rendered_ci, tmp_path):
    (service,) = load_config(_write(rendered_ci["full-options"], tmp_path)).services
    assert service.secret_name_prefix == "teleport.prod"
    assert service.project == "production"
    assert service.namespaces == ["apps", "monitoring"]
    assert service.cluster_resources is True
    assert set(service.secret_labels) == {"team", "source"}
    assert set(service.secret_annotations) == {"example.com/owner"}


def test_token_join_config_points_at_the_mounted_token_file(rendered_ci, tmp_path):
    config = load_config(_write(rendered_ci["token-join"], tmp_path))
    assert config.onboarding.token == "/etc/teleport-argocd-agent/join/token"
    assert config.storage.type == "kubernetes_secret"


@pytest.mark.parametrize("name", ["guide", "token-join"])
def test_agent_cli_validates_the_rendered_config(rendered_ci, name, tmp_path):
    path = _write(rendered_ci[name], tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "validate", "-c", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_rendered_deployment_args_are_accepted_by_the_agents_own_parser(rendered_ci, name):
    # The chart's command line must parse with the CLI the image runs, extraArgs included:
    # argparse would end the pod with exit 2 on a flag the agent does not know.
    rendered = rendered_ci[name]
    (container,) = rendered.deployment()["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "start"
    assert not args.oneshot
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = Path(args.config)
    assert any(Path(path) in (config, config.parent) for path in mounts.values())
    assert args.log_format in {"json", "text"}
    assert args.log_level in {"debug", "info", "warning", "error"}
