"""The user's path on a real node: `helm install` from an OCI registry, the chart's own pod.

A single-node Kubernetes (tests/harness/node.py: kubelet, containerd, runc, a CNI bridge) runs in
a network namespace of its own, with a local OCI registry that `make release` publishes the chart
and the image to. The Teleport stand-in and Argo CD run in the same namespace; the stand-in
puts the node's own API server behind Teleport as the clusters `alpha` and `beta`
(`environment: production`, which the guide's selector picks) and `gamma` (`staging`). The
chart is installed as README tells users, with the guide's values plus only the addresses the
sandbox forces (the proxy's address, its private CA, the registry host), into a namespace that
enforces the `restricted` Pod Security Standard; the stand-in is seeded with the YAML the
chart's NOTES print and the node's real `/openid/v1/jwks`.

The kubelet's refresh of a projected token comes after 80 % of its life, at least 600 s. The
release whose token is refreshed is installed by the module's first test; when the refresh test
is selected too, tests/e2e/conftest.py runs that first test first in the session and this
module's other tests last, so the wait passes while the other tiers run (the node, shared by
the module's tests, lives from the first test to the module's last).

Every failure prints the pod's events, the kubelet's and containerd's log tails and the agent's
logs (``node.diagnostics``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.notes import teleport_resources as notes_resources
from tests.harness.user_path import (
    APP_VERSION,
    CHART_VERSION,
    CONFIG,
    FULLNAME,
    GUIDE,
    NAMESPACE,
    RELEASE,
    ROOT,
    TELEPORT_CLUSTER,
    Sandbox,
    agent_pid,
    prepare_namespace,
    sandbox,
    teleport_resources,
)

# The shared sandbox builds the image (when agent/ changed), starts the node, the registry and
# Argo CD; the token refresh test may wait for the kubelet's refresh.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.node]

REFRESH_NAMESPACE = "argocd-refresh"
REFRESH_RELEASE = "teleport-argocd-refresh"
REFRESH_SELECTOR = (
    f"app.kubernetes.io/instance={REFRESH_RELEASE},app.kubernetes.io/name=teleport-argocd-agent"
)
REFRESH_FULLNAME = f"{REFRESH_RELEASE}-teleport-argocd-agent"
REFRESH_TOKEN_FILE = "/var/run/secrets/tokens/join-sa-token"
# The kubelet rewrites a projected token at 80 % of its life, the agent renews every 2 minutes:
# by then the first token (the API's minimum life, 600 s) has expired and renewals go on.
REFRESH_RENEWAL = 120


# Read inside the pod: the token file's digest and its claims' life and audience (never the
# token itself).
_TOKEN_PROBE = """
import base64, hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
claims = json.loads(base64.urlsafe_b64decode(raw.split(b".")[1] + b"=="))
print(json.dumps({
    "digest": hashlib.sha256(raw).hexdigest(),
    "life": claims["exp"] - claims["iat"],
    "aud": claims["aud"],
}))
"""


def _projected_token(s: Sandbox) -> dict[str, Any]:
    done = s.kubectl(
        "--namespace",
        REFRESH_NAMESPACE,
        "exec",
        f"deploy/{REFRESH_RELEASE}-teleport-argocd-agent",
        "--",
        "/opt/venv/bin/python",
        "-c",
        _TOKEN_PROBE,
        REFRESH_TOKEN_FILE,
    )
    assert done.returncode == 0, done.stderr
    token: dict[str, Any] = json.loads(done.stdout)
    return token


def _token_digest(s: Sandbox) -> str:
    return str(_projected_token(s)["digest"])


class SharedSandbox:
    """The module's sandbox: started by the first test that needs it, stopped when the module's
    last test is done (``installed``'s teardown) or, at the latest, when the session ends -
    also after a failure or an interrupt."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._stack = contextlib.ExitStack()
        self._sandbox: Sandbox | None = None
        self.started = 0.0  # time.monotonic() when the node was up

    def open(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = self._stack.enter_context(sandbox(self._workdir))
            self.started = time.monotonic()
        return self._sandbox

    @property
    def current(self) -> Sandbox | None:
        return self._sandbox

    def close(self) -> None:
        self._sandbox = None
        self._stack.close()


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedSandbox]:
    held = SharedSandbox(tmp_path_factory.mktemp("user-path"))
    try:
        yield held
    finally:
        held.close()


@dataclass(frozen=True)
class Refresh:
    """The refresh release as installed: when its pod was Ready, its uid, its first token."""

    started: float  # time.monotonic()
    pod: str
    token: str
    life: int  # the first token's exp - iat, in seconds
    audience: list[str]


@pytest.fixture(scope="session")
def refresh(shared: SharedSandbox) -> Refresh:
    """A second release whose pod lives through the kubelet's refresh of its projected token
    (session scope: installed by the module's first test, read by the refresh test)."""
    s = shared.open()
    prepare_namespace(s.node, REFRESH_NAMESPACE, s.standin.web_ca_path)
    values = s.workdir / "refresh-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "token": "argocd-bot-refresh",
                "joinTokenExpirationSeconds": 600,
                "credentialTTL": "5m",
                "renewalInterval": f"{REFRESH_RENEWAL}s",
            }
        )
    )
    chart = f"oci://{s.node.registry}/charts/teleport-argocd-agent"
    install = [REFRESH_RELEASE, chart, "--version", CHART_VERSION]
    install += ["--namespace", REFRESH_NAMESPACE, "--values", str(GUIDE)]
    install += ["--values", str(s.values), "--values", str(values)]
    notes = s.helm("install", *install, "--dry-run").split("NOTES:", 1)[1]
    s.standin.create(teleport_resources(notes, s.node))
    s.helm("install", *install)
    pod = s.wait(
        "the refresh release's pod to turn Ready",
        lambda: s.ready_pod(REFRESH_NAMESPACE, REFRESH_SELECTOR),
    )
    token = _projected_token(s)
    return Refresh(time.monotonic(), pod.metadata.uid, token["digest"], token["life"], token["aud"])


