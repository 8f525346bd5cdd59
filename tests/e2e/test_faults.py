"""Faults on the real path: the Teleport stand-in in front of two real target API servers, the
agent's ``start`` daemon as its own process with a config shaped like the chart's, writing into
the management API server as a least-privilege ServiceAccount, and real Argo CD deploying
through the secrets where a fault could cost it a cluster.

After every fault each cluster secret must still parse as Argo CD reads it and none may have
been deleted (a deleted and recreated secret has a new uid; Argo CD would have torn down the
cluster's cache). Lifetimes are short (5 min credentials renewed every 10 s, written all at
once) so a fault can outlast a renewal in seconds. Each test has a bot of its own, so a lock or
a spent token never leaks into the next one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from agent.teleport.lifecycle import RENEW_MIN_AGE
from tests.harness.agent_e2e import (
    AgentDaemon,
    ReadableSecret,
    argocd_readable_secrets,
)
from tests.harness.argocd import ArgoCD, config_map_manifest
from tests.harness.kube import (
    ControlPlane,
    free_port,
    pod_bound_token,
    unique_namespace,
)
from tests.harness.pki import write_private
from tests.harness.policy import agent_account, policy_config, write_agent_config
from tests.harness.standin import (
    AdminError,
    IssuedIdentity,
    StandIn,
    bot_doc,
    kube_cluster_doc,
    kubernetes_token_doc,
    renew_bot,
    role_doc,
    standin,
    token_doc,
)

pytestmark = pytest.mark.timeout(900)

CLUSTER = "root"
ROLE = "argocd-access"
TTL, INTERVAL = "5m", "10s"
RENEWAL_SECONDS = 10
# Selects alpha and beta, and every cluster a test adds with env=prod.
SELECTORS: list[dict[str, Any]] = [{"labels": {"env": "prod"}}]
T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float = 120, *, interval: float = 0.5
) -> T:
    """Poll ``check`` every ``interval`` seconds until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the world: two target API servers behind the stand-in ---------------------------------


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ControlPlane]]:
    with (
        _plane(tmp_path_factory, "alpha") as alpha,
        _plane(tmp_path_factory, "beta") as beta,
    ):
        yield {"alpha": alpha, "beta": beta}


@contextlib.contextmanager
def _plane(factory: pytest.TempPathFactory, name: str) -> Iterator[ControlPlane]:
    from tests.harness.kube import control_plane  # noqa: PLC0415

    with control_plane(factory.mktemp(name)) as plane:
        yield plane


@pytest.fixture(scope="module")
def teleport(
    tmp_path_factory: pytest.TempPathFactory, targets: dict[str, ControlPlane]
) -> Iterator[StandIn]:
    resources = [
        role_doc(ROLE, kubernetes_labels={"*": "*"}, kubernetes_groups=["system:masters"]),
        kube_cluster_doc("alpha", targets["alpha"], labels={"env": "prod"}, servers=2),
        kube_cluster_doc("beta", targets["beta"], labels={"env": "prod"}),
    ]
    with standin(resources, workdir=tmp_path_factory.mktemp("teleport")) as server:
        yield server


