"""The daemon loop's fault rules that README.md promises, each with a test that fails when the
rule breaks. Time is driven by the test; writes go to the real API server (see test_runtime)."""

from __future__ import annotations

import datetime as dt

from kubernetes import client as k8s

from agent.teleport.model import KubeCluster
from tests.harness.source import InventorySource
from tests.integration.test_runtime import Clock, make_config, prod, runtime, secrets
from tests.integration.test_writer import desired


class CountingSource(InventorySource):
    """Counts every credential request, failed ones included."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attempts = 0

    def issue_credential(self, ttl):
        self.attempts += 1
        return super().issue_credential(ttl)


def expiry_seconds(rt) -> float:
    return rt.metrics.registry.get_sample_value("teleport_argocd_agent_credential_expiry_seconds")


def test_failed_listing_with_working_renewal_refreshes_known_clusters_and_prunes_nothing(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    source.clusters = prod("a")  # b leaves, but the listing fails from now on
    source.failing = {"list_clusters"}
    clock.advance(minutes=21)
    rt.step()
    assert len(source.issued) == 2
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2}, "renewed from the last listing"


def test_suspended_machine_renews_as_soon_as_the_wall_clock_says_so(
    admin_api, namespace, writer, clock: Clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    clock.now += dt.timedelta(minutes=25)  # suspended: the monotonic clock did not move
    clock.mono += 1
    assert rt._sleep_seconds() <= 5
    rt.step()
    assert len(source.issued) == 2


def test_clock_set_back_still_renews_on_the_monotonic_schedule(
    admin_api, namespace, writer, clock: Clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    clock.now -= dt.timedelta(hours=1)
    clock.mono += 21 * 60
    rt.step()
    assert len(source.issued) == 2


def test_failed_renewal_is_retried_with_backoff_by_the_loop(admin_api, namespace, writer, clock):
    source = CountingSource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    source.failing = {"issue_credential"}
    clock.advance(minutes=21)
    rt.step()
    assert source.attempts == 2
    clock.advance(seconds=0.4)  # the first retry waits at least half of one second
    rt.step(forced=False)
    assert source.attempts == 2, "retried before its backoff"
    clock.advance(seconds=0.7)
    rt.step()
    assert source.attempts == 3
    # The next wait doubles (0.5-1 s, then 1-2 s): not yet after another 0.9 s.
    clock.advance(seconds=0.9)
    rt.step()
    assert source.attempts == 3
    clock.advance(seconds=1.2)
    rt.step()
    assert source.attempts == 4


def test_discovery_runs_at_the_shortest_service_interval(admin_api, namespace, writer, clock):
    config = make_config(
        namespace,
        services=[
            {
                "name": "slow",
                "selectors": [{"labels": {"env": "prod"}}],
                "discovery_interval": "5m",
            },
            {
                "name": "fast",
                "secret_name_prefix": "fast",
                "selectors": [{"labels": {"env": "dev"}}],
                "discovery_interval": "10s",
            },
        ],
    )
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a"))
    rt = runtime(config, source, writer, clock)
    rt.step()
    source.clusters += [KubeCluster("d", {"env": "dev"}), *prod("p")]
    clock.advance(seconds=11)
    rt.step()
    # Both services' new clusters: discovery is one listing for every service.
    assert secrets(admin_api, namespace) == {"a": 1, "d": 1, "p": 1}


def test_expiry_is_not_advanced_when_every_renewal_write_failed(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    assert expiry_seconds(rt) == 3600
    # The agent loses its write access: the renewal succeeds, every write is refused.
    k8s.RbacAuthorizationV1Api(admin_api).delete_namespaced_role_binding("agent", namespace)
    clock.advance(minutes=21)
    rt.step()
    assert len(source.issued) == 2
    assert expiry_seconds(rt) == 3600 - 21 * 60, "the secrets still hold the first credential"
    state = rt.readiness()
    assert any("failed to write" in r for r in state.reasons), state.reasons


def test_prune_runs_for_gone_clusters_when_another_write_failed(
    admin_api, namespace, writer, clock
):
    taken = desired(namespace, "c", instance=f"{namespace}/agent")
    k8s.CoreV1Api(admin_api).create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=taken.name), string_data={"x": "theirs"}),
        field_manager="someone-else",
    )
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b", "c"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 1, "b": 1}  # c's name is someone else's
    source.clusters = prod("a", "c")
    clock.advance(minutes=21)
    rt.step()
    assert secrets(admin_api, namespace) == {"a": 2}, "b pruned although c's write failed"


def test_nothing_is_pruned_from_a_listing_kept_through_a_failed_listing(
    admin_api, namespace, writer, clock
):
    source = InventorySource(clock=lambda: clock.now, clusters=prod("a", "b"))
    rt = runtime(make_config(namespace), source, writer, clock)
    rt.step()
    # A secret of the same service for a cluster the listing above did not hold, as another
    # process of this installation wrote it (one that does not prune).
    other = InventorySource(clock=lambda: clock.now, clusters=prod("c"))
    runtime(make_config(namespace, prune=False), other, writer, clock).step()
    assert set(secrets(admin_api, namespace)) == {"a", "b", "c"}

    source.failing = {"list_clusters"}
    clock.advance(minutes=21)  # a renewal: every secret is rewritten from the kept listing
    rt.step()
    assert len(source.issued) == 2
    assert secrets(admin_api, namespace) == {"a": 2, "b": 2, "c": 1}, "c pruned from a kept list"

    source.failing = set()
    clock.advance(minutes=21)  # the listing works again: now c goes
    rt.step()
    assert set(secrets(admin_api, namespace)) == {"a", "b"}
