"""Which Teleport Kubernetes clusters the selectors match (tbot's semantics).

``labels``: every key present with an exactly equal value, against static plus dynamic labels.
``name``: the cluster's name, or an unambiguous match of the discovered-name label. Several
selectors are a union. Purely computational, no side-effects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.config import Selector
from agent.teleport.model import KubeCluster

__all__ = ["DISCOVERED_NAME_LABEL", "Selection", "select_clusters"]

DISCOVERED_NAME_LABEL = "teleport.internal/discovered-name"


@dataclass(frozen=True)
class Selection:
    """The matched clusters in a stable order, and what went wrong per selector."""

    clusters: tuple[KubeCluster, ...]
    # selector description -> problem ("matched no cluster", "ambiguous: a, b")
    problems: Mapping[str, str]


def _matches_labels(cluster: KubeCluster, wanted: Mapping[str, str]) -> bool:
    return all(cluster.labels.get(k) == v for k, v in wanted.items())


def select_clusters(clusters: Iterable[KubeCluster], selectors: Sequence[Selector]) -> Selection:
    """Apply selectors to clusters, deduplicating by name (several kube services may serve one)."""
    by_name: dict[str, KubeCluster] = {}
    for cluster in clusters:
        by_name.setdefault(cluster.name, cluster)
    chosen: dict[str, KubeCluster] = {}
    problems: dict[str, str] = {}
    for selector in selectors:
        if selector.name is not None:
            if selector.name in by_name:
                matched = [by_name[selector.name]]
            else:
                matched = [
                    c
                    for c in by_name.values()
                    if c.labels.get(DISCOVERED_NAME_LABEL) == selector.name
                ]
                if len(matched) > 1:
                    names = ", ".join(sorted(c.name for c in matched))
                    problems[selector.describe()] = f"ambiguous, matches {names}"
                    continue
        else:
            assert selector.labels is not None
            matched = [c for c in by_name.values() if _matches_labels(c, selector.labels)]
        if not matched:
            problems[selector.describe()] = "matched no cluster"
        for cluster in matched:
            chosen.setdefault(cluster.name, cluster)
    ordered = tuple(chosen[name] for name in sorted(chosen))
    return Selection(ordered, problems)
