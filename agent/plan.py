"""One cycle's desired state: config + inventory + credential -> secrets to write and prune.

This is the step the daemon, ``--oneshot`` and ``plan`` share. It decides; it does not write.
Purely computational, no side-effects: the clock and the agent version are parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.argocd import (
    DesiredSecret,
    Duplicate,
    RenderError,
    cluster_hash,
    deduplicate,
    owner_id,
    render_secret,
)
from agent.config import AgentConfig, ArgoCDService
from agent.teleport.inventory import select_clusters
from agent.teleport.model import Credential, KubeCluster, ProxySettings

__all__ = ["CyclePlan", "PruneRequest", "ServicePlan", "plan_cycle"]


@dataclass(frozen=True)
class PruneRequest:
    """Delete this owner's secrets in ``namespace`` whose cluster hash is not kept."""

    namespace: str
    owner: str
    keep_hashes: frozenset[str]


@dataclass(frozen=True)
class ServicePlan:
    name: str
    selected: tuple[str, ...]  # Kubernetes cluster names the selectors matched
    secrets: tuple[DesiredSecret, ...]
    # selector description -> problem (no match, ambiguous); a readiness warning
    selector_problems: Mapping[str, str]
    # cluster -> why no secret could be rendered for it
    render_errors: Mapping[str, str]
    duplicates: tuple[Duplicate, ...]
    prune: PruneRequest | None


@dataclass(frozen=True)
class CyclePlan:
    services: tuple[ServicePlan, ...] = field(default_factory=tuple)

    @property
    def secrets(self) -> list[DesiredSecret]:
        return [s for plan in self.services for s in plan.secrets]


def plan_cycle(
    config: AgentConfig,
    *,
    proxy: ProxySettings,
    clusters: Sequence[KubeCluster] | None,
    credential: Credential,
    agent_version: str,
    now: dt.datetime,
    services: Sequence[ArgoCDService] | None = None,
    listing_complete: bool = True,
) -> CyclePlan:
    """Render every service's secrets; ``clusters`` is None when the listing failed.

    ``services`` limits the plan to those of the config's services (the ones sharing
    ``credential``), in the config's order.
    ``listing_complete`` is false when ``clusters`` is an older listing kept through a failed
    one: secrets are refreshed for the clusters known, but nothing is pruned.

    Secrets are deduplicated across services (first service wins), because Argo CD resolves
    two secrets for one server nondeterministically. Pruning is only requested for services
    that opted in, after a listing that succeeded and matched at least one cluster.
    """
    instance = config.resolved_instance()
    drafts: list[_Draft] = []
    for service in config.services if services is None else services:
        name = service.resolved_name()
        selection = select_clusters(clusters or (), service.selectors)
        draft = _Draft(name, tuple(c.name for c in selection.clusters), selection.problems)
        for cluster in selection.clusters:
            try:
                draft.secrets.append(
                    render_secret(
                        service=service,
                        service_name=name,
                        instance=instance,
                        proxy=proxy,
                        cluster=cluster,
                        credential=credential,
                        agent_version=agent_version,
                        now=now,
                    )
                )
            except RenderError as exc:
                draft.render_errors[cluster.name] = str(exc)
        if service.prune and listing_complete and clusters is not None and selection.clusters:
            # Keep every selected cluster, rendered or not: a template problem is no removal.
            keep = frozenset(cluster_hash(proxy.cluster_name, c) for c in draft.selected)
            draft.prune = PruneRequest(service.resolved_namespace(), owner_id(instance, name), keep)
        drafts.append(draft)

    kept, dropped = deduplicate(s for d in drafts for s in d.secrets)
    kept_ids = {id(s) for s in kept}
    return CyclePlan(
        tuple(
            ServicePlan(
                name=d.name,
                selected=d.selected,
                secrets=tuple(s for s in d.secrets if id(s) in kept_ids),
                selector_problems=dict(d.selector_problems),
                render_errors=dict(d.render_errors),
                duplicates=tuple(x for x in dropped if any(x.secret is s for s in d.secrets)),
                prune=d.prune,
            )
            for d in drafts
        )
    )


@dataclass
class _Draft:
    name: str
    selected: tuple[str, ...]
    selector_problems: Mapping[str, str]
    secrets: list[DesiredSecret] = field(default_factory=list)
    render_errors: dict[str, str] = field(default_factory=dict)
    prune: PruneRequest | None = None