class Installation:
    """One agent installation as the chart makes it: a namespace with the agent's
    ServiceAccount, the writer Role in the secret namespace (create, patch; deletecollection
    with prune), the identity Role, the chart's admission policy (its names and the content of
    every secret it writes), a config like the chart's ConfigMap, a bot and its token."""

    def __init__(
        self,
        kube: ControlPlane,
        admin: k8s.ApiClient,
        teleport: StandIn,
        workdir: Path,
        *,
        secret_namespace: str | None = None,
        prune: bool = False,
    ) -> None:
        self.admin, self.teleport = admin, teleport
        self.namespace = unique_namespace(admin, prefix="faults")
        self.secret_namespace = secret_namespace or self.namespace
        self.bot = f"argocd-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.diag_port = free_port()
        self.prune = prune
        token = agent_account(
            kube,
            admin,
            self.workdir,
            namespace=self.namespace,
            secret_namespace=self.secret_namespace,
            secret_verbs=["create", "patch"] + (["deletecollection"] if prune else []),
            policy_proxy=teleport.proxy_addr,
        )
        self.kubeconfig = kube.kubeconfig(self.workdir / "kubeconfig", token=token)
        teleport.create([bot_doc(self.bot, [ROLE])])
        self.daemons: list[AgentDaemon] = []

    # -- Teleport side -----------------------------------------------------------------------

    def new_token(self) -> str:
        """A single-use join token for this installation's bot, written to the token file."""
        value = uuid.uuid4().hex
        self.teleport.create([token_doc(value, self.bot)])
        write_private(self.workdir / "token", value)
        return value

    def instances(self) -> list[dict[str, Any]]:
        return [i for i in self.teleport.instances() if i["bot_name"] == self.bot]

    # -- the agent ---------------------------------------------------------------------------

    def config(self, **overrides: Any) -> Path:
        """The chart's config shape (token join method), with short lifetimes."""
        service: dict[str, Any] = {
            "type": "kubernetes/argo-cd",
            "name": "argo-cd",
            "selectors": SELECTORS,
            "secret_namespace": self.secret_namespace,
            "discovery_interval": "2s",
            "prune": self.prune,
        }
        service.update(overrides.pop("service", {}))
        return write_agent_config(
            self.workdir,
            self.teleport,
            namespace=self.namespace,
            services=[service],
            **{
                "credential_ttl": TTL,
                "renewal_interval": INTERVAL,
                "rotation_window": "0s",
                "diag_addr": f"127.0.0.1:{self.diag_port}",
                **policy_config(self.teleport.proxy_addr),
                **overrides,
            },
        )

    def start(self, **env: str) -> AgentDaemon:
        daemon = AgentDaemon(
            ["-c", str(self.workdir / "config.yaml")],
            kubeconfig=self.kubeconfig,
            POD_NAMESPACE=self.namespace,
            **env,
        )
        self.daemons.append(daemon)
        return daemon

    def run_until_ready(self, count: int = 2) -> tuple[AgentDaemon, dict[str, ReadableSecret]]:
        """A fresh token and the default config, the agent started, waited for until it wrote
        ``count`` secrets and is ready; returns the daemon and those secrets."""
        self.new_token()
        self.config()
        daemon = self.start()
        secrets = self.wait_secrets(count)
        self.wait_ready()
        return daemon, secrets

    def stop(self) -> None:
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.stop()

    def readyz(self) -> tuple[int, list[str]]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.diag_port}/readyz", timeout=5
            ) as response:
                return response.status, json.loads(response.read())["reasons"]
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["reasons"]

    def teleport_errors(self) -> dict[str, float]:
        """``teleport_argocd_agent_teleport_request_errors_total`` by operation."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.diag_port}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        pattern = (
            r'^teleport_argocd_agent_teleport_request_errors_total\{operation="([^"]*)"\} (\S+)$'
        )
        return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            with contextlib.suppress(OSError):
                return self.readyz()[0] == 200
            return False

        wait_until(ready, f"/readyz of {self.namespace} to be 200", timeout)

    def wait_not_ready(self, needle: str, timeout: float = 120) -> list[str]:
        def reasons() -> list[str] | None:
            with contextlib.suppress(OSError):
                status, found = self.readyz()
                if status == 503 and any(needle in r for r in found):
                    return found
            return None

        return wait_until(reasons, f"/readyz to say {needle!r}", timeout)

    # -- the secrets -------------------------------------------------------------------------

    def secrets(self) -> dict[str, ReadableSecret]:
        """Every cluster secret this installation wrote, each asserted whole."""
        return {
            name: secret
            for name, secret in argocd_readable_secrets(self.admin, self.secret_namespace).items()
            if secret.annotations.get("teleport.dev/bot-name") == self.bot
        }

    def versions(self) -> dict[str, str]:
        items = k8s.CoreV1Api(self.admin).list_namespaced_secret(self.secret_namespace).items
        return {i.metadata.name: i.metadata.resource_version for i in items}

    def wait_secrets(self, count: int, timeout: float = 120) -> dict[str, ReadableSecret]:
        def complete() -> dict[str, ReadableSecret] | None:
            # Counted cheaply first: parsing hundreds of secrets on every poll is slow.
            if _count(self) < count:
                return None
            found = self.secrets()
            return found if len(found) == count else None

        return wait_until(complete, f"{count} cluster secrets in {self.secret_namespace}", timeout)

    def wait_secrets_that(
        self, holds: Callable[[dict[str, ReadableSecret]], bool], what: str, timeout: float
    ) -> dict[str, ReadableSecret]:
        """This installation's secrets, once ``holds`` is true of them and there are some."""

        def check() -> dict[str, ReadableSecret] | None:
            found = self.secrets()
            return found if holds(found) else None

        return wait_until(check, what, timeout)

    def remove_secrets(self) -> None:
        """Delete what this installation wrote into a shared namespace (Argo CD's)."""
        core = k8s.CoreV1Api(self.admin)
        for name in self.secrets():
            with contextlib.suppress(ApiException):
                core.delete_namespaced_secret(name, self.secret_namespace)


