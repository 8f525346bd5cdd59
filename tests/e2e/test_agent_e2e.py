"""The agent against the Teleport stand-in and real API servers, as its own process.

Two target kube-apiservers are registered in the stand-in as Kubernetes clusters ``alpha``
and ``beta``; the agent writes Argo CD cluster secrets into the management API server (the
session's ``kube``) as a least-privilege ServiceAccount. Each test uses a bot of its own, so
a lock or a spent token never leaks into another test.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.agent_e2e import AGENT_OUTPUT, AgentDaemon, argocd_readable_secrets, run_agent
from tests.harness.connect_proxy import ConnectProxy
from tests.harness.kube import (
    ControlPlane,
    cluster_secret_data,
    control_plane,
    free_port,
    pod_bound_token,
    service_account_token,
    unique_namespace,
)
from tests.harness.notes import teleport_resources as notes_resources
from tests.harness.pki import write_private
from tests.harness.policy import agent_account, write_agent_config
from tests.harness.standin import (
    StandIn,
    bot_doc,
    kube_cluster_doc,
    kubernetes_token_doc,
    role_doc,
    token_doc,
)

CLUSTER = "root"
ROLE = role_doc("argocd-access", kubernetes_labels={"*": "*"}, kubernetes_groups=["system:masters"])
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
    server = StandIn("", tmp_path_factory.mktemp("standin"), CLUSTER)
    # Two kube services carry each cluster: the listing must de-duplicate.
    server.start(
        [
            ROLE,
            kube_cluster_doc("alpha", targets["alpha"], labels={"env": "staging"}, servers=2),
            kube_cluster_doc("beta", targets["beta"], labels={"env": "prod"}, servers=2),
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
    """One agent installation: a namespace, its ServiceAccount, Roles (writing secrets into
    ``secret_namespace``, its own namespace by default) and a kubeconfig."""

    def __init__(
        self,
        kube: ControlPlane,
        admin: k8s.ApiClient,
        standin: StandIn,
        workdir: Path,
        *,
        secret_namespace: str | None = None,
    ) -> None:
        self.kube, self.admin, self.standin = kube, admin, standin
        self.namespace = unique_namespace(admin, prefix="agent")
        self.bot = f"argocd-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.secret_namespace = secret_namespace or self.namespace
        token = agent_account(
            kube,
            admin,
            workdir,
            namespace=self.namespace,
            secret_namespace=self.secret_namespace,
        )
        self.kubeconfig = kube.kubeconfig(self.workdir / "kubeconfig", token=token)

    def bot_resources(self, *, roles: list[str] | None = None) -> None:
        self.standin.create(bot_doc(self.bot, roles or ["argocd-access"]))

    def token_join(self, value: str | None = None) -> str:
        value = value or uuid.uuid4().hex
        self.standin.create(token_doc(value, self.bot))
        return value

    def bot_with_token(self, *, roles: list[str] | None = None) -> None:
        """This agent's bot, a join token for it, and the token file holding it."""
        self.bot_resources(roles=roles)
        self.write_token(self.token_join())

    def write_token(self, value: str) -> None:
        """The token file of the token join method (readable by its owner only)."""
        write_private(self.workdir / "token", value)

    def config(self, **overrides: Any) -> Path:
        service = {
            "type": "kubernetes/argo-cd",
            "selectors": SELECTORS,
            "secret_namespace": self.secret_namespace,
        }
        return write_agent_config(
            self.workdir,
            self.standin,
            namespace=self.namespace,
            services=overrides.pop("services", [service]),
            **overrides,
        )

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
def agent(kube: ControlPlane, admin_api: k8s.ApiClient, standin: StandIn, tmp_path: Path) -> Agent:
    return Agent(kube, admin_api, standin, tmp_path)


