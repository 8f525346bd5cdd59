"""`make demo` is the user's path on a real node, printed as a user sees it, and leaves nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.user_path import CHART_VERSION, TELEPORT_CLUSTER

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(1200), pytest.mark.node]


def test_demo_installs_from_the_registry_and_argo_cd_syncs_through_the_pod():
    done = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_EXIT_AFTER_SETUP": "1"},
        capture_output=True,
        text=True,
        timeout=1100,  # a node, make release, Argo CD and the chart on a shared 2-core machine
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert re.search(
        r"\$ helm install teleport-argocd-agent "
        r"oci://10\.244\.0\.1:5000/charts/teleport-argocd-agent "
        rf"--version {re.escape(CHART_VERSION)} --namespace argocd "
        r"--values chart/ci/guide-values\.yaml --values sandbox-values\.yaml",
        out,
    ), out
    pods = out.split("get pods", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"teleport-argocd-agent-[a-z0-9]+-[a-z0-9]+\s+1/1\s+Running\s+0", pods), pods
    clusters = out.split("secret-type=cluster", 1)[1].split("\n\n", 1)[0]
    assert sorted(re.findall(r"\s(alpha|beta|gamma)\s*$", clusters, re.M)) == ["alpha", "beta"]
    for cluster in ("alpha", "beta"):
        name = f"guestbook-{TELEPORT_CLUSTER}-{cluster}"
        assert re.search(rf"{re.escape(name)}\s+Synced\s+Healthy", out), out
    check = out.split("teleport-argocd-agent check", 1)[1].split("\n\n", 1)[0]
    assert " ok " in check
    assert "FAIL" not in check, check
    assert "PRIVATE KEY" not in out
    kubeconfig = Path(re.findall(r"kubeconfig (\S+)", out)[0])
    assert not kubeconfig.parent.exists(), "the node's directory was left behind"