@pytest.fixture(scope="module")
def installed(shared: SharedSandbox) -> Iterator[Sandbox]:
    """The chart installed from the registry, its pod Ready, every selected cluster synced.
    The node goes with the module: other node tests start their own after it."""
    try:
        s = shared.open()
        out = s.install()
        assert "STATUS: deployed" in out
        s.deploy_guestbook()
        s.timings["node up"] = s.node.timings["node_ready"]
        s.timings["make release"] = s.node.timings["release"]
        print("user path timings (s):", json.dumps({k: round(v, 1) for k, v in s.timings.items()}))
        yield s
    finally:
        shared.close()


def diagnostics(item: pytest.Item) -> str:
    """What a failed test of this module shows (tests/e2e/conftest.py adds it to the report):
    the pods' events and logs - the agent's - and the kubelet's and containerd's log tails."""
    held = item.funcargs.get("shared")  # type: ignore[attr-defined]
    s = item.funcargs.get("installed", held and held.current)  # type: ignore[attr-defined]
    if not isinstance(s, Sandbox):
        return ""
    return "\n".join(
        s.node.diagnostics(ns) for ns in (NAMESPACE, TOKEN_NAMESPACE, REFRESH_NAMESPACE)
    )


@pytest.mark.clock_start
def test_a_release_with_the_shortest_token_life_joins_with_its_projected_token(
    shared: SharedSandbox, refresh: Refresh
):
    """The refresh release (the refresh test's clock starts here): its pod joined with a
    projected token of the life the chart's value asks, for the join token's audience."""
    s = shared.open()
    pod = s.ready_pod(REFRESH_NAMESPACE, REFRESH_SELECTOR)
    assert pod is not None
    assert pod.metadata.uid == refresh.pod
    assert refresh.life == 600
    assert refresh.audience == [TELEPORT_CLUSTER]
    written = sorted(data["name"] for _, data in s.secrets(REFRESH_NAMESPACE))
    assert written == [f"{TELEPORT_CLUSTER}-alpha", f"{TELEPORT_CLUSTER}-beta"]
    bots = [i for i in s.standin.instances() if i["bot_name"] == REFRESH_FULLNAME]
    assert [b["join_method"] for b in bots] == ["kubernetes"], bots