def expiry(secret: ReadableSecret) -> float:
    return secret.certificate.not_valid_after_utc.timestamp()


def wait_renewed(
    agent: Installation, before: dict[str, ReadableSecret], timeout: float = RENEWAL_SECONDS * 4
) -> dict[str, ReadableSecret]:
    """Wait until every secret of ``before`` carries a credential renewed since."""

    def renewed(found: dict[str, ReadableSecret]) -> bool:
        return set(found) >= set(before) and all(
            expiry(found[n]) > expiry(before[n]) for n in before
        )

    return agent.wait_secrets_that(renewed, "the secrets to carry a renewed credential", timeout)


def assert_same_objects(before: dict[str, ReadableSecret], after: dict[str, ReadableSecret]):
    """Nothing deleted, nothing recreated: same names, same uids."""
    assert {n: s.uid for n, s in after.items()} == {n: s.uid for n, s in before.items()}


@pytest.fixture
def installations(
    kube: ControlPlane, admin_api: k8s.ApiClient, teleport: StandIn, tmp_path: Path
) -> Iterator[Callable[..., Installation]]:
    made: list[Installation] = []

    def make(**kwargs: Any) -> Installation:
        workdir = tmp_path / f"installation-{len(made)}"
        workdir.mkdir()
        made.append(Installation(kube, admin_api, teleport, workdir, **kwargs))
        return made[-1]

    yield make
    for installation in made:
        installation.stop()
        if installation.secret_namespace != installation.namespace:
            installation.remove_secrets()


# -- Argo CD deploying through the agent's secrets ------------------------------------------


class Deployment:
    """An Application that deploys a ConfigMap into ``alpha`` through the agent's secret;
    ``roll`` commits a new value and waits until Argo CD put it into the target cluster, which
    proves Argo CD still reaches the cluster with what the secret holds now."""

    def __init__(self, argo: ArgoCD, server: str, target: ControlPlane) -> None:
        self.argo, self.target = argo, target
        self.name = f"faults-{uuid.uuid4().hex[:6]}"
        self.rolls = 0
        self._commit()
        argo.create_application(self.name, path=self.name, namespace=self.name, server=server)
        argo.wait_synced(self.name, timeout=180)
        self._wait_deployed()

    def _commit(self) -> None:
        assert self.argo.repo is not None
        manifest = config_map_manifest("deployed", {"roll": str(self.rolls)})
        self.argo.repo.commit({f"{self.name}/cm.yaml": manifest}, f"{self.name} roll {self.rolls}")

    def _wait_deployed(self) -> None:
        api = self.target.admin_client()
        core = k8s.CoreV1Api(api)

        def deployed() -> bool:
            try:
                cm = core.read_namespaced_config_map("deployed", self.name)
            except ApiException:
                return False
            return bool(cm.data == {"roll": str(self.rolls)})

        try:
            self.argo.wait_for(
                deployed, f"roll {self.rolls} of {self.name}", 180, ("applications", self.name)
            )
        finally:
            api.close()

    def assert_synced(self) -> None:
        status = self.argo.get("applications", self.name).get("status", {})
        assert status.get("sync", {}).get("status") == "Synced", status.get("conditions")
        assert status.get("health", {}).get("status") == "Healthy", status.get("conditions")

    def roll(self) -> None:
        self.rolls += 1
        self._commit()
        # Argo CD polls git every few minutes; the refresh annotation makes it look now.
        k8s.CustomObjectsApi(self.argo._api).patch_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            self.argo.namespace,
            "applications",
            self.name,
            {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
        )
        self._wait_deployed()
        self.argo.wait_synced(self.name, timeout=180)

    def delete(self) -> None:
        self.argo.delete("applications", self.name)