def reached_cluster(data: dict[str, Any], workdir: Path) -> str:
    """Which target API server answers with only what the secret holds."""
    tls = data["config"]["tlsClientConfig"]
    files = {}
    for key in ("caData", "certData", "keyData"):
        files[key] = str(write_private(workdir / f"{key}.pem", base64.b64decode(tls[key])))
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
    agent.bot_with_token()
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
    agent.write_token("not-a-token")
    agent.config()
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "Teleport rejected the join" in done.stderr
    assert agent.secrets() == []


def test_an_unknown_proxy_ca_is_refused_not_skipped(agent: Agent):
    agent.bot_with_token()
    agent.config(proxy_ca_path=None)
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "is not trusted" in done.stderr
    assert "proxy_ca_path" in done.stderr
    assert agent.secrets() == []


def test_proxy_down_is_reported_and_writes_nothing(agent: Agent):
    agent.write_token("x")
    agent.config(proxy_server=f"127.0.0.1:{free_port()}")
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "cannot reach" in done.stderr
    assert agent.secrets() == []


# -- egress proxy ----------------------------------------------------------------------------


def test_every_teleport_connection_goes_through_the_egress_proxy(agent: Agent):
    agent.bot_with_token()
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
        assert set(proxy.targets) == {agent.standin.proxy_addr}
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
    agent.bot_with_token()
    agent.config()
    host = agent.standin.proxy_addr.rpartition(":")[0]
    with ConnectProxy(refuse=True).running() as proxy:
        done = agent.run(
            "start", "--oneshot", HTTPS_PROXY=proxy.url, NO_PROXY=f"example.com,{host}"
        )
        assert done.code == 0, done.output
        assert proxy.targets == []


def test_egress_proxy_refusing_the_tunnel_is_reported_and_writes_nothing(agent: Agent):
    agent.write_token("x")
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
        agent.write_token("x")
        agent.config(proxy_server=behind.proxy_addr, proxy_ca_path=str(behind.web_ca_path))
        done = agent.run("start", "--oneshot")
        assert done.code == 3, done.output
        assert (
            f"{behind.proxy_addr} answers through a load balancer that terminates TLS"
            in done.stderr
        )
        assert "no application protocol" in done.stderr
        assert "TCP (layer 4) load balancer or TLS passthrough" in done.stderr
        assert agent.secrets() == []
        check = agent.run("check")
        assert check.code != 0
        assert "load balancer that terminates TLS" in check.output
    finally:
        behind.stop()


def test_role_not_impersonable_is_reported(agent: Agent):
    agent.bot_with_token(roles=["no-such-role"])
    agent.config()
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "issue output identity" in done.stderr
    assert agent.secrets() == []


def test_expired_identity_with_a_spent_token_says_to_create_a_new_token(agent: Agent):
    agent.bot_with_token()
    agent.config(credential_ttl="4s", renewal_interval="2s")
    first = agent.run("start", "--oneshot")
    assert first.code == 0, first.output
    before = agent.versions()
    time.sleep(5)
    done = agent.run("start", "--oneshot")
    assert done.code == 3, done.output
    assert "Create a new join token" in done.stderr
    assert agent.versions() == before


def test_a_service_with_its_own_credential_ttl_gets_a_credential_of_that_lifetime(agent: Agent):
    agent.bot_with_token()
    agent.config(
        credential_ttl="40m",
        renewal_interval="20m",
        services=[
            {
                "type": "kubernetes/argo-cd",
                "name": "default-ttl",
                "selectors": [{"name": "alpha"}],
                "secret_namespace": agent.namespace,
            },
            {
                "type": "kubernetes/argo-cd",
                "name": "own-ttl",
                "selectors": [{"name": "beta"}],
                "secret_namespace": agent.namespace,
                "credential_ttl": "15m",
                "renewal_interval": "5m",
            },
        ],
    )
    before = dt.datetime.now(dt.UTC)
    done = agent.run("start", "--oneshot")
    after = dt.datetime.now(dt.UTC)
    assert done.code == 0, done.output
    expiry = {
        secret.annotations["teleport.dev/kubernetes-cluster-name"]: (
            secret.certificate.not_valid_after_utc
        )
        for secret in argocd_readable_secrets(agent.admin, agent.namespace).values()
    }
    assert set(expiry) == {"alpha", "beta"}
    # Teleport grants the expiry asked for (whole seconds): now + the service's TTL.
    for cluster, ttl in (("alpha", dt.timedelta(minutes=40)), ("beta", dt.timedelta(minutes=15))):
        assert before + ttl - dt.timedelta(seconds=1) <= expiry[cluster] <= after + ttl, cluster


