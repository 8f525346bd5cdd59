from __future__ import annotations

from agent.config import Selector
from agent.teleport.inventory import DISCOVERED_NAME_LABEL, select_clusters
from agent.teleport.model import KubeCluster

CLUSTERS = [
    KubeCluster("prod-eu", {"env": "prod", "region": "eu"}),
    KubeCluster("prod-us", {"env": "prod", "region": "us"}),
    KubeCluster("dev", {"env": "dev"}),
    KubeCluster("eks-a-1234", {DISCOVERED_NAME_LABEL: "eks-a", "env": "staging"}),
    KubeCluster("eks-b-1", {DISCOVERED_NAME_LABEL: "eks-b"}),
    KubeCluster("eks-b-2", {DISCOVERED_NAME_LABEL: "eks-b"}),
    KubeCluster("prod-eu", {"env": "prod", "region": "eu"}),  # served by a second kube service
]


def names(selection):
    return [c.name for c in selection.clusters]


def test_labels_need_every_key_with_an_equal_value():
    sel = select_clusters(CLUSTERS, [Selector(labels={"env": "prod", "region": "eu"})])
    assert names(sel) == ["prod-eu"]
    assert not sel.problems


def test_selectors_are_a_union_without_duplicates():
    sel = select_clusters(
        CLUSTERS, [Selector(labels={"env": "prod"}), Selector(name="prod-eu"), Selector(name="dev")]
    )
    assert names(sel) == ["dev", "prod-eu", "prod-us"]


def test_name_matches_exact_name_or_unambiguous_discovered_name():
    assert names(select_clusters(CLUSTERS, [Selector(name="eks-a")])) == ["eks-a-1234"]
    assert names(select_clusters(CLUSTERS, [Selector(name="eks-a-1234")])) == ["eks-a-1234"]


def test_ambiguous_discovered_name_is_reported_not_guessed():
    sel = select_clusters(CLUSTERS, [Selector(name="eks-b"), Selector(name="dev")])
    assert names(sel) == ["dev"]
    assert sel.problems == {"name=eks-b": "ambiguous, matches eks-b-1, eks-b-2"}


def test_unmatched_selector_is_reported_and_others_still_match():
    sel = select_clusters(CLUSTERS, [Selector(name="gone"), Selector(labels={"env": "dev"})])
    assert names(sel) == ["dev"]
    assert sel.problems == {"name=gone": "matched no cluster"}


def test_label_value_must_match_exactly():
    sel = select_clusters(CLUSTERS, [Selector(labels={"env": "Prod"})])
    assert sel.clusters == ()
    assert sel.problems == {"labels=env=Prod": "matched no cluster"}