def server_of(secrets: dict[str, ReadableSecret], kube_cluster: str) -> str:
    suffix = base64.urlsafe_b64encode(kube_cluster.encode()).decode().rstrip("=")
    (server,) = [s.server for s in secrets.values() if s.server.endswith("/" + suffix)]
    return server


# -- 1. Teleport down for longer than a renewal interval -------------------------------------


def test_teleport_down_longer_than_a_renewal_interval_recovers_by_itself(
    installations: Callable[..., Installation],
    teleport: StandIn,
    argo: ArgoCD,
    targets: dict[str, ControlPlane],
) -> None:
    agent = installations(secret_namespace=argo.namespace)
    daemon, before = agent.run_until_ready()
    app = Deployment(argo, server_of(before, "alpha"), targets["alpha"])
    try:
        teleport.stop_listening()
        try:
            down_at = time.monotonic()
            reasons = agent.wait_not_ready("Teleport")
            assert any("cannot reach" in r for r in reasons), reasons
            # Down for longer than a renewal interval: the renewal fails too, and still nothing
            # is written or deleted.
            time.sleep(max(0.0, RENEWAL_SECONDS + 5 - (time.monotonic() - down_at)))
            reasons = agent.wait_not_ready("Teleport")
            assert agent.readyz()[0] == 503
            # Counted by operation: the listings between renewals and the renewal's ping.
            errors = agent.teleport_errors()
            assert {"list clusters", "ping"} <= set(errors), errors
            during = agent.secrets()
            assert_same_objects(before, during)
            assert {n: expiry(s) for n, s in during.items()} == {
                n: expiry(s) for n, s in before.items()
            }
            app.assert_synced()
        finally:
            teleport.start_listening()
        # Back: renewed and rewritten without a restart, in place.
        after = wait_renewed(agent, before)
        assert_same_objects(before, after)
        agent.wait_ready()
        assert daemon.proc.poll() is None
        app.assert_synced()
        app.roll()
    finally:
        app.delete()


# -- 2a. The bot deleted in Teleport (revocation) ----------------------------------------------


def test_deleted_bot_stops_the_writes_keeps_the_secrets_says_what_to_do_and_never_spins(
    installations: Callable[..., Installation],
    teleport: StandIn,
    targets: dict[str, ControlPlane],
) -> None:
    agent = installations()
    _, before = agent.run_until_ready()

    teleport.delete("bot", agent.bot)  # tctl bots rm: its user and role go
    reasons = agent.wait_not_ready("bot deleted", timeout=RENEWAL_SECONDS * 4)
    # What happened and what to do, in the reason itself.
    assert any("create the bot again" in r for r in reasons), reasons
    assert _metric(agent, "teleport_argocd_agent_bot_deleted") == 1.0
    # Nothing is written any more, not even for a cluster that appears now; nothing is deleted.
    teleport.add_cluster("delta", targets["alpha"], labels={"env": "prod"})
    try:
        versions = agent.versions()
        errors = sum(agent.teleport_errors().values())
        time.sleep(RENEWAL_SECONDS * 2 + 2)
        assert agent.versions() == versions, "a deleted bot's agent must not touch any secret"
        assert_same_objects(before, agent.secrets())
        # Retried with backoff (capped at the renewal interval), never in a tight loop.
        retries = sum(agent.teleport_errors().values()) - errors
        assert 1 <= retries <= 2 * (RENEWAL_SECONDS * 2 + 2) / RENEWAL_SECONDS + 2, retries
        assert agent.readyz()[0] == 503
    finally:
        teleport.remove_cluster("delta")


