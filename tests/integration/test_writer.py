"""The secret writer against a real API server, as a ServiceAccount with least privilege."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import itertools
import json
import socket
import threading
import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from agent.argocd import DesiredSecret, owner_id, render_secret
from agent.config import parse_config
from agent.kube import SKIPPED_BUDGET, SKIPPED_UNREACHABLE, Outcome, SecretWriter, WriteResult
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from tests.harness.flaky_proxy import dropping_proxy
from tests.harness.kube import (
    free_port,
    grant_secret_verbs,
    service_account_token,
    unique_namespace,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)
INSTANCE = "argocd/teleport-argocd-agent"


def credential(serial: int = 1) -> Credential:
    cert = f"-----BEGIN CERTIFICATE-----\nCERT-{serial}\n-----END CERTIFICATE-----\n".encode()
    key = f"-----BEGIN PRIVATE KEY-----\nKEY-{serial}\n-----END PRIVATE KEY-----\n".encode()
    ca = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
    return Credential(cert, key, (ca,), "argocd", NOW + dt.timedelta(hours=serial))


def desired(
    namespace: str,
    cluster: str,
    *,
    serial: int = 1,
    service_name: str = "argo-cd",
    prefix: str = "teleport.argocd-cluster",
    instance: str = INSTANCE,
) -> DesiredSecret:
    service = parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": [{"name": cluster}],
                    "secret_namespace": namespace,
                    "secret_name_prefix": prefix,
                }
            ],
        }
    ).services[0]
    return render_secret(
        service=service,
        service_name=service_name,
        instance=instance,
        proxy=PROXY,
        cluster=KubeCluster(cluster, {"env": "test"}),
        credential=credential(serial),
        agent_version="0.1.0",
        now=NOW + dt.timedelta(minutes=serial),
    )


def grant(admin: k8s.ApiClient, namespace: str, verbs: list[str], sa_namespace: str) -> None:
    grant_secret_verbs(
        admin, namespace, verbs, service_account="agent", service_account_namespace=sa_namespace
    )


@pytest.fixture
def agent_api(admin_api, namespace, service_account_client):
    """An API client for a ServiceAccount allowed only create + patch on secrets."""
    grant(admin_api, namespace, ["create", "patch"], namespace)
    return service_account_client(namespace, "agent")


@pytest.fixture
def pruning_api(admin_api, namespace, service_account_client):
    grant(admin_api, namespace, ["create", "patch", "deletecollection"], namespace)
    return service_account_client(namespace, "agent")


def read(admin: k8s.ApiClient, namespace: str, name: str) -> k8s.V1Secret:
    return k8s.CoreV1Api(admin).read_namespaced_secret(name, namespace)


def decoded(secret: k8s.V1Secret, key: str) -> str:
    return base64.b64decode(secret.data[key]).decode()


def test_creates_and_updates_with_only_create_and_patch_and_cannot_read(
    admin_api, agent_api, namespace
):
    core = k8s.CoreV1Api(admin_api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="argocd-secret"), string_data={"k": "v"}),
    )
    writer = SecretWriter(agent_api)
    first = [desired(namespace, f"kube-{i}") for i in range(3)]
    assert [r.outcome for r in writer.write(first)] == [Outcome.CREATED] * 3

    renewed = [desired(namespace, f"kube-{i}", serial=2) for i in range(3)]
    assert [r.outcome for r in writer.write(renewed)] == [Outcome.UPDATED] * 3
    assert [r.outcome for r in writer.write(renewed)] == [Outcome.UNCHANGED] * 3

    live = read(admin_api, namespace, renewed[0].name)
    config = json.loads(decoded(live, "config"))
    assert base64.b64decode(config["tlsClientConfig"]["certData"]).startswith(
        b"-----BEGIN CERTIFICATE-----\nCERT-2"
    )
    assert live.metadata.labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert live.type == "Opaque"

    agent_core = k8s.CoreV1Api(agent_api)
    for call in (
        lambda: agent_core.read_namespaced_secret("argocd-secret", namespace),
        lambda: agent_core.read_namespaced_secret(renewed[0].name, namespace),
        lambda: agent_core.list_namespaced_secret(namespace),
    ):
        with pytest.raises(ApiException) as denied:
            call()
        assert denied.value.status == 403


def test_foreign_secret_with_colliding_name_is_left_untouched(admin_api, agent_api, namespace):
    ours = desired(namespace, "kube-a")
    core = k8s.CoreV1Api(admin_api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=ours.name, labels={"owner": "someone-else"}),
            string_data={"name": "theirs", "server": "https://elsewhere", "config": "{}"},
        ),
        field_manager="someone-else",
    )
    before = k8s.ApiClient().sanitize_for_serialization(read(admin_api, namespace, ours.name))

    result = SecretWriter(agent_api).write([ours])[0]

    assert result.outcome is Outcome.CONFLICT
    assert result.managers == ("someone-else",)
    after = k8s.ApiClient().sanitize_for_serialization(read(admin_api, namespace, ours.name))
    assert after == before  # byte for byte, resourceVersion included


def test_argocd_style_update_is_taken_back(admin_api, agent_api, namespace):
    writer = SecretWriter(agent_api)
    secret = desired(namespace, "kube-a")
    assert writer.write_one(secret).outcome is Outcome.CREATED

    # Argo CD's API server rewrites the whole secret with a plain update ("invalidate cache").
    core = k8s.CoreV1Api(admin_api)
    live = read(admin_api, namespace, secret.name)
    live.data["config"] = base64.b64encode(b'{"tlsClientConfig":{"insecure":true}}').decode()
    live.metadata.annotations["argocd.argoproj.io/refresh"] = "now"
    core.replace_namespaced_secret(secret.name, namespace, live, field_manager="argocd-server")

    result = writer.write_one(desired(namespace, "kube-a", serial=2))

    assert result.outcome is Outcome.UPDATED
    assert result.managers == ("argocd-server",)
    live = read(admin_api, namespace, secret.name)
    assert json.loads(decoded(live, "config"))["tlsClientConfig"]["insecure"] is False


def test_secret_written_by_tbot_under_the_same_name_is_adopted(admin_api, agent_api, namespace):
    secret = desired(namespace, "kube-a")
    body = secret.apply_body()
    body["metadata"]["annotations"] = {"teleport.dev/tbot-version": "18.0.0"}
    body["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": "cluster"}
    body["data"]["config"] = base64.b64encode(b'{"tlsClientConfig":{}}').decode()
    k8s.CoreV1Api(admin_api).create_namespaced_secret(namespace, body, field_manager="tbot")

    result = SecretWriter(agent_api).write_one(secret)

    assert result.outcome is Outcome.UPDATED
    assert result.managers == ("tbot",)
    live = read(admin_api, namespace, secret.name)
    assert live.metadata.labels["teleport-argocd-agent/owner"] == owner_id(INSTANCE, "argo-cd")
    assert "caData" in json.loads(decoded(live, "config"))["tlsClientConfig"]


def test_label_added_by_another_manager_survives_our_update(admin_api, agent_api, namespace):
    writer = SecretWriter(agent_api)
    secret = desired(namespace, "kube-a")
    writer.write_one(secret)
    k8s.CoreV1Api(admin_api).patch_namespaced_secret(
        secret.name,
        namespace,
        {"metadata": {"labels": {"team": "payments"}, "annotations": {"note": "keep me"}}},
        field_manager="kubectl-label",
    )

    assert writer.write_one(desired(namespace, "kube-a", serial=2)).outcome is Outcome.UPDATED

    live = read(admin_api, namespace, secret.name)
    assert live.metadata.labels["team"] == "payments"
    assert live.metadata.annotations["note"] == "keep me"


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"service_name": "second-service"}, id="another-service"),
        pytest.param({"instance": "other-namespace/other-release"}, id="another-installation"),
    ],
)
def test_two_owners_of_one_secret_name_never_overwrite_each_other(
    admin_api, agent_api, namespace, other
):
    writer = SecretWriter(agent_api)
    first = desired(namespace, "kube-a")
    assert writer.write_one(first).outcome is Outcome.CREATED
    before = read(admin_api, namespace, first.name)

    second = desired(namespace, "kube-a", serial=2, **other)
    result = writer.write_one(second)

    assert result.outcome is Outcome.CONFLICT
    assert result.managers == (first.field_manager,)
    after = read(admin_api, namespace, first.name)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.labels["teleport-argocd-agent/owner"] == first.owner


def test_one_failing_secret_does_not_block_the_others(admin_api, agent_api, namespace):
    elsewhere = unique_namespace(admin_api)  # no Role for the agent there
    secrets = [
        desired(namespace, "kube-a"),
        desired(elsewhere, "kube-b"),
        desired(namespace, "kube-c"),
    ]
    results = SecretWriter(agent_api, concurrency=2).write(secrets)
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.ERROR, Outcome.CREATED]
    assert "forbidden" in results[1].detail
    assert "create and patch on secrets" in results[1].detail


def test_stopping_skips_unstarted_writes_and_never_half_writes(admin_api, agent_api, namespace):
    calls = iter([False, False, True, True])
    secrets = [desired(namespace, f"kube-{i}") for i in range(4)]
    results = SecretWriter(agent_api, concurrency=1).write(secrets, should_stop=lambda: next(calls))
    assert [r.outcome for r in results][:2] == [Outcome.CREATED, Outcome.CREATED]
    assert all(r.detail == "skipped: stopping" for r in results[2:])
    names = {
        s.metadata.name for s in k8s.CoreV1Api(admin_api).list_namespaced_secret(namespace).items
    }
    assert secrets[2].name not in names


def test_prune_deletes_only_this_services_stale_secrets(admin_api, pruning_api, namespace):
    writer = SecretWriter(pruning_api)
    mine = [desired(namespace, c) for c in ("keep", "stale-1", "stale-2")]
    other_service = desired(namespace, "stale-1", service_name="other", prefix="other")
    writer.write([*mine, other_service])
    k8s.CoreV1Api(admin_api).create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="unrelated", labels={"argocd.argoproj.io/secret-type": "cluster"}
            ),
            string_data={"server": "https://x"},
        ),
    )
    owner = owner_id(INSTANCE, "argo-cd")

    plan = writer.prune(namespace, owner, {mine[0].cluster_hash}, dry_run=True)
    assert plan.deleted == tuple(sorted([mine[1].name, mine[2].name]))
    assert mine[1].name in _names(admin_api, namespace)  # dry run deleted nothing

    result = writer.prune(namespace, owner, {mine[0].cluster_hash})
    assert result.deleted == tuple(sorted([mine[1].name, mine[2].name]))
    assert _names(admin_api, namespace) == {mine[0].name, other_service.name, "unrelated"}

    with pytest.raises(ApiException) as denied:
        k8s.CoreV1Api(pruning_api).list_namespaced_secret(namespace)
    assert denied.value.status == 403


def test_prune_with_nothing_to_keep_deletes_nothing(admin_api, pruning_api, namespace):
    # A failed listing never reaches the writer (the plan asks for no prune: test_plan.py).
    writer = SecretWriter(pruning_api)
    secret = desired(namespace, "kube-a")
    writer.write_one(secret)
    owner = owner_id(INSTANCE, "argo-cd")

    empty = writer.prune(namespace, owner, set())

    assert empty.deleted == ()
    assert "empty" in empty.skipped_reason
    assert secret.name in _names(admin_api, namespace)


def test_prune_without_permission_reports_an_error_and_deletes_nothing(
    admin_api, agent_api, namespace
):
    writer = SecretWriter(agent_api)
    secret = desired(namespace, "kube-a")
    writer.write_one(secret)
    result = writer.prune(namespace, owner_id(INSTANCE, "argo-cd"), {"x"})
    assert "forbidden" in result.error
    assert secret.name in _names(admin_api, namespace)


def test_write_survives_an_api_server_restart(kube, admin_api, agent_api, namespace):
    # The deadline, not the attempt count, bounds the wait: a loaded machine restarts slowly.
    writer = SecretWriter(agent_api, retry_attempts=10_000, retry_max_wait=0.5, retry_deadline=90)
    secret = desired(namespace, "kube-a")
    kube.stop_apiserver()
    results: list[WriteResult] = []
    # The write runs in a thread; the server is restarted from this (long-lived) thread, because
    # the harness ties each server's life to the thread that started it.
    thread = threading.Thread(target=lambda: results.append(writer.write_one(secret)))
    thread.start()
    time.sleep(1.5)
    assert thread.is_alive()  # still retrying a refused connection, not failed
    kube.restart_apiserver()
    thread.join(timeout=120)
    first = results[0]
    # A request that lands while the restarted server is still warming its RBAC caches can be
    # refused; the next cycle then writes it. Either way nothing is lost or half-written.
    if first.outcome is Outcome.ERROR:
        assert "forbidden" in first.detail
        assert writer.write_one(secret).outcome is Outcome.CREATED
    else:
        assert first.outcome is Outcome.CREATED
    live = read(admin_api, namespace, secret.name)
    assert json.loads(decoded(live, "config"))["tlsClientConfig"]["insecure"] is False


def _names(admin: k8s.ApiClient, namespace: str) -> set[str]:
    return {s.metadata.name for s in k8s.CoreV1Api(admin).list_namespaced_secret(namespace).items}


def test_api_server_stopped_mid_cycle_leaves_every_secret_old_or_new(
    kube, admin_api, agent_api, namespace
):
    writer = SecretWriter(agent_api, retry_attempts=10_000, retry_max_wait=0.5, retry_deadline=90)
    old = [desired(namespace, f"kube-{i:03d}") for i in range(300)]
    assert all(r.outcome is Outcome.CREATED for r in writer.write(old))
    new = [desired(namespace, f"kube-{i:03d}", serial=2) for i in range(300)]
    results: list[WriteResult] = []
    thread = threading.Thread(target=lambda: results.extend(writer.write(new)))
    thread.start()
    time.sleep(0.3)  # some writes done, some in flight, some not started
    kube.stop_apiserver()
    time.sleep(1.0)
    kube.restart_apiserver()
    thread.join(timeout=180)

    assert len(results) == 300
    outcomes = {r.outcome for r in results}
    assert outcomes <= {Outcome.UPDATED, Outcome.ERROR}
    certs = {b"CERT-1", b"CERT-2"}
    live = {
        s.metadata.name: s
        for s in k8s.CoreV1Api(admin_api).list_namespaced_secret(namespace).items
        if s.metadata.name.startswith("teleport.argocd-cluster.")
    }
    assert len(live) == 300  # nothing lost
    for secret in live.values():
        config = json.loads(decoded(secret, "config"))  # every config still parses
        cert = base64.b64decode(config["tlsClientConfig"]["certData"])
        assert cert.split(b"\n")[1] in certs
        # The whole secret is one version: the annotation and the credential agree.
        serial = cert.split(b"\n")[1][-1:]
        expires = secret.metadata.annotations["teleport-argocd-agent/credential-expires"]
        assert expires == ("2026-11-22T13:00:00Z" if serial == b"1" else "2026-11-22T14:00:00Z")


def test_stopping_ends_retries_against_a_server_that_is_down():
    # A loopback port nobody listens on: every attempt is a refused connection, a transient
    # failure the writer would otherwise retry for up to its deadline.
    cfg = k8s.Configuration()
    cfg.host = f"https://127.0.0.1:{free_port()}"
    checks = []

    def should_stop():
        checks.append(True)
        return len(checks) > 1  # not before the first attempt; at the first retry

    writer = SecretWriter(k8s.ApiClient(cfg), retry_attempts=50, retry_deadline=600)
    [result] = writer.write([desired("default", "kube-a")], should_stop=should_stop)
    assert result.outcome is Outcome.ERROR
    assert "cannot reach the Kubernetes API" in result.detail
    assert len(checks) == 2, "one attempt, then the stop ended the retries"


def _silent_listener(*, accept_and_close: bool) -> tuple[socket.socket, list[int]]:
    """A loopback port that never answers: it either takes connections and closes them at once
    (counting them) or never accepts them at all, like a host whose packets are dropped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[int] = []
    if accept_and_close:

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                accepted.append(1)
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
    return listener, accepted


