"""Carry out one cycle's plan: write every service's secrets, prune, and report.

The daemon and ``--oneshot`` call this same step. Failures are per secret and per service:
nothing here raises for a single bad cluster, and the report says what happened to each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.diagnostics import Metrics
from agent.logs import logger
from agent.plan import CyclePlan, ServicePlan
from agent.ports import SecretSink
from agent.writes import Outcome, PruneResult, WriteResult

__all__ = ["CycleReport", "ServiceReport", "apply_plan"]


@dataclass(frozen=True)
class ServiceReport:
    plan: ServicePlan
    writes: tuple[WriteResult, ...]
    prune: PruneResult | None

    @property
    def failed_writes(self) -> int:
        return sum(not r.ok for r in self.writes) + len(self.plan.render_errors)

    @property
    def complete(self) -> bool:
        """Every selected cluster has a current secret."""
        return self.failed_writes == 0 and not self.plan.duplicates


@dataclass(frozen=True)
class CycleReport:
    services: tuple[ServiceReport, ...]
    seconds: float

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.services)

    def outcomes(self) -> dict[str, int]:
        """How many writes ended in each outcome, for the cycle's summary line."""
        counts: dict[str, int] = {}
        for service in self.services:
            for result in service.writes:
                counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
        return counts


def apply_plan(
    plan: CyclePlan,
    writer: SecretSink,
    *,
    metrics: Metrics | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    budget: float | None = None,
) -> CycleReport:
    """Write, then prune, service by service; log one event per outcome. Writes not started
    within ``budget`` seconds are skipped (and reported as such)."""
    started = time.monotonic()
    deadline = None if budget is None else started + budget
    reports = []
    for service in plan.services:
        _report_problems(service)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        writes = tuple(writer.write(list(service.secrets), should_stop=should_stop, budget=left))
        for result in writes:
            _report_write(service.name, result)
        prune = None
        unreachable = any(r.unreachable for r in writes)
        if service.prune is not None and not should_stop() and not unreachable:
            # A cycle with failed writes still prunes: prune only removes unselected clusters.
            prune = _prune(writer, service)
        report = ServiceReport(service, writes, prune)
        if metrics is not None:
            metrics.record_writes(service.name, list(writes))
            metrics.clusters_selected.labels(service=service.name).set(len(service.selected))
        reports.append(report)
    cycle = CycleReport(tuple(reports), time.monotonic() - started)
    if metrics is not None:
        metrics.sync_duration.observe(cycle.seconds)
        metrics.sync_runs.labels(result="success" if cycle.complete else "partial").inc()
        if cycle.complete:
            metrics.last_success.set_to_current_time()
    return cycle


def _report_problems(service: ServicePlan) -> None:
    """One event per selector that matched nothing, template that failed, duplicate server."""
    log = logger.bind(service=service.name)
    for selector, problem in service.selector_problems.items():
        log.bind(selector=selector).warning("selector {}", problem)
    for cluster, error in service.render_errors.items():
        log.bind(cluster=cluster, result="error").error("cannot render secret: {}", error)
    for dup in service.duplicates:
        log.bind(cluster=dup.secret.cluster, secret=dup.secret.name, result="duplicate").error(
            "not written: {}", dup.reason
        )


def _report_write(service: str, result: WriteResult) -> None:
    event = logger.bind(
        service=service, cluster=result.cluster, secret=result.name, result=result.outcome.value
    )
    if result.outcome is Outcome.CREATED or (result.ok and result.detail):
        event.info("secret {}", result.outcome.value, detail=result.detail)
    elif result.ok:
        # Every renewal updates every secret: one line each would bury the rest.
        event.debug("secret {}", result.outcome.value)
    else:
        event.error("secret not written: {}", result.detail)


def _prune(writer: SecretSink, service: ServicePlan) -> PruneResult:
    assert service.prune is not None
    request = service.prune
    prune = writer.prune(request.namespace, request.owner, request.keep_hashes)
    log = logger.bind(service=service.name)
    for name in prune.deleted:
        log.bind(secret=name, result="pruned").info("secret pruned: cluster not selected")
    if prune.error:
        log.bind(result="error").error("prune failed: {}", prune.error)
    return prune
