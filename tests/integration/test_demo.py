"""`make demo` keeps working: Argo CD deploys through the agent's secrets, and nothing is left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_deploys_through_the_agents_secrets_and_cleans_up():
    done = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_EXIT_AFTER_SETUP": "1"},
        capture_output=True,
        text=True,
        timeout=600,  # three API servers, Argo CD and the agent on a shared 2-core machine
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    # The chart's ServiceAccount: create and patch on secrets, no read.
    secrets_rule = next(line for line in out.splitlines() if line.strip().startswith("secrets "))
    assert secrets_rule.split()[-2:] == ["[create", "patch]"]
    # Argo CD's clusters: the two the guide's selector picks, reached through the stand-in.
    clusters = out.split("get secrets -l argocd.argoproj.io/secret-type=cluster", 1)[1]
    clusters = clusters.split("\n\n", 1)[0]
    assert re.search(r"root-alpha\s+https://127\.0\.0\.1:\d+/v1/teleport/", clusters), clusters
    assert "root-beta" in clusters
    assert "gamma" not in clusters
    for cluster in ("alpha", "beta"):
        assert re.search(rf"guestbook-root-{cluster}\s+Synced\s+Healthy", out), out
    # kubectl with one secret's credential lists that cluster's namespaces, the deployed one too.
    listing = out.split("get ns", 1)[1]
    assert len(re.findall(r"i-am-(alpha|beta)", listing)) == 1, listing
    assert "guestbook" in listing
    workdir = Path(re.findall(r"export KUBECONFIG=(\S+)", out)[0]).parent
    assert not workdir.exists(), "the demo's directory was left behind"
