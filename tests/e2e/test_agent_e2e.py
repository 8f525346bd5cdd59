"""The agent against the Teleport stand-in and real API servers, as its own process.

Two target kube-apiservers are registered in the stand-in as Kubernetes clusters ``alpha``
and ``beta``; the agent writes Argo CD cluster secrets into the management API server (the
session's ``kube``) as a least-privilege ServiceAccount. Each test uses a bot of its own, so
a lock or a spent token never leaks into another test.
"""

from __future__ import annotations

import base64
import re
import signal
import ssl
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.agent_e2e import (
    AGENT_OUTPUT,
    AgentDaemon,
    StandIn,
    kube_cluster_yaml,
    run_agent,
    standin_binary,
)
from tests.harness.connect_proxy import ConnectProxy
from tests.harness.kube import (
    ControlPlane,
    cluster_secret_data,
    control_plane,
    free_port,
    service_account_token,
    unique_namespace,
)
from tests.harness.notes import teleport_resources as notes_resources

CLUSTER = "root"
ROLE = {
    "kind": "role",
    "version": "v7",
    "metadata": {"name": "argocd-access"},
    "spec": {
        "allow": {
            "kubernetes_labels": {"*": "*"},
            "kubernetes_groups": ["system:masters"],
        }
    },
}
SELECTORS = [{"name": "alpha"}, {"labels": {"env": "prod"}}]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ControlPlane]]:
    """Two real API servers, each with a marker namespace naming it."""
    with (
        control_plane(tmp_path_factory.mktemp("alpha")) as alpha,
        control_plane(tmp_path_factory.mktemp("beta")) as beta,
    ):
        for name, plane in (("alpha", alpha), ("beta", beta)):
            api = plane.admin_client()
            k8s.CoreV1Api(api).create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=f"marker-{name}"))
            )
            api.close()
        yield {"alpha": alpha, "beta": beta}


@pytest.fixture(scope="module")
def standin(
    tmp_path_factory: pytest.TempPathFactory, targets: dict[str, ControlPlane]
) -> Iterator[StandIn]:
    cache = tmp_path_factory.mktemp("standin-bin")
    server = StandIn(standin_binary(cache), tmp_path_factory.mktemp("standin"), CLUSTER)
    server.start(
        [
            ROLE,
            kube_cluster_yaml("alpha", {"env": "staging"}, targets["alpha"]),
            kube_cluster_yaml("beta", {"env": "prod"}, targets["beta"]),
        ]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def no_key_material_in_any_log() -> Iterator[None]:
    """After the module: no PEM block or base64 of one in anything the agent printed."""
    yield
    text = "".join(AGENT_OUTPUT)
    assert "-----BEGIN" not in text
    assert not re.search(r"LS0tLS1CRUdJTi|0tLS0tQkVHSU4|tLS0tLUJFR0lO", text)
    assert "PRIVATE KEY" not in text


class Agent:
    """One agent installation: a namespace, its ServiceAccount, Roles and a kubeconfig."""

    def __init__(self, kube: ControlPlane, admin: k8s.ApiClient, standin: StandIn) -> None:
        self.kube, self.admin, self.standin = kube, admin, standin
        self.namespace = unique_namespace(admin, prefix="agent")
        self.bot = f"argocd-{uuid.uuid4().hex[:6]}"
        self.workdir = Path(tempfile.mkdtemp(prefix="agent-e2e-"))
        rbac = k8s.RbacAuthorizationV1Api(admin)
        rules = {
            "writer": [
                k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create", "patch"])
            ],
            # The chart's identity Role: one Secret by name, plus create.
            "identity": [
                k8s.V1PolicyRule(
                    api_groups=[""],
                    resources=["secrets"],
                    resource_names=["agent-identity"],
                    verbs=["get", "update", "patch"],
                ),
                k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create"]),
            ],
        }
        for name, rule in rules.items():
            rbac.create_namespaced_role(
                self.namespace, k8s.V1Role(metadata=k8s.V1ObjectMeta(name=name), rules=rule)
            )
            rbac.create_namespaced_role_binding(
                self.namespace,
                k8s.V1RoleBinding(
                    metadata=k8s.V1ObjectMeta(name=name),
                    role_ref=k8s.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="Role", name=name
                    ),
                    subjects=[
                        k8s.RbacV1Subject(
                            kind="ServiceAccount", name="agent", namespace=self.namespace
                        )
                    ],
                ),
            )
        token = service_account_token(admin, self.namespace, "agent")
        self.kubeconfig = kube.kubeconfig(self.workdir / "kubeconfig", token=token)

    def bot_resources(self, *, roles: list[str] | None = None) -> None:
        self.standin.create(
            {
                "kind": "bot",
                "version": "v1",
                "metadata": {"name": self.bot},
                "spec": {"roles": roles or ["argocd-access"]},
            }
        )

    def token_join(self, value: str | None = None) -> str:
        value = value or uuid.uuid4().hex
        self.standin.create(
            {
                "kind": "token",
                "version": "v2",
                "metadata": {"name": value},
                "spec": {"roles": ["Bot"], "join_method": "token", "bot_name": self.bot},
            }
        )
        return value

    def config(self, **overrides: Any) -> Path:
        config: dict[str, Any] = {
            "version": "v2",
            "proxy_server": self.standin.proxy,
            "proxy_ca_path": self.standin.web_ca,
            "onboarding": {"join_method": "token", "token": str(self.workdir / "token")},
            "storage": {"type": "kubernetes_secret", "name": "agent-identity"},
            "instance": f"{self.namespace}/agent",
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": SELECTORS,
                    "secret_namespace": self.namespace,
                }
            ],
        }
        config.update(overrides)
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
        return path

    def run(self, *args: str, **env: str) -> Any:
        return run_agent(
            [*args, "-c", str(self.workdir / "config.yaml")],
            kubeconfig=self.kubeconfig,
            POD_NAMESPACE=self.namespace,
            **env,
        )

    def secrets(self) -> list[tuple[str, dict[str, Any]]]:
        return cluster_secret_data(self.admin, self.namespace)

    def versions(self) -> dict[str, str]:
        items = k8s.CoreV1Api(self.admin).list_namespaced_secret(self.namespace).items
        return {i.metadata.name: i.metadata.resource_version for i in items}

    def instances(self) -> list[dict[str, Any]]:
        return [i for i in self.standin.instances() if i["bot_name"] == self.bot]


