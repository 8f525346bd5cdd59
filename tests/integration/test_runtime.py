"""The daemon's loop against the real API server, with time driven by the test.

Teleport's part is played by tests/harness/source.py (see there why); every write goes to the
real API server as a ServiceAccount holding only the verbs the chart grants.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import threading
import time

import pytest
from kubernetes import client as k8s

from agent.config import parse_config
from agent.logs import configure_logging
from agent.ports import Parts
from agent.runtime import Runtime
from agent.teleport.model import KubeCluster, ProxySettings
from tests.harness.kube import cluster_secret_data
from tests.harness.source import InventorySource

START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


class Clock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self) -> None:
        self.now = START
        self.mono = 1000.0

    def advance(self, **kwargs: float) -> None:
        delta = dt.timedelta(**kwargs)
        self.now += delta
        self.mono += delta.total_seconds()


def make_config(namespace, *, rotation_window="0s", services=None, **service):
    """The agent's config writing into ``namespace``: one pruning service selecting env=prod
    (``service`` overrides its fields), or ``services``, each completed with the type and the
    namespace."""
    if services is None:
        services = [{"selectors": [{"labels": {"env": "prod"}}], "prune": True, **service}]
    # All at once unless a test is about the rotation window: the assertions stay simple.
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "instance": f"{namespace}/agent",
            "rotation_window": rotation_window,
            "services": [
                {"type": "kubernetes/argo-cd", "secret_namespace": namespace, **s} for s in services
            ],
        }
    )


def runtime(config, source, writer, clock):
    return Runtime(
        Parts(config, source, writer, "0.1.0"),
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
    )


def secrets(admin_api, namespace):
    """cluster name -> the credential serial its secret holds (CERT-<n>)."""
    found = {}
    for _, data in cluster_secret_data(admin_api, namespace):
        cert = base64.b64decode(data["config"]["tlsClientConfig"]["certData"]).decode()
        found[data["name"].removeprefix("root-")] = int(cert.split("CERT-")[1].split()[0])
    return found


def writes(rt, result):
    return (
        rt.metrics.registry.get_sample_value(
            "teleport_argocd_agent_secret_writes_total", {"service": "argo-cd", "result": result}
        )
        or 0
    )


def prod(*names):
    return [KubeCluster(n, {"env": "prod"}) for n in names]


def test_discovery_writes_new_clusters_with_the_current_credential(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1}
    assert rt.readiness().ready

    source.clusters += prod("c")
    clock.advance(seconds=10)
    rt.step()  # discovery is not due yet
    assert "c" not in secrets(admin_api, namespace)

    clock.advance(seconds=21)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1, "c": 1}
    assert len(source.issued) == 1, "a discovery must not renew"
    assert (writes(rt, "created"), writes(rt, "updated")) == (3, 0), "only the new one written"

    clock.advance(minutes=20)  # the renewal (jitter only ever makes it earlier)
    rt.step()
    assert len(source.issued) == 2
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2, "c": 2}


def test_teleport_down_deletes_nothing_and_readiness_recovers(admin_api, namespace, writer, clock):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()

    source.clusters = prod("a")  # b leaves Teleport while Teleport is unreachable
    source.failing = {"list_clusters", "issue_credential"}
    clock.advance(minutes=21)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1}, "nothing pruned, nothing rewritten"
    state = rt.readiness()
    assert not state.ready
    # Each reason says what failed and why, in the client's words.
    assert (
        "the last cluster listing from Teleport failed: Teleport request failed: "
        "list clusters: connection refused" in state.reasons
    )
    assert (
        "renewing the credential failed 1 time(s) in a row: Teleport request failed: "
        "issue output identity: connection refused" in state.reasons
    )
    errors = rt.metrics.registry.get_sample_value(
        "teleport_argocd_agent_teleport_request_errors_total", {"operation": "list clusters"}
    )
    assert errors == 1

    source.failing = set()
    clock.advance(minutes=1)  # past the capped retry backoff
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 2}, "renewed, and the stale one pruned"
    assert rt.readiness().ready


def test_an_expired_credential_is_never_written(admin_api, namespace, writer, clock):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    source.failing = {"issue_credential"}
    clock.advance(minutes=45)
    rt.step()
    state = rt.readiness()
    assert not state.ready
    assert any("credential expires in" in r for r in state.reasons), state.reasons

    source.clusters += prod("late")
    clock.advance(minutes=20)  # the credential has expired and renewal still fails
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 1}, "no secret with a dead credential"

    source.failing = set()
    clock.advance(minutes=1)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 2, "late": 2}


def test_a_lifetime_capped_by_teleport_is_renewed_at_half_its_life(
    admin_api, namespace, writer, clock
):
    source = InventorySource(
        clock=lambda: clock.now, clusters=prod("a"), lifetime_cap=dt.timedelta(minutes=10)
    )
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    clock.advance(minutes=4)
    rt.step()
    assert len(source.issued) == 1
    clock.advance(minutes=1, seconds=1)
    rt.step()
    assert len(source.issued) == 2
    assert rt.readiness().ready


def test_services_with_their_own_lifetime_get_their_own_credential(
    admin_api, namespace, writer, clock
):
    config = make_config(
        namespace,
        services=[
            {"name": "short", "selectors": [{"name": "a"}]},
            {
                "name": "long",
                "secret_name_prefix": "long",
                "selectors": [{"name": "b"}],
                "credential_ttl": "4h",
                "renewal_interval": "1h",
            },
        ],
    )
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(config, source, writer, clock)
    assert rt.run_once()
    assert sorted(source.issued) == [dt.timedelta(hours=1), dt.timedelta(hours=4)]
    clock.advance(minutes=21)
    rt.step()
    assert sorted(source.issued)[-1] == dt.timedelta(hours=4)
    assert source.issued.count(dt.timedelta(hours=1)) == 2, "only the short one renewed"


def test_missing_named_cluster_fails_run_once_but_only_warns_in_readiness(
    admin_api, namespace, writer, clock
):
    config = make_config(namespace, selectors=[{"name": "a"}, {"name": "gone"}], prune=False)
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(config, source, writer, clock)
    assert not rt.run_once()
    assert secrets(admin_api, namespace) == {"a": 1}, "the others are still written"
    state = rt.readiness()
    assert state.ready
    assert any("gone" in w for w in state.warnings)
    unmatched = rt.metrics.registry.get_sample_value(
        "teleport_argocd_agent_selectors_unmatched", {"service": "argo-cd"}
    )
    assert unmatched == 1

    source.clusters += prod("gone")
    assert rt.run_once()
    assert rt.readiness().warnings == ()
    assert (
        rt.metrics.registry.get_sample_value(
            "teleport_argocd_agent_selectors_unmatched", {"service": "argo-cd"}
        )
        == 0
    )


def test_a_changed_proxy_reaches_the_secrets_at_the_next_renewal(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    source.proxy = ProxySettings("root", "teleport.new.example.com:443", tls_routing=True)
    source.clusters += prod("b")
    clock.advance(seconds=31)
    rt.step()  # a discovery keeps the settings the credential was issued with
    assert set(servers(admin_api, namespace)) == {"teleport.example.com:443"}

    clock.advance(minutes=20)
    rt.step()
    assert set(servers(admin_api, namespace)) == {"teleport.new.example.com:443"}


def servers(admin_api, namespace):
    """The proxy address of every cluster secret's server URL."""
    return [
        base64.b64decode(item.data["server"]).decode().split("/")[2]
        for item in k8s.CoreV1Api(admin_api).list_namespaced_secret(namespace).items
        if "server" in (item.data or {})
    ]