def test_install_from_the_registry_runs_the_pod_as_the_chart_renders_it(installed: Sandbox):
    s = installed
    pod = s.ready_pod()
    assert pod is not None
    (container,) = pod.spec.containers
    assert container.image == (
        f"{s.node.registry}/teleport-argocd-agent/teleport-argocd-agent:{APP_VERSION}"
    )
    (status,) = pod.status.container_statuses
    assert status.ready
    assert status.restart_count == 0
    assert status.image_id.startswith(f"{s.node.registry}/teleport-argocd-agent/")
    # Exactly the selected clusters, each reaching Teleport's proxy.
    names = sorted(data["name"] for _, data in s.secrets())
    assert names == [f"{TELEPORT_CLUSTER}-alpha", f"{TELEPORT_CLUSTER}-beta"]
    for _, data in s.secrets():
        assert data["server"].startswith(f"https://{s.standin.proxy_addr}/")
    # The probes wait for the first sync: a normal start records no failed probe.
    assert s.events("Unhealthy") == []
    # It joined with the kubelet's projected token, as the chart's ServiceAccount.
    instances = s.standin.instances()
    assert instances, "the stand-in saw no bot join"
    assert all(i.get("join_method") == "kubernetes" for i in instances), instances


def test_check_and_plan_work_in_the_pod_through_kubectl_exec(installed: Sandbox):
    check = installed.exec_agent("check", "-c", CONFIG)
    assert check.returncode == 0, check.stdout + check.stderr
    plan = installed.exec_agent("plan", "-c", CONFIG)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # A fresh credential for every secret: what the next renewal would write, nothing else.
    assert "service argo-cd: 2 selected" in plan.stdout
    assert "(cluster alpha)" in plan.stdout
    assert "(cluster beta)" in plan.stdout
    assert "gamma" not in plan.stdout
    for output in (check.stdout, check.stderr, plan.stdout, plan.stderr):
        assert "PRIVATE KEY" not in output


_POD_PROBE = """
import errno, json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
writes = {}
for path in ("/etc/probe", "/opt/venv/probe", "/probe", "/tmp/probe"):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        writes[path] = "written"
    except OSError as e:
        writes[path] = errno.errorcode[e.errno]
print(json.dumps({
    "status": {k: status[k].split() for k in ("Uid", "Gid", "CapEff", "NoNewPrivs", "Seccomp")},
    "writes": writes,
    "pod_namespace": os.environ.get("POD_NAMESPACE"),
    "token_file": os.environ.get("KUBERNETES_TOKEN_PATH"),
}))
"""


