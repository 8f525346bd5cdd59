"""The daemon: renew credentials, discover clusters, keep every service's secrets current.

One loop on the main thread asks the pure schedule functions what is due, does it, and sleeps
on a self-pipe that signals and other threads can wake without taking a lock (agent/wakeup.py):

* renewal (every ``renewal_interval``, with jitter; at once when a credential is behind its
  schedule) issues a fresh credential; secrets that do not hold a valid credential get it at
  once, the others one by one, spread evenly over ``rotation_window`` (every credential change
  makes Argo CD rebuild that cluster's cache: spread out, the rebuilds never pile up);
* discovery (every ``discovery_interval``) lists the clusters again and writes secrets only for
  clusters that are new, or whose last write failed, with the credential already held — so a new
  cluster reaches Argo CD within seconds, not at the next renewal;
* SIGUSR1 makes both due now and writes every secret at once; SIGTERM/SIGINT stop the loop:
  writes in flight finish, the rest are skipped (they keep their older, still valid
  credential), so no secret is ever half-written.

The loop never hangs on one cycle: each has a time budget for its writes (the writer also gives
up on an unreachable API server after a run of failed connections), an unexpected exception in
a step is logged and retried with backoff instead of ending the daemon, and ``liveness`` turns
false when the loop has not come round within its sleep plus that budget, so /livez gets a
stuck process restarted.

Services with their own ``credential_ttl``/``renewal_interval`` get a credential of their own;
all others share one. Teleport is reached through a ``TeleportSource``. A failure there is retried
with capped, jittered backoff and never removes or rewrites a secret: the secrets keep the last
good credential until it expires, and nothing is pruned from a listing that failed.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Protocol

from agent.argocd import DesiredSecret
from agent.config import AgentConfig
from agent.diagnostics import DiagnosticsServer, Metrics
from agent.kube import SecretWriter
from agent.labels import ANNOTATION_UPDATED
from agent.logs import logger
from agent.plan import CyclePlan, plan_cycle
from agent.schedule import (
    Readiness,
    next_renewal,
    oldest_held,
    readiness,
    retry_delay,
    rotation_offsets,
)
from agent.sync import apply_plan
from agent.teleport.errors import BotDeleted, TeleportError
from agent.teleport.identity import Credential
from agent.teleport.inventory import KubeCluster
from agent.teleport.webapi import ProxySettings
from agent.wakeup import Wakeup

__all__ = ["Runtime", "TeleportError", "TeleportSource", "serve"]

# Longest single sleep: the loop looks at the wall clock at least this often, so a suspended
# machine or a clock jump is noticed within seconds rather than after a whole interval.
MAX_SLEEP = dt.timedelta(seconds=5)
RETRY_FIRST = dt.timedelta(seconds=1)
RETRY_CAP = dt.timedelta(minutes=1)
# Rewrites spread over a rotation window are done in batches at most this often: each batch
# renders the service's plan again, which should not happen many times a second.
ROTATION_TICK = 1.0
# Writes of one step that have not started within this budget are skipped and retried at the
# next discovery: a slow or unreachable API server cannot hold renewal and discovery hostage.
CYCLE_BUDGET = dt.timedelta(minutes=2)
# Beyond the budget, what a step may spend on Teleport requests and rendering before the loop is
# considered stuck (/livez fails and Kubernetes restarts the pod).
LIVENESS_GRACE = dt.timedelta(minutes=3)

SecretKey = tuple[str, str]  # (namespace, name)


class TeleportSource(Protocol):
    """What the daemon needs from Teleport. Every method raises TeleportError on failure."""

    def proxy_settings(self) -> ProxySettings:
        """How clients reach the cluster through the proxy (``/webapi/find``)."""
        ...

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        """Join or renew the bot as needed, then issue an output credential for ``ttl``."""
        ...

    def list_clusters(self) -> list[KubeCluster]:
        """Every Kubernetes cluster registered in Teleport, labels merged."""
        ...


@dataclass
class _Group:
    """Services sharing one credential, and what the loop knows about their secrets."""

    services: tuple[int, ...]
    ttl: dt.timedelta
    interval: dt.timedelta
    window: dt.timedelta = dt.timedelta(0)
    credential: Credential | None = None
    # When to renew next, by the wall clock and by the monotonic clock, whichever comes first:
    # the wall clock catches a suspended machine, the monotonic one a clock set backwards.
    due_wall: dt.datetime | None = None
    due_mono: float = 0.0
    failures: int = 0
    # The last renewal failure while ``failures`` > 0, so readiness can say why.
    renewal_error: TeleportError | None = None
    # The renewal interval in force: shorter than configured when Teleport capped the lifetime.
    effective_interval: dt.timedelta | None = None
    # Secrets that hold the current credential; cleared at every renewal.
    written: set[SecretKey] = field(default_factory=set)
    # What each written secret holds (see _content): a discovery rewrites a secret whose cluster
    # changed in Teleport (labels feeding secret_labels, ...) instead of waiting for the renewal.
    contents: dict[SecretKey, int] = field(default_factory=dict)
    # The expiry of the credential each secret written by this process holds.
    held: dict[SecretKey, dt.datetime] = field(default_factory=dict)
    # Secrets waiting for their slot in the rotation window: monotonic time they are due.
    pending: dict[SecretKey, float] = field(default_factory=dict)
    # Secrets the last plan wanted, to notice clusters that dropped out between renewals.
    desired: frozenset[SecretKey] = frozenset()
    selector_problems: dict[str, dict[str, str]] = field(default_factory=dict)
    failed_writes: dict[str, int] = field(default_factory=dict)

    def due(self, now: dt.datetime, mono: float) -> bool:
        return self.due_wall is None or now >= self.due_wall or mono >= self.due_mono

    def rotation_due(self, mono: float) -> bool:
        return any(due <= mono for due in self.pending.values())

    def oldest_expiry(self) -> dt.datetime | None:
        """Expiry of the oldest credential still in any secret this group wants."""
        return oldest_held(v for k, v in self.held.items() if k in self.desired)


def credential_groups(config: AgentConfig) -> list[_Group]:
    """One group per distinct credential lifetime, in service order."""
    groups: dict[tuple[dt.timedelta, dt.timedelta], list[int]] = {}
    for index, service in enumerate(config.services):
        ttl = service.credential_ttl or config.credential_ttl
        interval = service.renewal_interval or config.renewal_interval
        groups.setdefault((ttl, interval), []).append(index)
    return [
        _Group(tuple(ix), ttl, interval, config.rotation_window_for(ttl, interval))
        for (ttl, interval), ix in groups.items()
    ]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runtime:
    """The agent's state between cycles; ``run`` is the daemon, ``run_once`` one full cycle."""

    def __init__(
        self,
        config: AgentConfig,
        source: TeleportSource,
        writer: SecretWriter,
        *,
        agent_version: str,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cycle_budget: dt.timedelta = CYCLE_BUDGET,
        liveness_grace: dt.timedelta = LIVENESS_GRACE,
    ) -> None:
        self._config = config
        self._source = source
        self._writer = writer
        self._version = agent_version
        self.metrics = metrics or Metrics(clock)
        self._clock = clock
        self._mono = monotonic
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._groups = credential_groups(config)
        self._discovery_interval = min(s.discovery_interval for s in config.services)
        self._next_discovery: float | None = None  # monotonic
        self._last_rotation = -ROTATION_TICK  # monotonic
        self._proxy: ProxySettings | None = None
        self._clusters: list[KubeCluster] | None = None  # the last good listing
        self._listing_failed = False
        self._wakeup = Wakeup()
        self._cycle_budget = cycle_budget.total_seconds()
        self._stuck_after = (cycle_budget + liveness_grace).total_seconds()
        # Monotonic time by which the loop must come round again, read by /livez. A float
        # assignment needs no lock; the first step gets the same allowance as any other.
        self._live_until = time.monotonic() + self._stuck_after
        self._step_failures = 0
        self._listing_error: TeleportError | None = None
        self._lock = threading.Lock()  # readiness is read from the diagnostics thread

    # -- control ------------------------------------------------------------------------

    def request_sync(self) -> None:
        """Renew and sync every service now (as SIGUSR1 does); safe from any thread."""
        self._wakeup.notify(signal.SIGUSR1)

    def request_stop(self) -> None:
        """Finish the writes in flight and leave the loop (as SIGTERM does)."""
        self._wakeup.request_stop()

    def signals(self) -> AbstractContextManager[None]:
        """Route SIGTERM/SIGINT (stop) and SIGUSR1 (sync now) to the loop; main thread only."""
        return self._wakeup.signals(stop=(signal.SIGTERM, signal.SIGINT), wake=(signal.SIGUSR1,))

    def liveness(self) -> bool:
        """False once the loop is overdue: it has not come round within its planned sleep plus
        the cycle budget and grace. Read by /livez from another thread; takes no lock."""
        return time.monotonic() <= self._live_until

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``request_stop`` or a stop signal."""
        logger.info(
            "agent started",
            services=len(self._config.services),
            credentials=len(self._groups),
            discovery_interval=self._discovery_interval.total_seconds(),
        )
        forced = False
        while not self._stopping():
            if forced:
                logger.info("sync requested")
            delay = self._guarded_step(forced=forced)
            self._live_until = time.monotonic() + delay + self._stuck_after
            if self._stopping():
                break
            forced = self._react(self._wakeup.wait(delay))
        logger.info("agent stopped")

    def _guarded_step(self, *, forced: bool) -> float:
        """One step; an exception nobody expected is logged (redacted, with its stack) and the
        step is retried with backoff, instead of ending the daemon with a raw traceback.
        Returns how long to sleep."""
        try:
            self.step(forced=forced)
        except Exception as exc:
            self._step_failures += 1
            delay = retry_delay(
                self._step_failures, first=RETRY_FIRST, cap=RETRY_CAP, rng=self._rng
            ).total_seconds()
            logger.opt(exception=exc).bind(error_type=type(exc).__name__).error(
                "loop step failed; retrying in {:.1f}s", delay
            )
            return delay
        self._step_failures = 0
        return self._sleep_seconds()

    def _react(self, signals: list[int]) -> bool:
        """Log what woke the loop (never from a signal handler); true when a sync was asked."""
        for signum in sorted(set(signals)):
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("stopping on {}", signal.Signals(signum).name)
        return signal.SIGUSR1 in signals

    def run_once(self) -> bool:
        """One full cycle for every service; true only if every selected cluster was written,
        the listing worked and every selector matched."""
        self.step(forced=True)
        with self._lock:
            return not self._listing_failed and all(
                g.credential is not None
                and g.failures == 0
                and not any(g.failed_writes.values())
                and not any(g.selector_problems.values())
                for g in self._groups
            )

    def step(self, *, forced: bool = False) -> None:
        """Do whatever is due now: renewals, a discovery, and the writes they call for."""
        now, mono = self._clock(), self._mono()
        due = [g for g in self._groups if forced or g.due(now, mono)]
        if not due and self._next_discovery is not None and mono < self._next_discovery:
            # Between discoveries only rewrites whose slot in a rotation window came up.
            if mono - self._last_rotation >= ROTATION_TICK:
                for group in self._groups:
                    if group.rotation_due(mono) and not self._stopping():
                        self._last_rotation = mono
                        self._sync(group, full=False)
            return
        self._next_discovery = mono + self._discovery_interval.total_seconds()
        self._discover(refresh_proxy=bool(due))
        renewed = [g for g in due if self._renew(g)]
        deadline = self._mono() + self._cycle_budget
        for group in self._groups:
            if self._stopping():
                return
            self._sync(
                group,
                full=group in renewed,
                spread=not forced,
                budget=max(0.0, deadline - self._mono()),
            )

    def _sleep_seconds(self) -> float:
        now, mono = self._clock(), self._mono()
        deadlines = [MAX_SLEEP.total_seconds()]
        if self._next_discovery is not None:
            deadlines.append(self._next_discovery - mono)
        for group in self._groups:
            if group.pending:
                deadlines.append(
                    max(min(group.pending.values()), self._last_rotation + ROTATION_TICK) - mono
                )
            if group.due_wall is not None:
                deadlines.append((group.due_wall - now).total_seconds())
                deadlines.append(group.due_mono - mono)
        return max(0.0, min(deadlines))

    # -- Teleport -----------------------------------------------------------------------

    def _teleport_failed(self, exc: TeleportError) -> None:
        self.metrics.teleport_errors.labels(operation=exc.operation).inc()
        self.metrics.bot_deleted.set(isinstance(exc, BotDeleted))
        logger.bind(operation=exc.operation).warning("Teleport request failed: {}", exc)

    def _discover(self, *, refresh_proxy: bool) -> None:
        try:
            # The proxy's settings (address, TLS routing) are read again with every renewal, so
            # a changed proxy reaches the secrets without a restart.
            if refresh_proxy or self._proxy is None:
                self._proxy = self._source.proxy_settings()
            clusters = self._source.list_clusters()
        except TeleportError as exc:
            self._teleport_failed(exc)
            with self._lock:
                self._listing_failed = True
                self._listing_error = exc
            return
        with self._lock:
            self._clusters = clusters
            self._listing_failed = False
            self._listing_error = None

    def _renew(self, group: _Group) -> bool:
        try:
            credential = self._source.issue_credential(group.ttl)
        except TeleportError as exc:
            self._teleport_failed(exc)
            with self._lock:
                group.failures += 1
                group.renewal_error = exc
            delay = retry_delay(
                group.failures, first=RETRY_FIRST, cap=min(RETRY_CAP, group.interval), rng=self._rng
            )
            self._schedule(group, delay)
            return False
        now = self._clock()
        group.credential = credential
        with self._lock:
            group.failures = 0
            group.renewal_error = None
        self.metrics.bot_deleted.set(0)
        group.written.clear()
        lifetime = credential.expires - now
        # Teleport may cap the lifetime below the requested TTL (the role's max_session_ttl):
        # then renew at half the life left, never after the credential has expired.
        interval = min(group.interval, lifetime / 2)
        group.effective_interval = interval
        planned = next_renewal(
            now=now,
            last_renewal=now,
            credential_expires=credential.expires,
            renewal_interval=interval,
            credential_ttl=lifetime,
            rng=self._rng,
        )
        self._schedule(group, planned - now)
        logger.bind(services=self._names(group)).info(
            "credential issued", expires=credential.expires.isoformat()
        )
        return True

    def _schedule(self, group: _Group, delay: dt.timedelta) -> None:
        group.due_wall = self._clock() + delay
        group.due_mono = self._mono() + delay.total_seconds()

    # -- secrets --------------------------------------------------------------------------

    def _sync(
        self, group: _Group, *, full: bool, spread: bool = True, budget: float | None = None
    ) -> None:
        credential, clusters, proxy = group.credential, self._clusters, self._proxy
        if credential is None or clusters is None or proxy is None:
            return  # nothing to write with yet; the reason was logged when it failed
        if isinstance(group.renewal_error, BotDeleted):
            # The bot was revoked in Teleport: write nothing more, keep what was written.
            return
        now = self._clock()
        if credential.expires <= now:
            # Never write a credential that no longer works; existing secrets stay as they are.
            logger.bind(services=self._names(group)).error(
                "credential expired and could not be renewed; not writing"
            )
            return
        plan = plan_cycle(
            self._config,
            proxy=proxy,
            clusters=clusters,
            credential=credential,
            agent_version=self._version,
            now=now,
            services=group.services,
            listing_complete=not self._listing_failed,
        )
        desired = frozenset((s.namespace, s.name) for s in plan.secrets)
        mono = self._mono()
        if full:
            # Secrets still holding a valid older credential wait for their slot in the
            # rotation window; the others (new clusters, failed writes, the first cycle of
            # this process, which cannot read what the secrets hold) are written now.
            window = group.window if spread else dt.timedelta(0)
            holding = {k: v for k, v in group.held.items() if k in desired and v > now}
            offsets = rotation_offsets(holding, now=now, window=window) if window else {}
            group.pending = {
                k: mono + offset.total_seconds() for k, offset in offsets.items() if offset
            }
            work = _only_new(plan, set(group.pending), prune=True)
        else:
            waiting = {k for k, due in group.pending.items() if due > mono}
            unchanged = {
                (s.namespace, s.name)
                for s in plan.secrets
                if group.contents.get((s.namespace, s.name)) == _content(s)
            }
            work = _only_new(
                plan, (group.written & unchanged) | waiting, prune=bool(group.desired - desired)
            )
            if not work.secrets and not any(s.prune for s in work.services):
                self._record(group, plan)
                return
        report = apply_plan(
            work, self._writer, metrics=self.metrics, should_stop=self._stopping, budget=budget
        )
        written = {(s.namespace, s.name): s for s in work.secrets}
        for service in report.services:
            for result in service.writes:
                key = (result.namespace, result.name)
                group.pending.pop(key, None)
                if result.ok:
                    group.written.add(key)
                    group.held[key] = credential.expires
                    if key in written:
                        group.contents[key] = _content(written[key])
                else:
                    group.written.discard(key)
        self._record(group, plan)
        expiries = [g.oldest_expiry() for g in self._groups]
        if all(e is not None for e in expiries):
            self.metrics.credential_written(min(e for e in expiries if e is not None))
        self.metrics.rotation_pending.set(sum(len(g.pending) for g in self._groups))
        logger.bind(services=self._names(group)).info(
            "sync {}",
            "finished" if report.complete else "finished with failures",
            kind="renewal" if full else "discovery",
            seconds=round(report.seconds, 3),
            **report.outcomes(),
        )

    def _record(self, group: _Group, plan: CyclePlan) -> None:
        """Remember what the full plan wanted and what is still missing, for readiness."""
        with self._lock:
            group.desired = frozenset((s.namespace, s.name) for s in plan.secrets)
            group.held = {k: v for k, v in group.held.items() if k in group.desired}
            group.contents = {k: v for k, v in group.contents.items() if k in group.desired}
            group.pending = {k: v for k, v in group.pending.items() if k in group.desired}
            for service in plan.services:
                group.selector_problems[service.name] = dict(service.selector_problems)
                self.metrics.selectors_unmatched.labels(service=service.name).set(
                    len(service.selector_problems)
                )
                # A secret waiting for its rotation slot holds a valid credential: not missing.
                missing = sum(
                    (s.namespace, s.name) not in group.written
                    and (s.namespace, s.name) not in group.pending
                    for s in service.secrets
                )
                group.failed_writes[service.name] = (
                    missing + len(service.render_errors) + len(service.duplicates)
                )

    def _stopping(self) -> bool:
        return self._wakeup.stop_requested

    def _names(self, group: _Group) -> str:
        return ",".join(self._config.service_name(i) for i in group.services)

    # -- readiness ------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        """Ready when the oldest credential in any secret outlives one more renewal interval,
        the last listing worked and every selected cluster was written; selectors that matched
        nothing are warnings."""
        now = self._clock()
        reasons: list[str] = []
        warnings: list[str] = []
        with self._lock:
            if self._listing_failed:
                reasons.append(
                    "the last cluster listing from Teleport failed"
                    + (f": {_why(self._listing_error)}" if self._listing_error else "")
                )
            for group in self._groups:
                if group.renewal_error is not None:
                    reasons.append(
                        f"renewing the credential failed {group.failures} time(s) in a row: "
                        f"{_why(group.renewal_error)}"
                    )
                state = readiness(
                    now=now,
                    credential_expires=group.oldest_expiry(),
                    renewal_interval=group.effective_interval or group.interval,
                    selector_problems=group.selector_problems,
                    failed_writes=group.failed_writes,
                )
                reasons += [r for r in state.reasons if r not in reasons]
                warnings += [w for w in state.warnings if w not in warnings]
        return Readiness(not reasons, tuple(reasons), tuple(warnings))


def _content(secret: DesiredSecret) -> int:
    """What a secret holds, but for its write time (which alone never warrants a write)."""
    annotations = {k: v for k, v in secret.annotations.items() if k != ANNOTATION_UPDATED}
    return hash(
        (
            tuple(sorted(secret.labels.items())),
            tuple(sorted(annotations.items())),
            tuple(sorted(secret.data.items())),
        )
    )


def _why(exc: TeleportError) -> str:
    """A Teleport failure for a person: what kind, then the client's sentence of what to do."""
    return f"{exc.summary}: {exc}"


def _only_new(plan: CyclePlan, skip: set[SecretKey], *, prune: bool) -> CyclePlan:
    """The part of a plan to do now: every secret but those in ``skip`` (already written with
    the current credential, or waiting for their rotation slot), and the prune if asked."""
    return CyclePlan(
        tuple(
            replace(
                service,
                secrets=tuple(s for s in service.secrets if (s.namespace, s.name) not in skip),
                prune=service.prune if prune else None,
            )
            for service in plan.services
        )
    )


def serve(runtime: Runtime, *, diag_addr: str) -> int:
    """Run the daemon with signal handling and, if an address is set, the diagnostics server.

    SIGUSR1: sync now. SIGTERM, SIGINT: stop after the writes in flight."""
    server = (
        DiagnosticsServer(diag_addr, runtime.metrics, runtime.readiness, liveness=runtime.liveness)
        if diag_addr
        else None
    )
    if server is not None:
        server.start()
        logger.info(
            "diagnostics listening", address=f"{diag_addr.rpartition(':')[0]}:{server.port}"
        )
    try:
        with runtime.signals():
            runtime.run()
    finally:
        if server is not None:
            server.close()
    return 0
