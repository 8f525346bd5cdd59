from __future__ import annotations

import datetime as dt

from agent.argocd import cluster_hash, owner_id
from agent.config import parse_config
from agent.plan import plan_cycle
from agent.teleport.model import Credential, KubeCluster, ProxySettings

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
CRED = Credential(b"CERT", b"KEY", (b"CA",), "argocd", NOW + dt.timedelta(hours=1))
PROXY = ProxySettings("root", "teleport.example.com:443", tls_routing=True)
CLUSTERS = [
    KubeCluster("prod-1", {"env": "prod", "team": "a"}),
    KubeCluster("prod-2", {"env": "prod", "team": "has space"}),
    KubeCluster("dev-1", {"env": "dev", "team": "b"}),
]


def config(*services):
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "instance": "argocd/rel",
            "services": list(services),
        }
    )


def svc(name, selectors, **extra):
    return {
        "type": "kubernetes/argo-cd",
        "name": name,
        "selectors": selectors,
        "secret_namespace": "argocd",
        **extra,
    }


def plan(cfg, clusters=CLUSTERS, *, listing_complete=True):
    return plan_cycle(
        cfg,
        proxy=PROXY,
        clusters=clusters,
        credential=CRED,
        agent_version="1",
        now=NOW,
        listing_complete=listing_complete,
    )


def test_render_error_for_one_cluster_does_not_stop_the_others():
    cfg = config(
        svc(
            "a", [{"labels": {"env": "prod"}}], secret_labels={"team": '{{ index .Labels "team" }}'}
        )
    )
    result = plan(cfg).services[0]
    assert [s.cluster for s in result.secrets] == ["prod-1"]
    assert list(result.render_errors) == ["prod-2"]
    assert "not a valid label value" in result.render_errors["prod-2"]


def test_two_services_never_register_one_server_twice_first_wins():
    cfg = config(
        svc("first", [{"labels": {"env": "prod"}}], secret_name_prefix="first"),
        svc("second", [{"name": "prod-1"}, {"name": "dev-1"}], secret_name_prefix="second"),
    )
    first, second = plan(cfg).services
    assert [s.cluster for s in first.secrets] == ["prod-1", "prod-2"]
    assert [s.cluster for s in second.secrets] == ["dev-1"]
    assert [d.secret.cluster for d in second.duplicates] == ["prod-1"]
    assert "already registered" in second.duplicates[0].reason


def test_selector_problems_are_reported_per_service():
    cfg = config(svc("a", [{"name": "gone"}, {"name": "dev-1"}]))
    result = plan(cfg).services[0]
    assert result.selector_problems == {"name=gone": "matched no cluster"}
    assert result.selected == ("dev-1",)


def test_prune_is_requested_only_when_opted_in_and_the_listing_is_usable():
    team = {"team": '{{ index .Labels "team" }}'}
    cfg = config(
        svc("a", [{"labels": {"env": "prod"}}], prune=True, secret_labels=team),
        svc("b", [{"name": "dev-1"}]),
    )
    pruning, not_pruning = plan(cfg).services
    assert not_pruning.prune is None
    assert pruning.prune is not None
    assert pruning.prune.owner == owner_id("argocd/rel", "a")
    # prod-2's team label renders invalid, so it has no secret this cycle...
    assert list(pruning.render_errors) == ["prod-2"]
    assert [s.cluster for s in pruning.secrets] == ["prod-1"]
    # ... yet it still counts as selected: its existing secret must not be pruned.
    assert pruning.prune.keep_hashes == {
        cluster_hash("root", "prod-1"),
        cluster_hash("root", "prod-2"),
    }
    assert plan(cfg, clusters=None).services[0].prune is None  # listing failed
    # An older listing kept through a failed one: its secrets are refreshed, nothing is pruned.
    kept = plan(cfg, listing_complete=False).services[0]
    assert [s.cluster for s in kept.secrets] == ["prod-1"]
    assert kept.prune is None
    assert plan(cfg, clusters=[]).services[0].prune is None  # listing empty
    assert plan(cfg, clusters=None).services[0].secrets == ()