def test_the_pod_runs_the_image_as_the_chart_restricts_it(installed: Sandbox):
    """What the image's chroot runner checked, now in the chart's own pod on the node."""
    done = installed.kubectl(
        "--namespace",
        NAMESPACE,
        "exec",
        f"deploy/{FULLNAME}",
        "--",
        "/opt/venv/bin/python",
        "-c",
        _POD_PROBE,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["status"]["Uid"] == ["65532"] * 4
    assert probe["status"]["Gid"] == ["65532"] * 4
    assert probe["status"]["CapEff"] == ["0000000000000000"]
    assert probe["status"]["NoNewPrivs"] == ["1"]
    assert probe["status"]["Seccomp"] == ["2"]  # a filter: RuntimeDefault
    assert probe["writes"] == {
        "/etc/probe": "EROFS",
        "/opt/venv/probe": "EROFS",
        "/probe": "EROFS",
        "/tmp/probe": "written",
    }
    assert probe["pod_namespace"] == NAMESPACE
    assert probe["token_file"] == "/var/run/secrets/tokens/join-sa-token"


def test_helm_test_runs_check_in_a_pod(installed: Sandbox):
    out = installed.helm("test", RELEASE, "-n", NAMESPACE, "--logs", timeout=300)
    assert "Phase:          Succeeded" in out, out


def _secret_bytes(s: Sandbox) -> dict[str, dict[str, str]]:
    with contextlib.closing(s.node.admin_client()) as api:
        items = (
            k8s.CoreV1Api(api)
            .list_namespaced_secret(
                NAMESPACE, label_selector="argocd.argoproj.io/secret-type=cluster"
            )
            .items
        )
    return {i.metadata.name: dict(i.data or {}) for i in items}


def _parses(data: dict[str, str]) -> bool:
    config = json.loads(base64.b64decode(data["config"]))
    return all(config["tlsClientConfig"].get(k) for k in ("caData", "certData", "keyData"))


def test_a_stuck_agent_is_restarted_by_the_liveness_probe(installed: Sandbox):
    s = installed
    pod = s.ready_pod()
    assert pod is not None
    os.kill(agent_pid(pod.metadata.uid), signal.SIGSTOP)

    def restarted() -> k8s.V1Pod | None:
        current = s.ready_pod()
        if current is None or current.metadata.uid != pod.metadata.uid:
            return None
        (status,) = current.status.container_statuses
        return current if status.restart_count >= 1 else None

    # Six failed liveness probes 10 s apart, then the restart and the first sync.
    s.wait("the kubelet to restart the stopped agent", restarted, timeout=180)
    assert any("Liveness probe failed" in e for e in s.events("Unhealthy"))
    assert all(_parses(data) for data in _secret_bytes(s).values())


def _publish_bumped_chart(s: Sandbox, tmp_path: Path) -> str:
    """The next release: the chart with a bumped version, published to the registry."""
    major, minor, patch = (int(p) for p in CHART_VERSION.split("."))
    bumped = f"{major}.{minor}.{patch + 1}"
    chart = tmp_path / "teleport-argocd-agent"
    shutil.copytree(ROOT / "chart", chart)
    text = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(
        text.replace(f"\nversion: {CHART_VERSION}\n", f"\nversion: {bumped}\n")
    )
    s.helm("package", str(chart), "--destination", str(tmp_path))
    s.helm(
        "push",
        str(tmp_path / f"teleport-argocd-agent-{bumped}.tgz"),
        f"oci://{s.node.registry}/charts",
    )
    return bumped


Samples = list[tuple[float, dict[str, tuple[str, str]]]]


def _sample_applications(s: Sandbox, stop: threading.Event, samples: Samples) -> None:
    """Argo CD's view of every Application, every 0.5 s until ``stop``: (seconds since the
    first sample, {name: (sync, health)})."""
    first = time.monotonic()
    with contextlib.closing(s.node.admin_client()) as api:
        while not stop.is_set():
            listed = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
                "argoproj.io", "v1alpha1", NAMESPACE, "applications"
            )
            states = {}
            for item in listed["items"]:
                status = item.get("status", {})
                states[item["metadata"]["name"]] = (
                    status.get("sync", {}).get("status", "-"),
                    status.get("health", {}).get("status", "-"),
                )
            samples.append((time.monotonic() - first, states))
            stop.wait(0.5)


