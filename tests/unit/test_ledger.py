"""The rotation ledger: what each secret holds and what a renewal or a discovery writes now.

Time is a fake clock moved by the test; every row is one situation the daemon meets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from agent.argocd import shape_of
from agent.config import parse_config
from agent.plan import plan_cycle
from agent.rotation import Ledger, content_of, key_of
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.writes import Held
from tests.harness.clock import START, FakeClock

TTL = dt.timedelta(hours=1)
WINDOW = dt.timedelta(minutes=5)
PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)


def config(**service):
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "instance": "argocd/rel",
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "name": "argo-cd",
                    "secret_namespace": "argocd",
                    "selectors": [{"labels": {"env": "prod"}}],
                    "prune": True,
                    **service,
                }
            ],
        }
    )


class World:
    """A ledger, its clock, and the credentials and clusters of the steps so far."""

    def __init__(self) -> None:
        self.time = FakeClock()
        self.ledger = Ledger(WINDOW, self.time.clock())
        self.serial = 0
        self.credential = self.issue()
        self.clusters = ["a", "b", "c", "d"]
        self.cfg = config()

    def issue(self, life: dt.timedelta = TTL) -> Credential:
        self.serial += 1
        cert = f"CERT-{self.serial}".encode()
        return Credential(cert, b"KEY", (b"CA",), "argocd", self.time.now + life)

    def plan(self):
        return plan_cycle(
            self.cfg,
            proxy=PROXY,
            clusters=[KubeCluster(n, {"env": "prod"}) for n in self.clusters],
            credential=self.credential,
            agent_version="1",
            now=self.time.now,
        )

    def renew(self, life: dt.timedelta = TTL) -> None:
        self.credential = self.issue(life)
        self.ledger.renewed()

    def write(self, work, fail=()):
        """Settle ``work`` as written (but for the clusters in ``fail``) and record the plan."""
        results = [(key_of(s), s.cluster not in fail) for s in work.secrets]
        self.ledger.settle(work, results, expires=self.credential.expires)
        return self.ledger.record(self.plan())

    def started(self):
        """A process that wrote every secret with its first credential."""
        self.write(self.ledger.renewal_work(self.plan()))
        return self


def clusters(work):
    return None if work is None else sorted(s.cluster for s in work.secrets)


def pruning(work):
    return work is not None and any(s.prune is not None for s in work.services)


# -- renewals ------------------------------------------------------------------------------


def test_first_renewal_of_a_process_writes_every_secret_at_once():
    # A fresh process does not know what the secrets hold: nothing waits for a slot.
    world = World()
    work = world.ledger.renewal_work(world.plan())
    assert clusters(work) == ["a", "b", "c", "d"]
    assert pruning(work)
    assert world.ledger.next_slot() is None


def test_renewal_spreads_secrets_holding_a_valid_credential_over_the_window():
    world = World().started()
    world.time.advance(20 * 60)
    world.renew()
    work = world.ledger.renewal_work(world.plan())
    # One secret gets slot 0 (written now); the other three wait for theirs.
    assert len(clusters(work)) == 1
    assert world.ledger.snapshot().pending == 0  # published at record time only
    view = world.write(work)
    assert view.pending == 3
    slot = world.ledger.next_slot()
    assert slot is not None
    assert world.time.mono < slot <= world.time.mono + WINDOW.total_seconds()


def test_forced_renewal_writes_every_secret_at_once():
    world = World().started()
    world.renew()
    work = world.ledger.renewal_work(world.plan(), spread=False)
    assert clusters(work) == ["a", "b", "c", "d"]
    assert world.ledger.next_slot() is None


def test_a_zero_window_writes_every_secret_at_once():
    world = World()
    world.ledger = Ledger(dt.timedelta(0), world.time.clock())
    world.started()
    world.renew()
    assert clusters(world.ledger.renewal_work(world.plan())) == ["a", "b", "c", "d"]


def test_renewal_writes_at_once_a_secret_whose_credential_expired():
    world = World().started()
    world.time.advance(TTL.total_seconds() + 1)
    world.renew()
    assert clusters(world.ledger.renewal_work(world.plan())) == ["a", "b", "c", "d"]


def test_renewal_writes_at_once_a_secret_whose_last_write_failed():
    world = World()
    world.write(world.ledger.renewal_work(world.plan()), fail={"b"})
    world.time.advance(60)
    world.renew()
    work = world.ledger.renewal_work(world.plan())
    assert "b" in clusters(work)


# -- discoveries ---------------------------------------------------------------------------

DISCOVERY_ROWS = [
    # (id, change between the first cycle and the discovery, clusters written, prune asked)
    ("nothing changed", lambda w: None, None, False),
    ("a new cluster", lambda w: w.clusters.append("e"), ["e"], False),
    ("a cluster left", lambda w: w.clusters.remove("d"), [], True),
    (
        "content changed",
        lambda w: setattr(w, "cfg", config(project="team-x")),
        ["a", "b", "c", "d"],
        False,
    ),
    ("only the write time moved", lambda w: w.time.advance(30), None, False),
]


@pytest.mark.parametrize(
    ("change", "written", "prune"),
    [row[1:] for row in DISCOVERY_ROWS],
    ids=[row[0] for row in DISCOVERY_ROWS],
)
def test_discovery_writes_only_what_changed(change, written, prune):
    world = World().started()
    change(world)
    work = world.ledger.discovery_work(world.plan())
    assert clusters(work) == written
    assert pruning(work) == prune


def test_discovery_retries_a_failed_write():
    world = World()
    world.write(world.ledger.renewal_work(world.plan()), fail={"c"})
    assert world.ledger.snapshot().failed_writes == {"argo-cd": 1}
    work = world.ledger.discovery_work(world.plan())
    assert clusters(work) == ["c"]
    assert world.write(work).failed_writes == {"argo-cd": 0}


def test_discovery_leaves_waiting_secrets_alone_until_their_slot():
    world = World().started()
    world.renew()
    world.write(world.ledger.renewal_work(world.plan()))
    assert world.ledger.discovery_work(world.plan()) is None
    assert not world.ledger.rotation_due()
    world.time.advance(WINDOW.total_seconds())
    assert world.ledger.rotation_due()
    work = world.ledger.discovery_work(world.plan())
    assert len(clusters(work)) == 3
    assert world.write(work).pending == 0
    assert world.ledger.next_slot() is None


# -- what readiness and metrics see --------------------------------------------------------


def test_a_secret_waiting_for_its_slot_is_not_missing():
    world = World().started()
    world.renew()
    view = world.write(world.ledger.renewal_work(world.plan()))
    assert view.failed_writes == {"argo-cd": 0}
    # The oldest credential is the first one, still in the secrets that wait.
    assert view.oldest_expiry == START + TTL


def test_a_failed_write_keeps_the_credential_the_secret_held():
    world = World().started()
    world.time.advance(20 * 60)
    world.renew()
    view = world.write(world.ledger.renewal_work(world.plan(), spread=False), fail={"a"})
    assert view.oldest_expiry == START + TTL
    assert view.failed_writes == {"argo-cd": 1}


def test_secrets_no_longer_wanted_are_forgotten():
    world = World().started()
    world.renew()
    world.write(world.ledger.renewal_work(world.plan()))
    world.clusters = ["a"]
    view = world.ledger.record(world.plan())
    assert view.pending <= 1
    world.clusters = ["a", "b", "c", "d"]
    # b, c and d come back unknown: written at once, not waiting for a forgotten slot.
    work = world.ledger.discovery_work(world.plan())
    assert {"b", "c", "d"} <= set(clusters(work))


def test_no_secret_no_credential_written_yet():
    world = World()
    view = world.ledger.record(world.plan())
    assert view.oldest_expiry is None
    assert view.failed_writes == {"argo-cd": 4}


def test_the_snapshot_is_a_copy_the_loop_never_changes():
    world = World().started()
    before = world.ledger.snapshot()
    world.clusters.append("e")
    world.write(world.ledger.discovery_work(world.plan()))
    assert before.failed_writes == {"argo-cd": 0}
    assert world.ledger.snapshot() is not before
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.pending = 1  # type: ignore[misc]


def test_content_ignores_the_write_time_only():
    world = World()
    first = world.plan().secrets[0]
    world.time.advance(60)
    later = world.plan().secrets[0]
    assert content_of(first) == content_of(later)
    world.renew()
    assert content_of(world.plan().secrets[0]) != content_of(first)


# -- a restart: what the secrets hold, read at start ----------------------------------------

HOUR = dt.timedelta(hours=1)
RESTART_ROWS = [
    # (id, what secret "a" holds as read at start, a written at once)
    ("valid, same content: waits for its slot", lambda s: Held(START + HOUR, shape_of(s)), False),
    ("missing: at once", lambda s: None, True),
    ("expires within the window: at once", lambda s: Held(START + WINDOW / 2, shape_of(s)), True),
    ("expired: at once", lambda s: Held(START - HOUR, shape_of(s)), True),
    ("no expiry readable: at once", lambda s: Held(None, shape_of(s)), True),
    ("changed content: at once", lambda s: Held(START + HOUR, 12345), True),
    ("no config Argo CD can parse: at once", lambda s: Held(START + HOUR, None), True),
]


@pytest.mark.parametrize(
    ("held", "at_once"), [r[1:] for r in RESTART_ROWS], ids=[r[0] for r in RESTART_ROWS]
)
def test_a_restart_spreads_only_secrets_that_hold_a_valid_credential(held, at_once):
    world = World()
    plan = world.plan()
    by_cluster = {s.cluster: s for s in plan.secrets}
    found = {key_of(s): Held(START + HOUR, shape_of(s)) for s in plan.secrets}
    row = held(by_cluster["a"])
    found.pop(key_of(by_cluster["a"]))
    if row is not None:
        found[key_of(by_cluster["a"])] = row
    world.ledger.learn(plan, found)
    work = world.ledger.renewal_work(world.plan())
    written = clusters(work)
    # Of the secrets holding a valid credential one has slot 0 (written now), the rest wait.
    if at_once:
        assert "a" in written
        assert len(written) == 2
    else:
        assert len(written) == 1
    view = world.write(work)
    assert view.failed_writes == {"argo-cd": 0}, "waiting secrets hold a valid credential"


def test_after_a_restart_readiness_sees_the_credentials_already_held():
    world = World()
    plan = world.plan()
    world.ledger.learn(plan, {key_of(s): Held(START + HOUR, shape_of(s)) for s in plan.secrets})
    view = world.write(world.ledger.renewal_work(world.plan()))
    assert view.oldest_expiry == START + HOUR
    assert view.pending == 3


def test_a_changed_secret_with_a_valid_credential_is_rewritten_with_it():
    world = World()
    plan = world.plan()
    credential = world.credential
    found = {key_of(s): Held(START + HOUR, shape_of(s)) for s in plan.secrets}
    a = next(s for s in plan.secrets if s.cluster == "a")
    found[key_of(a)] = Held(START + HOUR, 12345, credential)
    assert world.ledger.learn(plan, found) == {key_of(a): credential}
    world.ledger.kept(key_of(a), credential.expires)
    # Rewritten with its own credential, it now waits for its slot like the others.
    assert len(clusters(world.ledger.renewal_work(world.plan()))) == 1


def test_slots_that_come_up_name_their_clusters_and_a_missed_slot_leaves_the_window():
    world = World()
    plan = world.plan()
    world.ledger.learn(plan, {key_of(s): Held(START + HOUR, shape_of(s)) for s in plan.secrets})
    world.write(world.ledger.renewal_work(world.plan()))
    assert world.ledger.slots_due() == {}
    world.time.advance(WINDOW.total_seconds())
    due = world.ledger.slots_due()
    assert sorted(due.values()) == sorted(s.cluster for s in plan.secrets if key_of(s) in due)
    assert len(due) == 3  # every secret but slot 0's
    # One slot wrote, one had nothing to write: it leaves the window and counts as missing.
    first, missed, *_ = sorted(due)
    world.ledger.settle(world.plan(), [(first, True)], expires=world.credential.expires)
    world.ledger.slots_missed([missed])
    view = world.ledger.refresh()
    assert view.pending == 1
    assert view.failed_writes == {"argo-cd": 1}
