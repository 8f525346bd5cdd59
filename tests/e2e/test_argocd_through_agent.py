"""Argo CD deploys through the secrets the agent writes, and through nothing else.

The agent joins the Teleport stand-in and writes its cluster secrets into Argo CD's namespace;
Argo CD then deploys to the target API servers with only what those secrets hold, through the
stand-in's Kubernetes route.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.test_agent_e2e import (  # noqa: F401 - module fixtures shared with that tier
    SELECTORS,
    Agent,
    standin,
    targets,
)
from tests.harness.agent_e2e import AgentDaemon
from tests.harness.argocd import ArgoCD, config_map_manifest
from tests.harness.kube import ControlPlane, cluster_secret_data, config_map_data
from tests.harness.standin import AdminError, StandIn, kube_cluster_doc


@pytest.fixture
def argocd_agent(
    kube: ControlPlane,
    admin_api: k8s.ApiClient,
    standin: StandIn,  # noqa: F811 - the fixture imported above
    argo: ArgoCD,
    tmp_path: Path,
) -> Iterator[Agent]:
    """An agent whose one service writes into Argo CD's namespace (its Role there: create and
    patch on secrets, as the chart grants); its secrets and Applications go afterwards."""
    agent = Agent(kube, admin_api, standin, tmp_path, secret_namespace=argo.namespace)
    agent.bot_with_token()
    agent.config(
        services=[
            {
                "type": "kubernetes/argo-cd",
                "selectors": SELECTORS,
                "secret_namespace": argo.namespace,
                "cluster_name_template": f"{{{{.KubeName}}}}-{agent.bot}",
            }
        ]
    )
    yield agent
    for name in argo.application_names():
        if name.endswith(agent.bot):
            argo.delete("applications", name)
    for name, _ in agent_secrets(argo, agent):
        argo.delete_cluster_secret(name)


def agent_secrets(argo: ArgoCD, agent: Agent) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, data)
        for name, data in cluster_secret_data(agent.admin, argo.namespace)
        if data["name"].endswith(agent.bot)
    ]


@contextlib.contextmanager
def running(agent: Agent) -> Iterator[AgentDaemon]:
    """The agent as the chart runs it: ``start`` without ``--oneshot``, stopped by SIGTERM."""
    daemon = AgentDaemon(
        ["-c", str(agent.workdir / "config.yaml")],
        kubeconfig=agent.kubeconfig,
        POD_NAMESPACE=agent.namespace,
    )
    try:
        daemon.wait_for("sync finished")
        yield daemon
    finally:
        assert daemon.stop() == 0, "".join(daemon.lines[-30:])


def test_applications_deploy_to_each_selected_cluster_through_the_agents_secrets(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    done = agent.run("start", "--oneshot")
    assert done.code == 0, done.output
    secrets = {data["name"]: data for _, data in agent_secrets(argo, agent)}
    assert sorted(secrets) == [f"alpha-{bot}", f"beta-{bot}"]
    for data in secrets.values():
        # Argo CD gets the stand-in's address, never a target API server's.
        assert data["server"].startswith(f"https://{agent.standin.proxy_addr}/v1/teleport/")
        assert all(plane.url not in data["server"] for plane in targets.values())

    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit({f"agent-{suffix}/cm.yaml": config_map_manifest("deployed", {"by": bot})})
    # alpha by the cluster's name, beta by its server URL: both ways Argo CD resolves a cluster.
    argo.create_application(
        f"alpha-{bot}", path=f"agent-{suffix}", namespace=f"app-{suffix}", cluster=f"alpha-{bot}"
    )
    argo.create_application(
        f"beta-{bot}",
        path=f"agent-{suffix}",
        namespace=f"app-{suffix}-beta",
        server=secrets[f"beta-{bot}"]["server"],
    )
    argo.wait_synced(f"alpha-{bot}")
    argo.wait_synced(f"beta-{bot}")

    assert config_map_data(targets["alpha"], f"app-{suffix}", "deployed") == {"by": bot}
    assert config_map_data(targets["beta"], f"app-{suffix}-beta", "deployed") == {"by": bot}
    # Each went to its own cluster only.
    assert config_map_data(targets["beta"], f"app-{suffix}", "deployed") is None
    assert config_map_data(targets["alpha"], f"app-{suffix}-beta", "deployed") is None


def test_application_set_follows_the_agents_labels_and_a_badly_labelled_cluster_never_reaches_it(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    # Two clusters of this test's own fleet; one has a label that cannot be a label value.
    agent.standin.create(
        kube_cluster_doc(
            f"good-{bot}", targets["alpha"], labels={"fleet": bot, "team": "blue"}, servers=2
        ),
        kube_cluster_doc(
            f"bad-{bot}", targets["beta"], labels={"fleet": bot, "team": "not valid!"}, servers=2
        ),
    )
    agent.config(
        services=[
            {
                "type": "kubernetes/argo-cd",
                "selectors": [{"labels": {"fleet": bot}}],
                "secret_namespace": argo.namespace,
                "secret_labels": {"fleet": bot, "team": '{{ index .Labels "team" }}'},
                "cluster_name_template": "{{.KubeName}}",
            }
        ]
    )
    done = agent.run("start", "--oneshot")
    # The bad cluster is reported and not written; the good one is.
    assert done.code == 1, done.output
    assert "not a valid label value" in done.output
    assert f"bad-{bot}" in done.output
    assert [data["name"] for _, data in agent_secrets(argo, agent)] == [f"good-{bot}"]

    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit({f"fleet-{suffix}/cm.yaml": config_map_manifest("fleet", {"team": "blue"})})
    appset = f"fleet-{bot}"
    argo.cluster_generator_set(
        appset, selector={"fleet": bot}, path=f"fleet-{suffix}", namespace=f"fleet-{suffix}"
    )
    try:
        argo.wait_generated_and_synced(appset, f"{appset}-good-{bot}")
        # Every secret Argo CD sees parses: the ApplicationSet controller keeps listing clusters.
        argo.wait_application_set_condition(appset, "ErrorOccurred", "False")
        assert [n for n in argo.application_names() if n.startswith(appset)] == [
            f"{appset}-good-{bot}"
        ]
        assert config_map_data(targets["alpha"], f"fleet-{suffix}", "fleet") == {"team": "blue"}
    finally:
        argo.delete("applicationsets", appset)


def test_project_namespaces_and_cluster_resources_from_the_agent_scope_what_argocd_deploys(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    allowed = f"allowed-{uuid.uuid4().hex[:6]}"
    api = targets["alpha"].admin_client()
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=allowed)))
    project = f"proj-{bot}"
    argo.create_project(
        project,
        destinations=[{"name": f"alpha-{bot}", "namespace": "*"}],
        cluster_resources=[{"group": "*", "kind": "*"}],
    )
    agent.config(
        services=[
            {
                "type": "kubernetes/argo-cd",
                "selectors": [{"name": "alpha"}],
                "secret_namespace": argo.namespace,
                "cluster_name_template": f"{{{{.KubeName}}}}-{bot}",
                "project": project,
                "namespaces": [allowed],
                "cluster_resources": False,
            }
        ]
    )
    done = agent.run("start", "--oneshot")
    assert done.code == 0, done.output
    ((_, data),) = agent_secrets(argo, agent)
    assert (data["project"], data["namespaces"], data["clusterResources"]) == (
        project,
        allowed,
        "false",
    )

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"role-{bot}"},
        "rules": [],
    }
    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit(
        {
            f"proj-{suffix}/cm/cm.yaml": config_map_manifest("scoped", {"a": "b"}),
            f"proj-{suffix}/role/role.yaml": yaml.safe_dump(role),
        }
    )
    cluster, path = f"alpha-{bot}", f"proj-{suffix}"
    argo.create_application(
        f"in-{bot}", path=f"{path}/cm", namespace=allowed, cluster=cluster, project=project
    )
    argo.create_application(
        f"out-{bot}", path=f"{path}/cm", namespace=f"o-{suffix}", cluster=cluster, project=project
    )
    argo.create_application(
        f"role-{bot}", path=f"{path}/role", namespace=allowed, cluster=cluster, project=project
    )

    argo.wait_synced(f"in-{bot}")
    assert config_map_data(targets["alpha"], allowed, "scoped") == {"a": "b"}
    argo.wait_application_condition(f"out-{bot}", f'namespace "o-{suffix}" for ConfigMap')
    argo.wait_application_condition(f"role-{bot}", f'cluster level ClusterRole "role-{bot}"')
    with pytest.raises(ApiException, match="Not Found"):
        k8s.RbacAuthorizationV1Api(api).read_cluster_role(f"role-{bot}")
    api.close()
    argo.delete("appprojects", project)


def test_a_cluster_added_or_relabelled_in_teleport_reaches_the_application_set_while_running(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    one, two = f"one-{bot}", f"two-{bot}"
    agent.standin.create(
        kube_cluster_doc(one, targets["alpha"], labels={"fleet": bot, "team": "blue"}, servers=2)
    )
    agent.config(
        services=[
            {
                "type": "kubernetes/argo-cd",
                "selectors": [{"labels": {"fleet": bot}}],
                "secret_namespace": argo.namespace,
                "secret_labels": {"fleet": bot, "team": '{{ index .Labels "team" }}'},
                "cluster_name_template": "{{.KubeName}}",
                # Short, so the test is quick; the default is 30s.
                "discovery_interval": "2s",
            }
        ]
    )
    suffix = uuid.uuid4().hex[:6]
    assert argo.repo is not None
    argo.repo.commit({f"team-{suffix}/cm.yaml": config_map_manifest("team", {"team": "blue"})})
    appset = f"blue-{bot}"
    argo.cluster_generator_set(
        appset,
        selector={"fleet": bot, "team": "blue"},
        path=f"team-{suffix}",
        namespace=f"team-{suffix}",
    )
    try:
        with running(agent) as daemon:
            argo.wait_generated_and_synced(appset, f"{appset}-{one}")

            # Added in Teleport: the running agent's next discovery writes its secret, the
            # ApplicationSet generates its Application, which syncs to the cluster behind it.
            added = time.monotonic()
            agent.standin.create(
                kube_cluster_doc(
                    two, targets["beta"], labels={"fleet": bot, "team": "blue"}, servers=2
                )
            )
            argo.wait_generated_and_synced(appset, f"{appset}-{two}")
            print(f"added cluster synced in {time.monotonic() - added:.1f}s")
            assert config_map_data(targets["beta"], f"team-{suffix}", "team") == {"team": "blue"}

            # Relabelled out of the selector, then back in: the templated secret label follows
            # Teleport's label, and the ApplicationSet removes, then regenerates, the Application.
            agent.standin.admin(
                "PUT", f"/v1/clusters/{one}/labels", {"labels": {"fleet": bot, "team": "red"}}
            )
            argo.wait_for(
                lambda: True if f"{appset}-{one}" not in argo.application_names() else None,
                f"Application {appset}-{one} to be removed",
                60,
            )
            assert f"{appset}-{two}" in argo.application_names()
            agent.standin.admin(
                "PUT", f"/v1/clusters/{one}/labels", {"labels": {"fleet": bot, "team": "blue"}}
            )
            argo.wait_generated_and_synced(appset, f"{appset}-{one}")
            # No restart: one process, one credential, only discoveries since.
            assert len([e for e in daemon.events() if e["message"] == "credential issued"]) == 1
    finally:
        argo.delete("applicationsets", appset)
        for name in (one, two):
            with contextlib.suppress(AdminError):  # two is added halfway
                agent.standin.remove_cluster(name)


def _invalidations(argo: ArgoCD) -> int:
    """How often the application controller dropped a cluster's cache for changed credentials."""
    log = argo.processes["argocd-application-controller"].log_path
    return log.read_text(errors="replace").count("Invalidated cluster")