def test_upgrade_to_a_bumped_chart_with_a_config_change(installed: Sandbox, tmp_path: Path):
    s = installed
    old = s.ready_pod()
    assert old is not None
    bumped = _publish_bumped_chart(s, tmp_path)

    # Every secret stays whole while the old pod is stopped and the new one takes over.
    seen: dict[str, Any] = {"broken": [], "old_exit": None}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name, data in _secret_bytes(s).items():
                if not _parses(data):
                    seen["broken"].append(name)
            with (
                contextlib.closing(s.node.admin_client()) as api,
                contextlib.suppress(k8s.ApiException),
            ):
                current = k8s.CoreV1Api(api).read_namespaced_pod(old.metadata.name, NAMESPACE)
                for status in current.status.container_statuses or []:
                    if status.state.terminated is not None:
                        seen["old_exit"] = status.state.terminated.exit_code
            time.sleep(0.2)

    # The Applications, sampled from before the upgrade until after the new pod's Ready.
    assert s.argo is not None
    apps = s.argo.application_names()
    assert apps, "no Application to watch"
    samples: Samples = []
    watcher = threading.Thread(target=watch, daemon=True)
    sampler = threading.Thread(target=_sample_applications, args=(s, stop, samples), daemon=True)
    watcher.start()
    sampler.start()
    try:
        chart_ref = f"oci://{s.node.registry}/charts/teleport-argocd-agent"
        s.helm(
            "upgrade",
            RELEASE,
            chart_ref,
            "--version",
            bumped,
            "--namespace",
            NAMESPACE,
            "--values",
            str(GUIDE),
            "--values",
            str(s.values),
            "--set",
            "argocd.discoveryInterval=45s",
        )
        new = s.wait(
            "the upgraded pod to turn Ready",
            lambda: (p := s.ready_pod()) is not None and p.metadata.uid != old.metadata.uid and p,
            timeout=180,
        )
        # A few more samples with the new pod alone in charge.
        time.sleep(5)
    finally:
        stop.set()
        watcher.join(10)
        sampler.join(10)
    assert seen["broken"] == []
    # Applications stayed Synced/Healthy throughout: every sample, not only the last.
    assert len(samples) >= 10, samples
    for at, states in samples:
        assert sorted(states) == apps, (at, states)
        bad = {name: state for name, state in states.items() if state != ("Synced", "Healthy")}
        assert not bad, f"at {at:.1f}s of {samples[-1][0]:.1f}s: {bad}"
    print(f"upgrade: {len(samples)} samples over {samples[-1][0]:.1f}s, all Synced/Healthy")
    # SIGTERM: the old agent finished what it was writing and exited cleanly.
    assert seen["old_exit"] == 0, seen
    assert new.metadata.labels["helm.sh/chart"] == f"teleport-argocd-agent-{bumped}"
    config = yaml.safe_load(
        s.node.kubectl(
            "-n", NAMESPACE, "get", "configmap", FULLNAME, "-o", "jsonpath={.data.config\\.yaml}"
        )
    )
    assert config["services"][0]["discovery_interval"] == "45s"
    for name in s.argo.application_names():
        status = s.argo.get("applications", name)["status"]
        assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")


def test_helm_test_fails_once_the_teleport_role_is_gone_saying_why(installed: Sandbox):
    s = installed
    s.standin.admin("DELETE", f"/v1/resources/role/{FULLNAME}")
    try:
        out = s.helm("test", RELEASE, "--namespace", NAMESPACE, "--logs", check=False)
        assert "Phase:          Failed" in out, out
        failed = [line for line in out.splitlines() if "  FAIL  " in line]
        assert failed, out
        print("helm test after the role was removed:\n" + "\n".join(failed))
        # What is wrong and what to do: the role by name, and where its YAML is.
        said = "\n".join(failed)
        assert f"role {FULLNAME} is not found" in said, out
        assert f"names the role {FULLNAME}, which does not exist in Teleport" in said, out
        assert "tctl create -f with the role from the chart's install notes" in said, out
    finally:
        s.standin.create(teleport_resources(s.notes, s.node))
    out = s.helm("test", RELEASE, "--namespace", NAMESPACE, "--logs")
    assert "Phase:          Succeeded" in out, out


