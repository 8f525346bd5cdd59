"""The test node itself: it runs a pod in a `restricted` namespace, and a killed run leaves
nothing behind once the next run (or its sweep) has been through.

A node is started in a child process (``python -m tests.harness.node``, which runs a pause Pod),
killed with SIGKILL - no teardown runs, and containerd's shims, the pod's container, the
mounts and the namespace outlive it - and then swept as the next run would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.harness.node import (
    CNI_NETWORK,
    NETNS,
    STATE_DIR,
    _pod_cgroups,
    _shims,
    node,
    pause_pod,
    pod_netns,
    sweep,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.node


def _mounts_under(root: str) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(root + "/")]


def _links_into(root: str) -> list[str]:
    logs = Path("/var/log/containers")
    if not logs.is_dir():
        return []
    return [str(p) for p in logs.iterdir() if p.is_symlink() and os.readlink(p).startswith(root)]


def _cni_results() -> list[str]:
    results = Path("/var/lib/cni/results")
    return [p.name for p in results.iterdir() if CNI_NETWORK in p.name] if results.is_dir() else []


def test_a_killed_node_is_swept_without_leftovers():
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.node"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("netns "):
            break
    assert any(line.startswith("node up in") for line in lines), "".join(lines)
    state = json.loads((STATE_DIR / "state.json").read_text())
    workdir = state["workdir"]

    child.send_signal(signal.SIGKILL)
    child.wait(30)
    # What a killed run leaves: the shims (reparented), the pod, mounts, the namespace.
    assert _shims(state["containerd_socket"]), "no containerd shim outlived the killed run"
    assert _mounts_under(workdir)
    assert Path(f"/run/netns/{NETNS}").exists()
    assert pod_netns(state["started"])

    sweep(STATE_DIR / "state.json")
    assert pod_netns(state["started"]) == []
    assert not _cni_results()
    assert _shims(state["containerd_socket"]) == []
    assert _mounts_under(workdir) == []
    assert not Path(f"/run/netns/{NETNS}").exists()
    assert not Path(workdir).exists()
    assert _pod_cgroups() == []
    assert _links_into(workdir) == []
    for pid, program in state["pids"]:
        cmdline = Path(f"/proc/{pid}/cmdline")
        assert not (cmdline.exists() and program.encode() in cmdline.read_bytes()), program


def test_a_pod_runs_in_a_restricted_namespace_and_the_node_goes_without_leftovers():
    with node() as n:
        started = n._state["started"]
        workdir = str(n.workdir)
        socket_path = str(n.containerd_socket)
        n.kubectl("create", "namespace", "restricted")
        n.kubectl(
            "label", "namespace", "restricted", "pod-security.kubernetes.io/enforce=restricted"
        )
        n.wait_service_account("restricted")
        # PodSecurity is enforced: a pod without the restricted settings is refused.
        with contextlib.closing(n.admin_client()) as api:
            bare = pause_pod(n, "restricted", "bare")
            bare["spec"].pop("securityContext")
            with pytest.raises(ApiException, match="violates PodSecurity"):
                k8s.CoreV1Api(api).create_namespaced_pod("restricted", bare)
        manifest = n.workdir / "pause.json"
        manifest.write_text(json.dumps(pause_pod(n, "restricted")))
        n.kubectl("apply", "-f", str(manifest))
        n.kubectl(
            "-n", "restricted", "wait", "--for=condition=Ready", "pod/pause", "--timeout=120s"
        )
        ip = n.kubectl("-n", "restricted", "get", "pod", "pause", "-o", "jsonpath={.status.podIP}")
        assert ip.startswith("10.244.0.")
        assert _shims(socket_path)
    assert _shims(socket_path) == []
    assert _mounts_under(workdir) == []
    assert not Path(f"/run/netns/{NETNS}").exists()
    assert pod_netns(started) == []
    assert not _cni_results()
    assert not Path(workdir).exists()
    assert _pod_cgroups() == []