def test_clusters_listed_over_more_than_one_page_are_all_found(
    agent: Agent, targets: dict[str, ControlPlane], tmp_path: Path
):
    # The agent asks for pages of 500 kube servers; each cluster here is carried by two kube
    # services, so 260 clusters make 520 entries: two pages, in name order.
    server = StandIn(agent.standin.binary, tmp_path / "paged-standin", CLUSTER)
    filler = [
        kube_cluster_doc(f"fill-{i:03d}", targets["alpha"], labels={"env": "filler"}, servers=2)
        for i in range(258)
    ]
    server.start(
        [
            ROLE,
            kube_cluster_doc("aa-first-page", targets["alpha"], labels={"env": "paged"}, servers=2),
            *filler,
            kube_cluster_doc("zz-second-page", targets["beta"], labels={"env": "paged"}, servers=2),
        ]
    )
    try:
        agent.standin = server
        agent.bot_with_token()
        agent.config(
            services=[
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": [{"labels": {"env": "paged"}}],
                    "secret_namespace": agent.namespace,
                }
            ]
        )
        done = agent.run("start", "--oneshot")
        assert done.code == 0, done.output
        names = sorted(data["name"] for _, data in agent.secrets())
        assert names == [f"{CLUSTER}-aa-first-page", f"{CLUSTER}-zz-second-page"]
        listings = [
            entry
            for entry in server.admin("GET", "/v1/log")
            if entry.get("method") == "/proto.AuthService/ListResources"
        ]
        assert len(listings) >= 2, "one listing of two pages"
    finally:
        server.stop()


# -- kubernetes join ------------------------------------------------------------------------


def _kubernetes_token(agent: Agent, kube: ControlPlane) -> str:
    name = f"kube-{agent.bot}"
    agent.standin.create(
        kubernetes_token_doc(
            name, agent.bot, jwks=kube.jwks(), service_accounts=[f"{agent.namespace}:agent"]
        )
    )
    return name


def test_kubernetes_join_with_a_pod_bound_token_and_rejoin_keeps_the_instance(
    agent: Agent, kube: ControlPlane
):
    agent.bot_resources()
    name = _kubernetes_token(agent, kube)
    jwt = agent.workdir / "jwt"
    write_private(jwt, pod_bound_token(agent.admin, agent.namespace, audiences=[CLUSTER]))
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
        write_private(jwt, pod_bound_token(agent.admin, agent.namespace, audiences=[CLUSTER]))
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
    write_private(
        jwt,
        pod_bound_token(agent.admin, agent.namespace, audiences=[audience], bind_pod=bound),
    )
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
    agent.bot_with_token()
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
    values.update(
        clusterName=CLUSTER, teleportProxyAddress=standin.proxy_addr, token=f"{release}-join"
    )
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
    standin.create(resources.replace(JWKS_PLACEHOLDER, f"'{kube.jwks()}'"))
    standin.admin(
        "PUT",
        "/v1/clusters/beta/labels",
        {"labels": {"env": "prod", "environment": "production"}},
    )

    sa_name = fullname
    jwt = write_private(
        tmp_path / "join-sa-token",
        pod_bound_token(admin_api, namespace, sa_name, audiences=[CLUSTER]),
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
        TELEPORT_ARGOCD_AGENT_PROXY_CA_PATH=str(standin.web_ca_path),
    )
    assert done.code == 0, done.output
    secrets = cluster_secret_data(admin_api, namespace)
    assert [data["name"] for _, data in secrets] == [f"{CLUSTER}-beta"]