def _watch_running_agents(
    s: Sandbox, namespace: str, selector: str, stop: threading.Event, seen: dict[str, list[float]]
) -> None:
    """Every 0.2 s until ``stop``: for each pod (terminating ones too) whose agent container
    runs, the first and last time.monotonic() it was seen running."""
    with contextlib.closing(s.node.admin_client()) as api:
        core = k8s.CoreV1Api(api)
        while not stop.is_set():
            now = time.monotonic()
            for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
                states = pod.status.container_statuses or []
                if any(c.state is not None and c.state.running is not None for c in states):
                    seen.setdefault(pod.metadata.uid, [now, now])[1] = now
            stop.wait(0.2)


TOKEN_NAMESPACE = "argocd-token"
TOKEN_RELEASE = "teleport-argocd-token"


def test_token_join_pod_delete_renews_from_the_identity_secret(installed: Sandbox):
    s = installed
    values = ROOT / "chart" / "ci" / "token-join-values.yaml"
    n = s.node
    prepare_namespace(n, TOKEN_NAMESPACE, s.standin.web_ca_path)
    chart = f"oci://{n.registry}/charts/teleport-argocd-agent"
    install = [TOKEN_RELEASE, chart, "--version", CHART_VERSION, "--namespace", TOKEN_NAMESPACE]
    install += ["--values", str(values), "--values", str(s.values)]
    notes = s.helm("install", *install, "--dry-run").split("NOTES:", 1)[1]
    # The NOTES' role and bot, then a one-time token and the Secret holding it.
    s.standin.create(notes_resources(notes))
    fullname = f"{TOKEN_RELEASE}-teleport-argocd-agent"
    token = os.urandom(16).hex()
    s.standin.create(
        {
            "kind": "token",
            "version": "v2",
            "metadata": {"name": token},
            "spec": {"roles": ["Bot"], "join_method": "token", "bot_name": fullname},
        }
    )
    n.kubectl(
        "-n",
        TOKEN_NAMESPACE,
        "create",
        "secret",
        "generic",
        "teleport-argocd-join-token",
        f"--from-literal=join-token={token}",
    )
    s.helm("install", *install)

    selector = (
        f"app.kubernetes.io/instance={TOKEN_RELEASE},app.kubernetes.io/name=teleport-argocd-agent"
    )

    def ready() -> Any:
        return s.ready_pod(TOKEN_NAMESPACE, selector)

    first = s.wait("the token-join pod to turn Ready", ready)
    with contextlib.closing(n.admin_client()) as api:
        core = k8s.CoreV1Api(api)
        assert core.read_namespaced_secret(f"{fullname}-identity", TOKEN_NAMESPACE).data
    written = s.secrets(TOKEN_NAMESPACE)
    assert [data["name"] for _, data in written] == [f"{TELEPORT_CLUSTER}-gamma"]
    bots = [i for i in s.standin.instances() if i["bot_name"] == fullname]
    assert len(bots) == 1

    # `kubectl delete pod`: the ReplicaSet starts the new pod at once, while the old one is still
    # terminating (`Recreate` governs rollouts only); measured, not assumed.
    running: dict[str, list[float]] = {}
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_running_agents,
        args=(s, TOKEN_NAMESPACE, selector, stop, running),
        daemon=True,
    )
    watcher.start()
    try:
        n.kubectl("-n", TOKEN_NAMESPACE, "delete", "pod", first.metadata.name, "--wait=false")
        second = s.wait(
            "a new token-join pod to turn Ready",
            lambda: (p := ready()) is not None and p.metadata.uid != first.metadata.uid and p,
        )
        s.wait("the old pod to go", lambda: len(s.agent_pods(TOKEN_NAMESPACE, selector)) == 1)
    finally:
        stop.set()
        watcher.join(10)
    assert second.status.container_statuses[0].restart_count == 0
    old, new = running.get(first.metadata.uid), running.get(second.metadata.uid)
    assert old is not None, running
    assert new is not None, running
    print(
        "pod delete: the new agent was first seen running "
        f"{new[0] - old[1]:+.1f}s after the old one was last seen running (seen every 0.2 s)"
    )
    # The new pod renewed the stored identity: the same bot instance, never locked (the token
    # was spent by the first pod and could not have joined again).
    bots = [i for i in s.standin.instances() if i["bot_name"] == fullname]
    assert len(bots) == 1, bots
    assert not bots[0]["locked"], bots
    assert bots[0]["generation"] > 1
    s.helm("uninstall", TOKEN_RELEASE, "--namespace", TOKEN_NAMESPACE, "--wait")