# -- rolling rotation ---------------------------------------------------------------------


def pending(rt):
    return rt.metrics.registry.get_sample_value("teleport_argocd_agent_rotation_pending_secrets")


def expiry_left(rt):
    return rt.metrics.registry.get_sample_value("teleport_argocd_agent_credential_expiry_seconds")


def test_renewal_spreads_rewrites_over_the_rotation_window(admin_api, namespace, writer, clock):
    names = [f"c{i}" for i in range(6)]
    source = InventorySource(clock=lambda: clock.now, clusters=prod(*names))
    rt = runtime(make_config(namespace, rotation_window="60s"), source, writer, clock)
    rt.step()
    assert secrets(admin_api, namespace) == dict.fromkeys(names, 1), "first cycle: all at once"
    assert pending(rt) == 0

    clock.advance(minutes=20)
    rt.step()
    assert len(source.issued) == 2
    # One secret per 10 s slot: the first slot is now, the other five wait.
    assert sorted(secrets(admin_api, namespace).values()) == [1, 1, 1, 1, 1, 2]
    assert pending(rt) == 5
    # Readiness and the expiry metric follow the oldest credential still in a secret.
    assert expiry_left(rt) == pytest.approx(40 * 60)

    order = []
    for _ in range(12):
        clock.advance(seconds=5)
        rt.step()  # a discovery comes due in between; it must not jump the queue
        now_held = secrets(admin_api, namespace)
        order += [n for n, serial in sorted(now_held.items()) if serial == 2 and n not in order]
        assert len(order) <= 1 + int((clock.mono - 1000.0 - 20 * 60) // 10)
    assert secrets(admin_api, namespace) == dict.fromkeys(names, 2)
    assert pending(rt) == 0
    assert expiry_left(rt) == pytest.approx(60 * 60 - 60)
    assert (writes(rt, "created"), writes(rt, "updated")) == (6, 6), "each secret once per renewal"

    # The same order at the next renewal: a cluster's rebuild lands at the same offset.
    clock.advance(minutes=20)
    rt.step()
    again = []
    for _ in range(12):
        clock.advance(seconds=5)
        rt.step()
        again += [
            n
            for n, serial in sorted(secrets(admin_api, namespace).items())
            if serial == 3 and n not in again
        ]
    assert again == order


def test_new_clusters_and_sigusr1_do_not_wait_for_the_window(admin_api, namespace, writer, clock):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b", "c", "d"))
    rt = runtime(make_config(namespace, rotation_window="10m"), source, writer, clock)
    rt.step()
    clock.advance(minutes=20)
    rt.step()
    assert sorted(secrets(admin_api, namespace).values()) == [1, 1, 1, 2]

    source.clusters += prod("new")
    clock.advance(seconds=31)
    rt.step()
    assert secrets(admin_api, namespace)["new"] == 2, "a new cluster is written at discovery"
    assert sorted(secrets(admin_api, namespace).values()) == [1, 1, 1, 2, 2]

    rt.step(forced=True)  # what SIGUSR1 does: renew and write everything now
    assert secrets(admin_api, namespace) == dict.fromkeys(["a", "b", "c", "d", "new"], 3)
    assert pending(rt) == 0


def test_stopping_in_the_window_leaves_the_rest_with_their_valid_credential(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b", "c", "d"))
    rt = runtime(make_config(namespace, rotation_window="2m"), source, writer, clock)
    rt.step()
    clock.advance(minutes=20)
    rt.step()
    rt.request_stop()
    clock.advance(minutes=5)
    rt.step()
    held = secrets(admin_api, namespace)
    assert sorted(held.values()) == [1, 1, 1, 2], "nothing written after the stop"
    # The old credential (1h from START) still has 35 minutes: those secrets keep working.
    assert rt.readiness().ready


class _Exploding(InventorySource):
    """Teleport's part, except that listing raises something nobody expected, twice."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def list_clusters(self):
        self.calls += 1
        if self.calls <= 2:
            raise RuntimeError(f"bug while parsing {PEM_IN_ERROR}")
        return super().list_clusters()


PEM_IN_ERROR = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----"


def test_unexpected_exception_in_a_step_is_logged_redacted_and_the_loop_goes_on(
    admin_api, namespace, writer
):
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    try:
        source = _Exploding(clusters=prod("a"))
        rt = Runtime(Parts(make_config(namespace), source, writer, "0.1.0"))
        thread = threading.Thread(target=rt.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while source.calls < 3 and time.monotonic() < deadline:
            rt.request_sync()
            time.sleep(0.2)
        rt.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        configure_logging("INFO", "text", io.StringIO())
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    failures = [e for e in events if e["message"].startswith("loop step failed")]
    assert len(failures) == 2
    assert failures[0]["error_type"] == "RuntimeError"
    assert "list_clusters" in failures[0]["stack"]  # the stack, through the JSON sink
    assert "PRIVATE KEY" not in out.getvalue()
    assert source.calls >= 3, "the loop carried on after the exceptions"
    assert secrets(admin_api, namespace) == {"a": 1}


def test_liveness_fails_when_a_step_hangs(namespace, writer):
    class Hanging(InventorySource):
        release = threading.Event()

        def list_clusters(self):
            self.release.wait(30)
            return super().list_clusters()

    source = Hanging(clusters=prod("a"))
    rt = Runtime(
        Parts(make_config(namespace), source, writer, "0.1.0"),
        cycle_budget=dt.timedelta(seconds=0.5),
        liveness_grace=dt.timedelta(seconds=0.5),
    )
    thread = threading.Thread(target=rt.run, daemon=True)
    thread.start()
    try:
        assert rt.liveness()
        time.sleep(1.5)
        assert not rt.liveness(), "a loop stuck in one step must fail /livez"
    finally:
        Hanging.release.set()
        rt.request_stop()
        thread.join(timeout=30)
    assert rt.liveness(), "live again once the loop came round"


def team_labelled(namespace, writer, clock):
    """Clusters a (team red) and b, a service labelling each secret with its cluster's team,
    and the runtime after its first step."""
    labels = {"team": '{{ index .Labels "team" }}'}
    source = InventorySource(
        clock=lambda: clock.now,
        clusters=[KubeCluster("a", {"env": "prod", "team": "red"}), *prod("b")],
    )
    rt = runtime(make_config(namespace, secret_labels=labels), source, writer, clock)
    rt.step()
    return source, rt


def test_cluster_whose_template_stops_rendering_keeps_its_working_secret(
    admin_api, namespace, writer, clock
):
    source, rt = team_labelled(namespace, writer, clock)
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1}

    # A label value that is no valid Kubernetes label value: a's secret cannot be rendered.
    source.clusters = [KubeCluster("a", {"env": "prod", "team": "red team!"}), *prod("b")]
    clock.advance(seconds=31)
    rt.step()  # a discovery, which prunes when a cluster drops out of the plan
    clock.advance(minutes=21)
    rt.step()  # a renewal: a full write and prune
    assert secrets(admin_api, namespace) == {"a": 1, "b": 2}, "a kept, not pruned"
    assert any("failed to write" in r for r in rt.readiness().reasons)


def test_a_relabelled_cluster_reaches_its_secret_at_the_next_discovery(
    admin_api, namespace, writer, clock
):
    source, rt = team_labelled(namespace, writer, clock)
    clock.advance(seconds=31)
    rt.step()  # a discovery with nothing changed writes nothing
    assert (writes(rt, "created"), writes(rt, "updated")) == (2, 0)

    # Argo CD's ApplicationSets select on these labels: waiting for the renewal would leave a
    # relabelled cluster in the wrong set for up to renewal_interval.
    source.clusters = [KubeCluster("a", {"env": "prod", "team": "blue"}), *prod("b")]
    clock.advance(seconds=31)
    rt.step()
    assert len(source.issued) == 1, "a discovery must not renew"
    assert (writes(rt, "created"), writes(rt, "updated")) == (2, 1), "only a rewritten"
    teams = {
        base64.b64decode(i.data["name"]).decode(): (i.metadata.labels or {}).get("team")
        for i in k8s.CoreV1Api(admin_api).list_namespaced_secret(namespace).items
    }
    assert teams == {"root-a": "blue", "root-b": None}
