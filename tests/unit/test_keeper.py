"""The daemon's steps with Teleport and Kubernetes as data: when it joins, renews and writes."""

from __future__ import annotations

import datetime as dt
import random

import agent.keeper as keeper_module
from agent.argocd import shape_of
from agent.config import parse_config
from agent.diagnostics import Metrics
from agent.keeper import START_SAMPLE, Keeper
from agent.plan import plan_cycle
from agent.ports import Parts
from agent.rotation import Clock
from agent.teleport.errors import JoinRejected, Operation
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.teleport.storage import StorageError
from agent.writes import Held, Outcome, PruneResult, WriteResult
from tests.harness.clock import FakeClock

PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)


class JoiningSource:
    """Teleport whose join can be broken: listing and issuing both need the bot identity."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.join_broken = False
        self.joined = False
        self.join_attempts = 0
        self.issued = 0

    def _bot(self) -> None:
        if self.joined:
            return
        self.join_attempts += 1
        if self.join_broken:
            raise JoinRejected(
                Operation.JOIN, "the token argocd-bot does not allow this service account"
            )
        self.joined = True

    def proxy_settings(self) -> ProxySettings:
        return PROXY

    def list_clusters(self) -> list[KubeCluster]:
        self._bot()
        return [KubeCluster("a", {"env": "prod"}), KubeCluster("b", {"env": "prod"})]

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        self._bot()
        self.issued += 1
        cert = f"CERT-{self.issued}".encode()
        return Credential(cert, b"KEY", (b"CA",), "argocd", self.clock.now + ttl)


class MemorySink:
    """Records every secret written; every write succeeds."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, secrets, *, should_stop=lambda: False, budget=None):
        self.written += [s.cluster for s in secrets]
        return [WriteResult(s.namespace, s.name, s.cluster, Outcome.UPDATED) for s in secrets]

    def prune(self, namespace, owner, keep_hashes):
        return PruneResult(namespace, ())

    def read_held(self, secrets):
        return {}


def keeper(clock, source, sink):
    config = parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "argocd-bot", "join_method": "kubernetes"},
            "instance": "argocd/rel",
            "renewal_interval": "20m",
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "secret_namespace": "argocd",
                    "selectors": [{"labels": {"env": "prod"}}],
                    "discovery_interval": "10s",
                }
            ],
        }
    )
    return Keeper(
        Parts(config, source, sink, "1"),
        metrics=Metrics(lambda: clock.now),
        clock=Clock(lambda: clock.now, lambda: clock.mono),
        rng=random.Random(1),
        should_stop=lambda: False,
    )


def test_a_failed_step_tries_to_join_once_not_for_the_listing_and_again_for_the_renewal():
    clock = FakeClock()
    source = JoiningSource(clock)
    source.join_broken = True
    k = keeper(clock, source, MemorySink())

    k.step(forced=False, budget=60)

    assert source.join_attempts == 1
    reasons = k.state.readiness(clock.now).reasons
    assert any(r.startswith("renewing the credential failed 1 time(s)") for r in reasons)
    assert any("does not allow this service account" in r for r in reasons)


def test_a_fixed_join_renews_at_the_next_discovery_not_after_the_renewal_backoff():
    clock = FakeClock()
    source = JoiningSource(clock)
    source.join_broken = True
    sink = MemorySink()
    k = keeper(clock, source, sink)
    # Failures in a row push the renewal's backoff past the 10 s discovery interval.
    group = k.groups[0]
    k.step(forced=False, budget=60)
    while group.due_mono - clock.mono <= 10:
        clock.advance(k.next_wakeup())
        k.step(forced=False, budget=60)
    assert group.failures >= 5

    source.join_broken = False
    clock.advance(10)
    k.step(forced=False, budget=60)

    assert group.credential is not None
    assert sorted(sink.written) == ["a", "b"]
    assert k.state.readiness(clock.now).ready


class ForbiddenStoreSource(JoiningSource):
    """The bot identity's Secret cannot be read: the agent's Role lacks get on it."""

    def _bot(self) -> None:
        self.join_attempts += 1
        raise StorageError(
            Operation.LOAD_IDENTITY, "secret argocd/bot: secrets is forbidden", status=403
        )