def test_renewals_in_the_middle_of_syncs_never_fail_a_sync(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    # Renewal every 20s (jitter only makes it earlier) with the default rotation window (5s
    # here): over the minute below, two or three renewals and one SIGUSR1, all while Argo CD
    # syncs a new commit every few seconds.
    agent.config(
        credential_ttl="2m",
        renewal_interval="20s",
        services=[
            {
                "type": "kubernetes/argo-cd",
                "selectors": SELECTORS,
                "secret_namespace": argo.namespace,
                "cluster_name_template": f"{{{{.KubeName}}}}-{bot}",
            }
        ],
    )
    suffix = uuid.uuid4().hex[:6]
    path, namespace = f"renew-{suffix}", f"renew-{suffix}"
    assert argo.repo is not None
    argo.repo.commit({f"{path}/cm.yaml": config_map_manifest("renew", {"round": "0"})})
    apps = [f"alpha-{bot}", f"beta-{bot}"]
    watch = _Watch(argo, agent, apps)

    with running(agent) as daemon:
        argo.create_application(apps[0], path=path, namespace=namespace, cluster=apps[0])
        # alpha by name, beta by server URL, as in the first test.
        server = next(d["server"] for _, d in agent_secrets(argo, agent) if d["name"] == apps[1])
        argo.create_application(apps[1], path=path, namespace=namespace, server=server)
        for app in apps:
            argo.wait_synced(app)
        invalidated = _invalidations(argo)
        start, rounds, usr1 = time.monotonic(), 0, False
        while time.monotonic() - start < 55:
            rounds += 1
            argo.repo.commit(
                {f"{path}/cm.yaml": config_map_manifest("renew", {"round": f"{rounds}"})}
            )
            for app in apps:
                argo.refresh_application(app)
            if not usr1 and time.monotonic() - start > 30:
                # Every secret rewritten at once, not spread over the window.
                daemon.proc.send_signal(signal.SIGUSR1)
                usr1 = True
            until = time.monotonic() + 4
            while time.monotonic() < until:
                watch.sample()
                time.sleep(0.5)
        for app in apps:
            argo.refresh_application(app)
            argo.wait_for(
                lambda app=app: (
                    True
                    if _config_map_round(targets[app.split("-", 1)[0]], namespace) == str(rounds)
                    else None
                ),
                f"{app} to deploy round {rounds}",
                90,
                ("applications", app),
            )
            argo.wait_synced(app)
        renewals = [e for e in daemon.events() if e["message"] == "credential issued"]
        watch.sample()

    assert watch.problems == [], "\n".join(watch.problems)
    # The renewals happened and reached Argo CD: new certificates in every secret, and the
    # controller dropped its cluster caches for them.
    assert len(renewals) >= 3, renewals
    assert all(len(certs) >= 3 for certs in watch.certs.values()), {
        k: len(v) for k, v in watch.certs.items()
    }
    assert _invalidations(argo) - invalidated >= 4
    print(f"{rounds} commits, {len(renewals)} credentials, {len(watch.problems)} problems")


def _config_map_round(plane: ControlPlane, namespace: str) -> str | None:
    return (config_map_data(plane, namespace, "renew") or {}).get("round")


class _Watch:
    """Samples the Applications and the agent's secrets while renewals go on."""

    def __init__(self, argo: ArgoCD, agent: Agent, apps: list[str]) -> None:
        self.argo, self.agent, self.apps = argo, agent, apps
        self.certs: dict[str, set[str]] = {}  # secret -> every certData it held
        self.problems: list[str] = []

    def sample(self) -> None:
        for name, data in agent_secrets(self.argo, self.agent):
            self.certs.setdefault(name, set()).add(data["config"]["tlsClientConfig"]["certData"])
        for app in self.apps:
            status = self.argo.get("applications", app).get("status", {})
            health = status.get("health", {}).get("status")
            sync = status.get("sync", {}).get("status")
            phase = status.get("operationState", {}).get("phase", "Succeeded")
            conditions = [c.get("type", "") for c in status.get("conditions", [])]
            # OutOfSync for a moment after each commit is Argo CD at work; Unknown (it cannot
            # compare), a failed operation or an error condition would be the rotation's doing.
            if health not in ("Healthy", "Progressing") or sync == "Unknown":
                self.problems.append(f"{app}: health {health}, sync {sync}")
            if phase in ("Failed", "Error"):
                self.problems.append(f"{app}: {phase}: {status['operationState'].get('message')}")
            if any("Error" in c or "Warning" in c for c in conditions):
                self.problems.append(f"{app}: conditions {status['conditions']}")