def _client_for(port: int) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = f"https://127.0.0.1:{port}"
    cfg.verify_ssl = False
    return k8s.ApiClient(cfg)


def test_one_attempt_is_one_connection_no_hidden_retries_underneath():
    listener, accepted = _silent_listener(accept_and_close=True)
    with listener:
        writer = SecretWriter(_client_for(listener.getsockname()[1]), retry_attempts=2)
        result = writer.write_one(desired("default", "kube-a"))
        time.sleep(0.2)
    assert result.outcome is Outcome.ERROR
    assert result.unreachable
    # urllib3 would retry each failed connection 3 times on its own under our 2 attempts.
    assert len(accepted) == 2


def test_black_holed_api_server_ends_the_cycle_within_seconds():
    listener, _ = _silent_listener(accept_and_close=False)
    with listener:
        writer = SecretWriter(_client_for(listener.getsockname()[1]), connect_timeout=2)
        secrets = [desired("default", f"kube-{i:03d}") for i in range(200)]
        results: list[WriteResult] = []
        started = time.monotonic()
        thread = threading.Thread(target=lambda: results.extend(writer.write(secrets)), daemon=True)
        thread.start()
        thread.join(timeout=60)
        elapsed = time.monotonic() - started
    assert not thread.is_alive(), "the cycle is still waiting on a black-holed API server"
    assert elapsed < 30
    assert all(r.outcome is Outcome.ERROR and r.unreachable for r in results)
    # The first workers found the server unreachable; the rest were not even tried.
    skipped = [r for r in results if r.detail == SKIPPED_UNREACHABLE]
    assert len(skipped) >= 150