def test_a_failing_identity_secret_is_a_kubernetes_failure_not_teleports():
    clock = FakeClock()
    source = ForbiddenStoreSource(clock)
    k = keeper(clock, source, MemorySink())

    k.step(forced=False, budget=60)

    registry = k._metrics.registry  # the Metrics the runtime exports
    kube = registry.get_sample_value(
        "teleport_argocd_agent_kubernetes_request_errors_total", {"operation": "load identity"}
    )
    teleport = registry.get_sample_value(
        "teleport_argocd_agent_teleport_request_errors_total", {"operation": "load identity"}
    )
    assert (kube, teleport) == (1.0, None)
    assert source.join_attempts == 1, "the renewal does not read the Secret a second time"
    reasons = k.state.readiness(clock.now).reasons
    assert any(
        "Kubernetes API request failed: load identity: secret argocd/bot" in r for r in reasons
    )


class FleetSource(JoiningSource):
    """Teleport listing ``count`` clusters."""

    def __init__(self, clock: FakeClock, count: int) -> None:
        super().__init__(clock)
        self.count = count

    def list_clusters(self) -> list[KubeCluster]:
        self._bot()
        return [KubeCluster(f"c{i:03d}", {"env": "prod"}) for i in range(self.count)]


class ReadingSink(MemorySink):
    """Secrets of the clusters in ``existing`` are already there (holding no readable expiry);
    records which secrets the start-up read asked about."""

    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = existing
        self.asked: list[str] = []

    def read_held(self, secrets):
        self.asked += [s.cluster for s in secrets]
        return {
            (s.namespace, s.name): Held(None, None) for s in secrets if s.cluster in self.existing
        }


def _first_step(existing: set[str], count: int = 100) -> ReadingSink:
    clock = FakeClock()
    sink = ReadingSink(existing)
    k = keeper(clock, FleetSource(clock, count), sink)
    k.step(forced=False, budget=60)
    assert sorted(sink.written) == [f"c{i:03d}" for i in range(count)]
    return sink


def test_a_first_installation_reads_only_a_sample_before_writing():
    sink = _first_step(set())
    assert len(sink.asked) == START_SAMPLE


def test_a_restart_reads_every_secret_once():
    sink = _first_step({f"c{i:03d}" for i in range(100)})
    assert sorted(sink.asked) == [f"c{i:03d}" for i in range(100)]


def test_a_fleet_partly_in_place_is_read_whole():
    # Half the secrets exist: the sample finds some of them, so the rest is read too.
    sink = _first_step({f"c{i:03d}" for i in range(0, 100, 2)})
    assert sorted(sink.asked) == [f"c{i:03d}" for i in range(100)]


class HoldingSink(MemorySink):
    """Every secret is already there holding a credential valid for two more hours (a
    restart): the first renewal spreads them all over the rotation window."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def read_held(self, secrets):
        expires = self.clock.now + dt.timedelta(hours=2)
        return {(s.namespace, s.name): Held(expires, shape_of(s)) for s in secrets}


def test_a_rotation_tick_renders_and_writes_only_the_secrets_whose_slot_came_up(monkeypatch):
    rendered: list[int] = []

    def counting_plan(*args, **kwargs):
        rendered.append(len(kwargs["clusters"]))
        return plan_cycle(*args, **kwargs)

    monkeypatch.setattr(keeper_module, "plan_cycle", counting_plan)
    clock = FakeClock()
    sink = HoldingSink(clock)
    k = keeper(clock, FleetSource(clock, 100), sink)
    k.step(forced=False, budget=60)
    assert k.state.pending >= 98  # slot 0 may be due at once
    ticks = 0
    while k.state.pending:
        clock.advance(k.next_wakeup())
        renders, writes = len(rendered), len(sink.written)
        k.step(forced=False, budget=60)
        if rendered[renders:] != [100]:  # not a discovery: a tick
            ticks += 1
            assert rendered[renders:] == [len(sink.written) - writes]
    assert ticks > 10
    assert sorted(sink.written) == [f"c{i:03d}" for i in range(100)]  # each once