@pytest.fixture
def agent(kube: ControlPlane, admin_api: k8s.ApiClient, standin: StandIn) -> Agent:
    return Agent(kube, admin_api, standin)


def reached_cluster(data: dict[str, Any], workdir: Path) -> str:
    """Which target API server answers with only what the secret holds."""
    tls = data["config"]["tlsClientConfig"]
    files = {}
    for key in ("caData", "certData", "keyData"):
        path = workdir / f"{key}.pem"
        path.write_bytes(base64.b64decode(tls[key]))
        files[key] = str(path)
    cfg = k8s.Configuration(host=data["server"])
    cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file = (
        files["caData"],
        files["certData"],
        files["keyData"],
    )
    cfg.tls_server_name = tls.get("serverName") or None
    api = k8s.ApiClient(cfg)
    try:
        names = {n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items}
    finally:
        api.close()
    markers = [n.removeprefix("marker-") for n in names if n.startswith("marker-")]
    assert len(markers) == 1, names
    return markers[0]


# -- token join -----------------------------------------------------------------------------


def test_token_join_renews_and_writes_secrets_that_reach_the_right_api_server(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config()
    first = agent.run("start", "--oneshot")
    assert first.code == 0, first.output
    secrets = dict(agent.secrets())
    assert len(secrets) == 2
    for name, data in secrets.items():
        cluster = data["name"].removeprefix(f"{CLUSTER}-")
        assert reached_cluster(data, agent.workdir) == cluster, name
    (instance,) = agent.instances()
    # A restart continues from the stored identity: same instance, the generation goes up,
    # no mismatch and no lock.
    time.sleep(6)
    second = agent.run("start", "--oneshot")
    assert second.code == 0, second.output
    (after,) = agent.instances()
    assert after["id"] == instance["id"]
    assert after["generation"] > instance["generation"]
    assert not after["locked"]

    # plan writes nothing and shows no credentials.
    before = agent.versions()
    plan = agent.run("plan")
    assert plan.code == 0, plan.output
    assert "update" in plan.stdout
    assert "certData: renewed (redacted)" in plan.stdout
    assert agent.versions() == before

    # check: every secret's credential works through the proxy.
    check = agent.run("check")
    assert check.code == 0, check.output
    assert check.stdout.count("GET /version: 200") == 2

    # A locked bot: a clear error, nothing written or deleted.
    agent.standin.admin("POST", f"/v1/bot-instances/{instance['id']}/lock")
    time.sleep(6)
    locked = agent.run("start", "--oneshot")
    assert locked.code == 3, locked.output
    assert "locked" in locked.stderr
    assert agent.versions() == before


def test_wrong_token_is_rejected_and_writes_nothing(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text("not-a-token")
    agent.config()
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "Teleport rejected the join" in done.stderr
    assert agent.secrets() == []


def test_an_unknown_proxy_ca_is_refused_not_skipped(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config(proxy_ca_path=None)
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "is not trusted" in done.stderr
    assert "proxy_ca_path" in done.stderr
    assert agent.secrets() == []


def test_proxy_down_is_reported_and_writes_nothing(agent: Agent):
    (agent.workdir / "token").write_text("x")
    agent.config(proxy_server=f"127.0.0.1:{free_port()}")
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "cannot reach" in done.stderr
    assert agent.secrets() == []


# -- egress proxy ----------------------------------------------------------------------------


def test_every_teleport_connection_goes_through_the_egress_proxy(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config()
    # The Kubernetes client honours the same variables: the API server is exempted, as a pod
    # exempts its cluster's API server address.
    api_server = agent.kube.url.removeprefix("https://")
    with ConnectProxy(credentials=("egress", "s3cret-pass")).running() as proxy:
        done = agent.run("start", "--oneshot", HTTPS_PROXY=proxy.url, NO_PROXY=api_server)
        assert done.code == 0, done.output
        assert len(agent.secrets()) == 2
        # Only tunnels to the Teleport proxy's one port, for the web API and for gRPC to Auth
        # (its ALPN is in the ClientHello, which the egress proxy sees in clear).
        assert set(proxy.targets) == {agent.standin.proxy}
        grpc = [b for b in proxy.first_bytes if b"teleport-auth@" in b]
        assert grpc, "gRPC to Auth did not go through the egress proxy"
        assert len(proxy.first_bytes) > len(grpc), "the web API did not go through it"
        before = len(proxy.targets)
        check = agent.run("check", HTTPS_PROXY=proxy.url, NO_PROXY=api_server)
        assert check.code == 0, check.output
        assert check.stdout.count("GET /version: 200") == 2
        assert len(proxy.targets) > before
    assert "s3cret-pass" not in done.output + check.output


def test_no_proxy_bypasses_the_egress_proxy(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config()
    host = agent.standin.proxy.rpartition(":")[0]
    with ConnectProxy(refuse=True).running() as proxy:
        done = agent.run(
            "start", "--oneshot", HTTPS_PROXY=proxy.url, NO_PROXY=f"example.com,{host}"
        )
        assert done.code == 0, done.output
        assert proxy.targets == []


def test_egress_proxy_refusing_the_tunnel_is_reported_and_writes_nothing(agent: Agent):
    (agent.workdir / "token").write_text("x")
    agent.config()
    with ConnectProxy(credentials=("egress", "right")).running() as proxy:
        url = proxy.url.replace("egress:right@", "")
        api_server = agent.kube.url.removeprefix("https://")
        done = agent.run("start", "--oneshot", HTTPS_PROXY=url, NO_PROXY=api_server)
    assert done.code == 3, done.output
    assert f"the egress proxy http://127.0.0.1:{proxy.port} (HTTPS_PROXY) refused" in done.stderr
    assert "407 Proxy Authentication Required" in done.stderr
    assert agent.secrets() == []


def test_a_tls_terminating_load_balancer_is_detected_and_named(
    agent: Agent, tmp_path_factory: pytest.TempPathFactory
):
    # The same stand-in binary, behind what plays a cloud L7 load balancer (TELEPORT.md 1a).
    behind = StandIn(
        agent.standin.binary,
        tmp_path_factory.mktemp("standin-l7"),
        CLUSTER,
        flags=["--l7-load-balancer"],
    ).start([ROLE])
    try:
        (agent.workdir / "token").write_text("x")
        agent.config(proxy_server=behind.proxy, proxy_ca_path=behind.web_ca)
        done = agent.run("start", "--oneshot")
        assert done.code == 3, done.output
        assert f"{behind.proxy} answers through a load balancer that terminates TLS" in done.stderr
        assert "no application protocol" in done.stderr
        assert "TCP (layer 4) load balancer or TLS passthrough" in done.stderr
        assert agent.secrets() == []
        check = agent.run("check")
        assert check.code != 0
        assert "load balancer that terminates TLS" in check.output
    finally:
        behind.stop()


def test_role_not_impersonable_is_reported(agent: Agent):
    agent.bot_resources(roles=["no-such-role"])
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config()
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "issue output identity" in done.stderr
    assert agent.secrets() == []


def test_expired_identity_with_a_spent_token_says_to_create_a_new_token(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config(credential_ttl="4s", renewal_interval="2s")
    first = agent.run("start", "--oneshot")
    assert first.code == 0, first.output
    before = agent.versions()
    time.sleep(5)
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "Create a new join token" in done.stderr
    assert agent.versions() == before


# -- kubernetes join ------------------------------------------------------------------------


def _jwks(kube: ControlPlane) -> str:
    ctx = ssl.create_default_context(cafile=str(kube.ca_path))
    ctx.load_cert_chain(str(kube.admin_cert_path), str(kube.admin_key_path))
    with urllib.request.urlopen(kube.url + "/openid/v1/jwks", context=ctx) as resp:  # noqa: S310
        return str(resp.read().decode())


def _pod_token(admin: k8s.ApiClient, namespace: str, *, audience: str, bound: bool) -> str:
    core = k8s.CoreV1Api(admin)
    pod_name = f"agent-{uuid.uuid4().hex[:6]}"
    pod = core.create_namespaced_pod(
        namespace,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=pod_name),
            spec=k8s.V1PodSpec(
                service_account_name="agent",
                automount_service_account_token=False,
                containers=[k8s.V1Container(name="agent", image="agent:test")],
            ),
        ),
    )
    spec = k8s.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600)
    if bound:
        spec.bound_object_ref = k8s.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=pod_name, uid=pod.metadata.uid
        )
    answer = core.create_namespaced_service_account_token(
        "agent", namespace, k8s.AuthenticationV1TokenRequest(spec=spec)
    )
    return str(answer.status.token)


def _kubernetes_token(agent: Agent, kube: ControlPlane) -> str:
    name = f"kube-{agent.bot}"
    agent.standin.create(
        {
            "kind": "token",
            "version": "v2",
            "metadata": {"name": name},
            "spec": {
                "roles": ["Bot"],
                "join_method": "kubernetes",
                "bot_name": agent.bot,
                "kubernetes": {
                    "type": "static_jwks",
                    "static_jwks": {"jwks": _jwks(kube)},
                    "allow": [{"service_account": f"{agent.namespace}:agent"}],
                },
            },
        }
    )
    return name


def test_kubernetes_join_with_a_pod_bound_token_and_rejoin_keeps_the_instance(
    agent: Agent, kube: ControlPlane
):
    agent.bot_resources()
    name = _kubernetes_token(agent, kube)
    jwt = agent.workdir / "jwt"
    jwt.write_text(_pod_token(agent.admin, agent.namespace, audience=CLUSTER, bound=True))
    config = agent.config(
        onboarding={"join_method": "kubernetes", "token": name}, storage={"type": "memory"}
    )
    daemon = AgentDaemon(
        ["-c", str(config)],
        kubeconfig=agent.kubeconfig,
        POD_NAMESPACE=agent.namespace,
        KUBERNETES_TOKEN_PATH=str(jwt),
    )
    try:
        daemon.wait_for("sync finished")
        (instance,) = agent.instances()
        assert len(agent.secrets()) == 2
        time.sleep(6)
        # The kubelet would have rotated the projected token: the re-join reads it again.
        jwt.write_text(_pod_token(agent.admin, agent.namespace, audience=CLUSTER, bound=True))
        daemon.proc.send_signal(signal.SIGUSR1)
        daemon.wait_for("sync finished", count=2)
        (after,) = agent.instances()
        assert after["id"] == instance["id"]
        assert after["generation"] > instance["generation"]
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("audience", "bound", "expected"),
    [("not-the-cluster", True, "aud"), (CLUSTER, False, "pod bound")],
    ids=["wrong audience", "not pod-bound"],
)
def test_kubernetes_join_rejects_bad_tokens(
    agent: Agent, kube: ControlPlane, audience: str, bound: bool, expected: str
):
    agent.bot_resources()
    name = _kubernetes_token(agent, kube)
    jwt = agent.workdir / "jwt"
    jwt.write_text(_pod_token(agent.admin, agent.namespace, audience=audience, bound=bound))
    agent.config(
        onboarding={"join_method": "kubernetes", "token": name}, storage={"type": "memory"}
    )
    done = agent.run("start", "--oneshot", KUBERNETES_TOKEN_PATH=str(jwt))
    assert done.code == 3, done.output
    assert "Teleport rejected the join" in done.stderr
    assert expected in done.stderr
    assert agent.secrets() == []


# -- CA rotation (last: it changes the stand-in for every later test) ---------------------


def test_check_reports_secrets_whose_credential_no_longer_works(agent: Agent):
    agent.bot_resources()
    (agent.workdir / "token").write_text(agent.token_join())
    agent.config()
    assert agent.run("start", "--oneshot").code == 0
    agent.standin.admin("POST", "/v1/host-ca/rotate", {"phase": "start"})
    try:
        check = agent.run("check")
        assert check.code == 1, check.output
        assert check.stdout.count("FAIL") == 2
        assert "Host CA was rotated" in check.stdout
        # The next cycle rewrites the secrets with the new CA, and check is green again.
        time.sleep(6)
        assert agent.run("start", "--oneshot").code == 0
        again = agent.run("check")
        assert again.code == 0, again.output
    finally:
        agent.standin.admin("POST", "/v1/host-ca/rotate", {"phase": "complete"})


# -- the chart's config and NOTES -----------------------------------------------------------

GUIDE_VALUES = Path(__file__).resolve().parents[2] / "chart" / "ci" / "guide-values.yaml"
JWKS_PLACEHOLDER = "'<paste the output of: kubectl get --raw /openid/v1/jwks>'"


def test_the_chart_config_runs_as_its_service_account_with_the_notes_resources(
    kube: ControlPlane, admin_api: k8s.ApiClient, standin: StandIn, tmp_path: Path
):
    from tests.chart.helm import Helm  # noqa: PLC0415

    namespace = unique_namespace(admin_api, prefix="chart")
    release = f"r{uuid.uuid4().hex[:5]}"
    values = yaml.safe_load(GUIDE_VALUES.read_text())
    values.update(clusterName=CLUSTER, teleportProxyAddress=standin.proxy, token=f"{release}-join")
    # A real install into the management API server: the ServiceAccount, Roles and ConfigMap
    # are the chart's own (nothing runs the Deployment: there are no controllers here).
    helm = Helm(tmp_path / "helm", kube.kubeconfig(tmp_path / "admin-kubeconfig"))
    install = helm.run(
        "install",
        release,
        str(GUIDE_VALUES.parents[1]),
        "--namespace",
        namespace,
        *helm.values_args([values]),
    )
    fullname = f"{release}-teleport-argocd-agent"
    config_map = k8s.CoreV1Api(admin_api).read_namespaced_config_map(fullname, namespace)
    config = tmp_path / "config.yaml"
    config.write_text(config_map.data["config.yaml"])
    notes = install.stdout.split("NOTES:", 1)[1]
    resources = notes_resources(notes)
    assert JWKS_PLACEHOLDER in resources
    standin.create_yaml(resources.replace(JWKS_PLACEHOLDER, f"'{_jwks(kube)}'"))
    standin.admin(
        "PUT",
        "/v1/clusters/beta/labels",
        {"labels": {"env": "prod", "environment": "production"}},
    )

    sa_name = fullname
    core = k8s.CoreV1Api(admin_api)
    pod = core.create_namespaced_pod(
        namespace,
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="agent"),
            spec=k8s.V1PodSpec(
                service_account_name=sa_name,
                automount_service_account_token=False,
                containers=[k8s.V1Container(name="agent", image="agent:test")],
            ),
        ),
    )
    spec = k8s.V1TokenRequestSpec(
        audiences=[CLUSTER],
        expiration_seconds=600,
        bound_object_ref=k8s.V1BoundObjectReference(
            api_version="v1", kind="Pod", name="agent", uid=pod.metadata.uid
        ),
    )
    jwt = tmp_path / "join-sa-token"
    jwt.write_text(
        core.create_namespaced_service_account_token(
            sa_name, namespace, k8s.AuthenticationV1TokenRequest(spec=spec)
        ).status.token
    )
    kubeconfig = kube.kubeconfig(
        tmp_path / "kubeconfig",
        token=service_account_token(admin_api, namespace, sa_name, create=False),
    )
    done = run_agent(
        ["start", "--oneshot", "-c", str(config)],
        kubeconfig=kubeconfig,
        POD_NAMESPACE=namespace,
        KUBERNETES_TOKEN_PATH=str(jwt),
        # The stand-in's web certificate comes from a test CA: the chart's teleportProxyCA.
        TELEPORT_ARGOCD_AGENT_PROXY_CA_PATH=standin.web_ca,
    )
    assert done.code == 0, done.output
    secrets = cluster_secret_data(admin_api, namespace)
    assert [data["name"] for _, data in secrets] == [f"{CLUSTER}-beta"]
