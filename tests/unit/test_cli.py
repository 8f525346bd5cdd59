from __future__ import annotations

import subprocess
import sys

from agent import __version__
from agent.commands.cli import build_parser, main

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


def test_start_with_a_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("proxy_server: x:443\n")
    assert main(["start", "--oneshot", "-c", str(path)]) == 2
    assert "onboarding: required key is missing" in capsys.readouterr().err


def test_plan_and_check_accept_the_same_options():
    for command in ("start", "plan", "check"):
        args = build_parser().parse_args([command, "-c", "f", "--log-format", "json"])
        assert (args.command, args.config, args.log_format) == (command, "f", "json")
        assert args.log_libraries is False
        opted_in = build_parser().parse_args([command, "-c", "f", "--log-libraries"])
        assert opted_in.log_libraries is True


def test_a_failing_identity_secret_exits_4_as_a_kubernetes_failure(tmp_path, monkeypatch, capsys):
    from agent.commands import clients, plan  # noqa: PLC0415 - as cli loads them
    from agent.teleport.errors import Operation  # noqa: PLC0415
    from agent.teleport.storage import StorageError  # noqa: PLC0415

    def refused(config, now):
        raise StorageError(Operation.LOAD_IDENTITY, "secret argocd/bot: secrets is forbidden", 403)

    monkeypatch.setattr(plan, "run", refused)
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    assert main(["plan", "-c", str(path)]) == 4
    assert "load identity: secret argocd/bot: secrets is forbidden" in capsys.readouterr().err
    assert clients.fail(StorageError(Operation.SAVE_IDENTITY, "secret argocd/bot: gone", 404)) == 4