def test_cycle_budget_skips_the_writes_not_started_in_time(admin_api, agent_api, namespace):
    secrets = [desired(namespace, f"kube-{i}") for i in range(5)]
    results = SecretWriter(agent_api, concurrency=1).write(secrets, budget=0.0)
    assert [r.detail for r in results] == [SKIPPED_BUDGET] * 5
    assert not _names(admin_api, namespace) & {s.name for s in secrets}


def test_foreign_secret_sharing_no_field_with_ours_is_still_left_untouched(
    admin_api, agent_api, namespace
):
    # Apply sees no conflict here (the foreign secret has none of our data keys), yet it is
    # somebody else's secret: ownership is decided from who manages the object.
    ours = desired(namespace, "kube-a")
    k8s.CoreV1Api(admin_api).create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=ours.name), string_data={"token": "theirs"}),
        field_manager="someone-else",
    )
    before = k8s.ApiClient().sanitize_for_serialization(read(admin_api, namespace, ours.name))

    result = SecretWriter(agent_api).write_one(ours)

    assert result.outcome is Outcome.CONFLICT
    assert result.managers == ("someone-else",)
    after = k8s.ApiClient().sanitize_for_serialization(read(admin_api, namespace, ours.name))
    assert after == before


def test_our_secret_with_labels_from_another_tool_stays_ours_after_a_restart(
    admin_api, agent_api, namespace
):
    secret = desired(namespace, "kube-a")
    SecretWriter(agent_api).write_one(secret)
    k8s.CoreV1Api(admin_api).patch_namespaced_secret(
        secret.name, namespace, {"metadata": {"labels": {"team": "a"}}}, field_manager="kubectl"
    )
    # A new process knows nothing of what it wrote before.
    result = SecretWriter(agent_api).write_one(desired(namespace, "kube-a", serial=2))
    assert result.outcome is Outcome.UPDATED
    assert read(admin_api, namespace, secret.name).metadata.labels["team"] == "a"