@pytest.mark.clock_read
def test_the_kubelets_token_refresh_keeps_the_agent_joining_without_a_restart(
    installed: Sandbox, refresh: Refresh
):
    s = installed
    # The first projected token expires 600 s after the pod started; the kubelet rewrote the
    # file at about 480 s. Every renewal re-joins, so once every secret was written after that
    # expiry, the agent joined with the refreshed token (the other tests ran meanwhile).
    expired_at = time.time() - (time.monotonic() - refresh.started) + refresh.life

    def written_after_expiry() -> list[Any] | None:
        with contextlib.closing(s.node.admin_client()) as api:
            items = (
                k8s.CoreV1Api(api)
                .list_namespaced_secret(
                    REFRESH_NAMESPACE, label_selector="argocd.argoproj.io/secret-type=cluster"
                )
                .items
            )
        for item in items:
            updated = item.metadata.annotations["teleport.dev/updated"]
            if dt.datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp() <= expired_at:
                return None
        return items or None

    deadline = refresh.started + refresh.life + 3 * REFRESH_RENEWAL - time.monotonic()
    items = s.wait(
        "a renewal after the first token expired", written_after_expiry, max(deadline, 60)
    )
    assert all(_parses(dict(item.data)) for item in items)
    pod = s.ready_pod(REFRESH_NAMESPACE, REFRESH_SELECTOR)
    if pod is None:
        s.fail("the refresh release's pod is not Ready after the token refresh")
    assert pod.metadata.uid == refresh.pod
    assert pod.status.container_statuses[0].restart_count == 0
    assert _token_digest(s) != refresh.token
    assert s.events("Unhealthy", REFRESH_NAMESPACE) == []
    s.helm("uninstall", REFRESH_RELEASE, "--namespace", REFRESH_NAMESPACE, "--wait")


def test_uninstall_removes_what_the_chart_installed_and_keeps_the_cluster_secrets(
    installed: Sandbox,
):
    s = installed
    before = _secret_bytes(s)
    assert before
    out = s.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    assert "uninstalled" in out
    n = s.node

    # The agent's pod goes with its ReplicaSet (the garbage collector, after `--wait` returned);
    # the last `helm test` Pod is a hook helm never deletes (README says so): only it stays.
    def pods() -> list[str]:
        return n.kubectl(
            "-n",
            NAMESPACE,
            "get",
            "pod",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "name",
        ).split()

    check = f"pod/{FULLNAME}-check"  # there after `helm test` ran (the tests above)
    s.wait("the agent's pod to go", lambda: set(pods()) <= {check} or None, 120)
    for kind in ("deployment", "configmap", "serviceaccount", "role", "rolebinding"):
        left = n.kubectl(
            "-n",
            NAMESPACE,
            "get",
            kind,
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "name",
        )
        assert left.strip() == "", (kind, left)
    policies = n.kubectl(
        "get", "validatingadmissionpolicies,validatingadmissionpolicybindings", "-o", "name"
    )
    names = {line.split("/", 1)[1] for line in policies.split()}
    assert f"{FULLNAME}.{NAMESPACE}" not in names, names
    # The cluster secrets are the agent's, not the chart's: they stay, byte for byte, until
    # they expire or are deleted by hand (README, "Uninstalling").
    assert _secret_bytes(s) == before