def _metric(agent: Installation, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.diag_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    (value,) = re.findall(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(value)


# -- 2. The bot instance locked ----------------------------------------------------------------


def test_locked_bot_touches_no_secret_says_so_and_recovers_when_unlocked(
    installations: Callable[..., Installation], teleport: StandIn
) -> None:
    agent = installations()
    _, before = agent.run_until_ready()
    (instance,) = agent.instances()

    teleport.lock(instance["id"], "faults test")
    reasons = agent.wait_not_ready("bot locked")
    # What to do, in the reason itself.
    assert any("tctl rm locks" in r for r in reasons), reasons
    versions = agent.versions()  # the cluster secrets and the identity Secret
    time.sleep(RENEWAL_SECONDS + 2)  # a renewal comes and goes
    assert agent.versions() == versions, "a locked bot must not touch any secret"
    assert_same_objects(before, agent.secrets())
    # Counted by operation: the listings with the locked credential and the renewal.
    errors = agent.teleport_errors()
    assert {"list clusters", "renew bot identity"} <= set(errors), errors
    assert agent.readyz()[0] == 503

    teleport.unlock(instance["id"])
    after = wait_renewed(agent, before, timeout=90)
    assert_same_objects(before, after)
    agent.wait_ready()
    (same,) = agent.instances()
    assert same["id"] == instance["id"]
    assert not same["locked"]


def _stored_identity(agent: Installation) -> IssuedIdentity:
    secret = k8s.CoreV1Api(agent.admin).read_namespaced_secret("agent-identity", agent.namespace)
    data = {k: base64.b64decode(v) for k, v in secret.data.items()}
    return IssuedIdentity(data["tls.crt"], data["tls.key"], [])


def test_generation_mismatch_locks_the_bot_and_a_new_token_recovers(
    installations: Callable[..., Installation], teleport: StandIn
) -> None:
    from grpclib.exceptions import GRPCError  # noqa: PLC0415

    agent = installations()
    daemon, before = agent.run_until_ready()
    (instance,) = agent.instances()
    # A copy of the identity, as someone who read the identity Secret would hold it...
    stolen = _stored_identity(agent)
    # ...which the agent's next renewal makes an older generation.
    wait_until(
        lambda: agent.instances()[0]["generation"] > instance["generation"],
        "the agent to renew its bot identity",
        RENEWAL_SECONDS * 4,
    )
    with pytest.raises(GRPCError, match="generation mismatch"):
        renew_bot(teleport, stolen, workdir=agent.workdir)
    assert agent.instances()[0]["locked"]

    reasons = agent.wait_not_ready("bot locked")
    assert any("generation mismatch" in r for r in reasons), reasons
    versions = agent.versions()
    time.sleep(RENEWAL_SECONDS + 2)
    assert agent.versions() == versions, "a locked bot must not touch any secret"
    assert_same_objects(before, agent.secrets())

    # The way out with the token method: an administrator creates a new join token and puts
    # it into the token Secret. The agent joins with it as a new bot instance, no restart.
    agent.new_token()
    after = wait_renewed(agent, before, timeout=120)
    assert_same_objects(before, after)
    agent.wait_ready()
    instances = {i["id"]: i for i in agent.instances()}
    assert instances[instance["id"]]["locked"], "the old instance stays locked"
    (fresh,) = [i for i in instances.values() if i["id"] != instance["id"]]
    assert not fresh["locked"]
    assert daemon.proc.poll() is None


# -- 3. The join token deleted while the agent runs -------------------------------------------


def test_token_method_keeps_renewing_after_its_join_token_is_deleted(
    installations: Callable[..., Installation], teleport: StandIn
) -> None:
    agent = installations()
    token = agent.new_token()
    agent.config()
    agent.start()
    agent.wait_secrets(2)
    # Teleport deletes a single-use token when it is used; delete it anyway, as an admin would.
    with contextlib.suppress(AdminError):
        teleport.delete("token", token)
    (instance,) = agent.instances()
    before = agent.secrets()
    after = wait_renewed(agent, before)
    assert_same_objects(before, after)
    agent.wait_ready()
    (same,) = agent.instances()
    assert same["id"] == instance["id"]
    assert same["generation"] > instance["generation"], "renewed, not joined again"
    assert not same["locked"]


def test_kubernetes_method_reports_clearly_when_a_rejoin_is_refused(
    installations: Callable[..., Installation], teleport: StandIn, kube: ControlPlane
) -> None:
    agent = installations()
    name = f"kube-{agent.bot}"
    token = kubernetes_token_doc(
        name, agent.bot, jwks=kube.jwks(), service_accounts=[f"{agent.namespace}:agent"]
    )
    teleport.create([token])
    jwt = agent.workdir / "jwt"
    write_private(jwt, pod_bound_token(agent.admin, agent.namespace, audiences=[CLUSTER]))
    # The chart's kubernetes-method config: the token's name, nothing stored.
    agent.config(
        onboarding={"join_method": "kubernetes", "token": name}, storage={"type": "memory"}
    )
    daemon = agent.start(KUBERNETES_TOKEN_PATH=str(jwt))
    before = agent.wait_secrets(2)
    agent.wait_ready()

    teleport.delete("token", name)
    reasons = agent.wait_not_ready("join rejected", timeout=RENEWAL_SECONDS * 6)
    assert any("re-join" in r and name in r for r in reasons), reasons
    versions = agent.versions()
    time.sleep(RENEWAL_SECONDS + 2)
    assert agent.versions() == versions, "a refused re-join must not touch any secret"
    assert_same_objects(before, agent.secrets())
    assert daemon.proc.poll() is None

    # The token back: the next re-join works and the secrets are refreshed in place.
    teleport.create([token])
    after = wait_renewed(agent, before, timeout=90)
    assert_same_objects(before, after)
    agent.wait_ready()


# -- 5. A cluster removed from Teleport, a cluster whose labels stop matching ----------------


def test_clusters_that_leave_are_kept_by_default_and_pruned_with_prune(
    installations: Callable[..., Installation],
    teleport: StandIn,
    targets: dict[str, ControlPlane],
) -> None:
    keep, prune = installations(), installations(prune=True)
    teleport.create(
        [
            kube_cluster_doc("gamma", targets["alpha"], labels={"env": "prod"}),
            kube_cluster_doc("delta", targets["beta"], labels={"env": "prod"}),
        ]
    )
    try:
        for agent in (keep, prune):
            agent.new_token()
            agent.config()
            agent.start()
        kept_before, pruned_before = keep.wait_secrets(4), prune.wait_secrets(4)

        teleport.remove_cluster("gamma")
        teleport.relabel("delta", labels={"env": "dev"})
        pruned_after = prune.wait_secrets(2, timeout=60)
        assert {s.server for s in pruned_after.values()} == {
            server_of(pruned_before, "alpha"),
            server_of(pruned_before, "beta"),
        }
        for name, secret in pruned_after.items():
            assert secret.uid == pruned_before[name].uid, "the others are never touched"
        # Several discoveries later the default installation still has all four, as written.
        time.sleep(6)
        assert_same_objects(kept_before, keep.secrets())
    finally:
        with contextlib.suppress(AdminError):
            teleport.remove_cluster("gamma")
        with contextlib.suppress(AdminError):
            teleport.remove_cluster("delta")


# -- 6. SIGKILL in the middle of a sync --------------------------------------------------------

BULK = 200


def _count(agent: Installation) -> int:
    items = (
        k8s.CoreV1Api(agent.admin)
        .list_namespaced_secret(
            agent.secret_namespace, label_selector="argocd.argoproj.io/secret-type=cluster"
        )
        .items
    )
    return len(items)


def _count_changed(agent: Installation, versions: dict[str, str]) -> int:
    """Secrets rewritten since ``versions`` (a cheap list: the kill must land mid-rewrite)."""
    items = (
        k8s.CoreV1Api(agent.admin)
        .list_namespaced_secret(
            agent.secret_namespace, label_selector="argocd.argoproj.io/secret-type=cluster"
        )
        .items
    )
    return sum(versions.get(i.metadata.name) != i.metadata.resource_version for i in items)


def test_sigkill_mid_sync_leaves_every_secret_whole_and_restarts_from_the_stored_identity(
    installations: Callable[..., Installation],
    teleport: StandIn,
    targets: dict[str, ControlPlane],
) -> None:
    tag = uuid.uuid4().hex[:6]
    names = [f"bulk-{tag}-{i:03d}" for i in range(BULK)]
    teleport.create([kube_cluster_doc(n, targets["alpha"], labels={"bulk": tag}) for n in names])
    agent = installations()
    try:
        agent.new_token()
        agent.config(service={"selectors": [{"labels": {"bulk": tag}}]})

        # Killed while it creates the secrets.
        first = agent.start()
        wait_until(lambda: _count(agent) >= 10, "the first secrets", 120, interval=0.02)
        joined_by = time.monotonic()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        at_kill = _count(agent)
        assert at_kill < BULK, "the kill should land in the middle of the writes"
        agent.secrets()  # each one whole
        (instance,) = agent.instances()

        # Restarted: continues from the stored identity; killed again while it rewrites every
        # secret with a renewed credential (SIGUSR1: all at once).
        second = agent.start()
        written = agent.wait_secrets(BULK, timeout=180)
        second.wait_for("sync finished")
        versions = agent.versions()
        second.proc.send_signal(signal.SIGUSR1)
        wait_until(
            lambda: _count_changed(agent, versions) >= 10,
            "the rewrite to start",
            120,
            interval=0.02,
        )
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(30)
        renewed_at_kill = _count_changed(agent, versions)
        assert renewed_at_kill < BULK, "the kill should land in the middle of the rewrite"
        assert_same_objects(written, agent.secrets())

        # An identity younger than the agent's minimum renewal age is used as it is; on a fast
        # run all of the above fits into that age, and the third start must renew to prove
        # that it continues the stored identity rather than joining again.
        time.sleep(max(0.0, RENEW_MIN_AGE.total_seconds() + 1 - (time.monotonic() - joined_by)))
        third = agent.start()
        third.wait_for("sync finished")
        agent.wait_ready(timeout=180)
        final = agent.wait_secrets(BULK)
        assert_same_objects(written, final)
        (same,) = agent.instances()
        assert same["id"] == instance["id"], "no new join: the stored identity was used"
        assert same["generation"] > instance["generation"]
        assert not same["locked"], "no generation mismatch"
        print(f"sigkill: {at_kill}/{BULK} created, {renewed_at_kill}/{BULK} renewed at the kills")
    finally:
        agent.stop()
        for name in names:
            with contextlib.suppress(AdminError):
                teleport.remove_cluster(name)


# -- 4. Host CA rotation (last: it leaves the stand-in with a new Host CA) -------------------


def test_host_ca_rotation_writes_both_cas_then_the_new_one_and_argocd_keeps_the_cluster(
    installations: Callable[..., Installation],
    teleport: StandIn,
    argo: ArgoCD,
    targets: dict[str, ControlPlane],
) -> None:
    from cryptography import x509  # noqa: PLC0415

    agent = installations(secret_namespace=argo.namespace)
    daemon, before = agent.run_until_ready()
    (old_ca,) = x509.load_pem_x509_certificates(teleport.host_ca_path.read_bytes())
    app = Deployment(argo, server_of(before, "alpha"), targets["alpha"])
    rotating = False
    try:
        teleport.rotate_host_ca("start")
        rotating = True
        during = agent.wait_secrets_that(
            lambda found: all(len(s.host_cas) == 2 for s in found.values()),
            "caData with both Host CAs",
            RENEWAL_SECONDS * 6,
        )
        new_ca = next(c for c in during[next(iter(during))].host_cas if c != old_ca)
        for secret in during.values():
            assert set(secret.host_cas) == {old_ca, new_ca}
        assert_same_objects(before, during)
        app.assert_synced()
        app.roll()  # Argo CD deploys through the proxy's new certificate

        teleport.rotate_host_ca("complete")
        rotating = False
        after = agent.wait_secrets_that(
            lambda found: all(s.host_cas == [new_ca] for s in found.values()),
            "caData with only the new Host CA",
            RENEWAL_SECONDS * 6,
        )
        assert_same_objects(before, after)
        agent.wait_ready()
        app.assert_synced()
        app.roll()
        assert daemon.proc.poll() is None
    finally:
        if rotating:
            teleport.rotate_host_ca("complete")
        app.delete()