def test_adopted_tbot_secret_keeps_none_of_tbots_own_data(admin_api, agent_api, namespace):
    secret = desired(namespace, "kube-a")  # no project, no namespaces
    body = secret.apply_body()
    body["metadata"]["labels"] = {"argocd.argoproj.io/secret-type": "cluster"}
    body["metadata"]["annotations"] = {"teleport.dev/tbot-version": "18.0.0"}
    body["data"].update(
        {
            k: base64.b64encode(v.encode()).decode()
            for k, v in {"project": "old", "namespaces": "a,b", "clusterResources": "true"}.items()
        }
    )
    k8s.CoreV1Api(admin_api).create_namespaced_secret(namespace, body, field_manager="tbot")

    result = SecretWriter(agent_api).write_one(secret)

    assert result.outcome is Outcome.UPDATED
    assert result.managers == ("tbot",)
    live = read(admin_api, namespace, secret.name)
    assert set(live.data) == set(secret.data)
    assert {k: decoded(live, k) for k in live.data} == dict(secret.data)


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's script."""

    server: _ScriptedServer

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((time.monotonic(), self.path))
        status, body = self.server.script.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


class _ScriptedServer(http.server.ThreadingHTTPServer):
    def __init__(self, script: list[tuple[int, dict[str, object]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.script = script
        self.requests: list[tuple[float, str]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def client(self) -> k8s.ApiClient:
        cfg = k8s.Configuration()
        cfg.host = f"http://127.0.0.1:{self.server_address[1]}"
        return k8s.ApiClient(cfg)


CREATED = (201, {"metadata": {"resourceVersion": "1"}})


def test_throttling_and_server_errors_are_retried_with_backoff():
    server = _ScriptedServer([(429, {"reason": "TooManyRequests"}), (503, {}), CREATED, CREATED])
    try:
        result = SecretWriter(server.client()).write_one(desired("default", "kube-a"))
    finally:
        server.shutdown()
    assert result.outcome is Outcome.CREATED
    times = [t for t, _ in server.requests]
    assert len(times) == 4  # 429, 503, then the dry run and the write that succeed
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(times[:3]))


def test_conflict_whose_managers_cannot_be_read_is_foreign_and_never_forced():
    unreadable = (409, {"reason": "Conflict", "message": "Apply failed with 1 conflict"})
    server = _ScriptedServer([unreadable])  # the dry run already conflicts
    server.script += [unreadable]  # and so does the apply
    try:
        result = SecretWriter(server.client()).write_one(desired("default", "kube-a"))
    finally:
        server.shutdown()
    assert result.outcome is Outcome.CONFLICT
    assert not any("force=true" in path for _, path in server.requests)


@pytest.mark.parametrize(
    "concurrency",
    [1, 16],
    ids=["one at a time: drops and answers strictly alternate", "the agent's 16 workers"],
)
def test_intermittent_drops_never_open_the_breaker_on_a_healthy_server(
    kube, admin_api, namespace, tmp_path, concurrency
):
    """Every other request is dropped (a connection reset before any answer): many more failed
    attempts in the cycle than the breaker's threshold, but never a run of them without answers
    in between, so every secret is written and none is skipped as unreachable."""
    grant(admin_api, namespace, ["create", "patch"], namespace)
    token = service_account_token(admin_api, namespace, "agent")
    secrets = [desired(namespace, f"kube-{i:03d}") for i in range(40)]
    with dropping_proxy(kube.url, kube.ca_path, tmp_path, drop_every=2) as proxy:
        cfg = k8s.Configuration()
        cfg.host, cfg.ssl_ca_cert = proxy.url, str(proxy.ca_path)
        cfg.api_key = {"authorization": f"Bearer {token}"}
        api = k8s.ApiClient(cfg)
        try:
            # With 16 workers a secret's own attempts need not alternate (the proxy counts
            # requests across all of them): enough attempts that no secret runs out of them.
            writer = SecretWriter(
                api, concurrency=concurrency, retry_attempts=20, retry_max_wait=0.05
            )
            results = writer.write(secrets)
        finally:
            api.close()
    assert [r.detail for r in results if not r.ok] == []
    assert [r.outcome for r in results] == [Outcome.CREATED] * len(secrets)
    assert proxy.dropped > 8, "the cycle saw more drops than the breaker's threshold"
    assert _names(admin_api, namespace) >= {s.name for s in secrets}
