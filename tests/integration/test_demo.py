"""`make demo` keeps working: it brings up the sandbox and installs the chart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_sets_up_the_sandbox_and_shows_least_privilege():
    done = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_EXIT_AFTER_SETUP": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "export KUBECONFIG=" in done.stdout
    assert "deployment.apps/teleport-argocd-teleport-argocd-agent" in done.stdout
    secrets_rule = next(line for line in done.stdout.splitlines() if line.startswith("secrets "))
    assert secrets_rule.split()[-2:] == ["[create", "patch]"]
