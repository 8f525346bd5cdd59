"""Argo CD deploys through the secrets the agent writes, and through nothing else.

The agent joins the Teleport stand-in and writes its cluster secrets into Argo CD's namespace;
Argo CD then deploys to the target API servers with only what those secrets hold, through the
stand-in's Kubernetes route.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
from tests.harness.agent_e2e import StandIn, kube_cluster_yaml
from tests.harness.argocd import ArgoCD, config_map_manifest
from tests.harness.kube import ControlPlane, cluster_secret_data, grant_secret_verbs


@pytest.fixture
def argocd_agent(
    kube: ControlPlane,
    admin_api: k8s.ApiClient,
    standin: StandIn,  # noqa: F811 - the fixture imported above
    argo: ArgoCD,
) -> Iterator[Agent]:
    """An agent whose one service writes into Argo CD's namespace (its Role there: create and
    patch on secrets, as the chart grants); its secrets and Applications go afterwards."""
    agent = Agent(kube, admin_api, standin)
    grant_secret_verbs(
        admin_api,
        argo.namespace,
        ["create", "patch"],
        service_account="agent",
        service_account_namespace=agent.namespace,
        name=f"writer-{agent.namespace}",
    )
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
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


def _config_map(plane: ControlPlane, namespace: str, name: str) -> dict[str, str] | None:
    api = plane.admin_client()
    try:
        found = k8s.CoreV1Api(api).read_namespaced_config_map(name, namespace)
        return dict(found.data or {})
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    finally:
        api.close()


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
        assert data["server"].startswith(f"https://{agent.standin.proxy}/v1/teleport/")
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

    assert _config_map(targets["alpha"], f"app-{suffix}", "deployed") == {"by": bot}
    assert _config_map(targets["beta"], f"app-{suffix}-beta", "deployed") == {"by": bot}
    # Each went to its own cluster only.
    assert _config_map(targets["beta"], f"app-{suffix}", "deployed") is None
    assert _config_map(targets["alpha"], f"app-{suffix}-beta", "deployed") is None


def test_application_set_follows_the_agents_labels_and_a_badly_labelled_cluster_never_reaches_it(
    argo: ArgoCD,
    argocd_agent: Agent,
    targets: dict[str, ControlPlane],  # noqa: F811 - the fixture imported above
):
    agent, bot = argocd_agent, argocd_agent.bot
    # Two clusters of this test's own fleet; one has a label that cannot be a label value.
    agent.standin.create(
        kube_cluster_yaml(f"good-{bot}", {"fleet": bot, "team": "blue"}, targets["alpha"]),
        kube_cluster_yaml(f"bad-{bot}", {"fleet": bot, "team": "not valid!"}, targets["beta"]),
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
        argo.wait_synced(f"{appset}-good-{bot}")
        # Every secret Argo CD sees parses: the ApplicationSet controller keeps listing clusters.
        argo.wait_application_set_condition(appset, "ErrorOccurred", "False")
        assert [n for n in argo.application_names() if n.startswith(appset)] == [
            f"{appset}-good-{bot}"
        ]
        assert _config_map(targets["alpha"], f"fleet-{suffix}", "fleet") == {"team": "blue"}
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
    assert _config_map(targets["alpha"], allowed, "scoped") == {"a": "b"}
    argo.wait_application_condition(f"out-{bot}", f'namespace "o-{suffix}" for ConfigMap')
    argo.wait_application_condition(f"role-{bot}", f'cluster level ClusterRole "role-{bot}"')
    with pytest.raises(ApiException, match="Not Found"):
        k8s.RbacAuthorizationV1Api(api).read_cluster_role(f"role-{bot}")
    api.close()
    argo.delete("appprojects", project)
