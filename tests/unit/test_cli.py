from __future__ import annotations

import subprocess
import sys

from agent import __version__
from agent.cli import main

GOOD = """
proxy_server: teleport.example.com:443
onboarding: {token: argocd-bot}
services:
  - type: kubernetes/argo-cd
    selectors: [{labels: {env: prod}}, {name: edge}]
    secret_namespace: argocd
    project: platform
"""


def test_version_from_the_installed_package():
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"teleport-argocd-agent {__version__}"


def test_validate_prints_a_summary(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "proxy teleport.example.com:443, join method kubernetes" in out
    assert (
        "service argo-cd: labels=env=prod; name=edge -> secrets argocd/teleport.argocd-cluster"
        in out
    )
    assert "(project platform)" in out


def test_validate_exits_2_naming_every_bad_field(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(
        GOOD.replace("secret_namespace: argocd", "secret_name_prefix: bad-\n    prune: maybe")
    )
    assert main(["validate", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "services[0].secret_name_prefix" in err
    assert "services[0].prune" in err
