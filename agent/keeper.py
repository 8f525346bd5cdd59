"""One step of the daemon: renew what is due, list the clusters, write what the ledgers ask for.

* Renewal (every ``renewal_interval``, with jitter) issues a fresh credential; the group's
  ledger (``agent/rotation.py``) writes it at once to secrets that hold no valid credential and
  spreads the others over the rotation window.
* Discovery (every ``discovery_interval``) lists the clusters again and writes only what changed
  (new clusters, failed writes, changed content), with the credential already held, so a new
  cluster reaches Argo CD within seconds, not at the next renewal.
* A failure in Teleport is retried with capped, jittered backoff and never removes or rewrites
  a secret: the secrets keep the last good credential until it expires, and nothing is pruned
  from a listing that failed. A group without a credential renews as soon as a listing works
  again, and a step whose listing could not get a bot identity does not try again to renew
  (one join attempt per failed step, not two).

Services with their own ``credential_ttl``/``renewal_interval`` get a credential of their own;
all others share one.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agent.argocd import DesiredSecret
from agent.config import AgentConfig, ArgoCDService
from agent.diagnostics import Metrics
from agent.kubeapi import ApiError
from agent.logs import logger
from agent.plan import CyclePlan, plan_cycle
from agent.ports import Parts
from agent.rotation import Clock, Ledger, LedgerView, SecretKey, only
from agent.schedule import renewal_delay, retry_delay
from agent.state import AgentState, GroupState
from agent.sync import CycleReport, apply_plan
from agent.teleport.errors import BOT_IDENTITY_OPERATIONS, BotDeleted, TeleportError
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from agent.writes import Held

__all__ = ["CredentialGroup", "Keeper", "credential_groups"]

# What a TeleportSource raises: Teleport's failures, and the Kubernetes API's for the Secret
# the bot identity is stored in.
SourceError = TeleportError | ApiError

RETRY_FIRST = dt.timedelta(seconds=1)
RETRY_CAP = dt.timedelta(minutes=1)
# Rewrites spread over a rotation window are done in batches at most this often: each batch
# renders the service's plan again, which should not happen many times a second.
ROTATION_TICK = 1.0
# How many secrets the start-up read asks about before it reads the rest: two rounds of the
# writer's default concurrency, ~30 ms. None of them found means a first installation.
START_SAMPLE = 32


@dataclass(eq=False)
class CredentialGroup:
    """Services sharing one credential, when it is due, and the ledger of their secrets."""

    services: tuple[ArgoCDService, ...]
    ttl: dt.timedelta
    interval: dt.timedelta
    ledger: Ledger
    credential: Credential | None = None
    # When to renew next, by the wall clock and by the monotonic clock, whichever comes first:
    # the wall clock catches a suspended machine, the monotonic one a clock set backwards.
    due_wall: dt.datetime | None = None
    due_mono: float = 0.0
    failures: int = 0
    # The last renewal failure while ``failures`` > 0, for a person.
    renewal_error: str = ""
    # Teleport refused the last renewal because the bot was deleted: nothing is written.
    revoked: bool = False
    # The renewal interval in force: shorter than configured when Teleport capped the lifetime.
    effective_interval: dt.timedelta | None = None
    # What the secrets held when this process started has been read (once).
    learned: bool = False

    def due(self, now: dt.datetime, mono: float) -> bool:
        return self.due_wall is None or now >= self.due_wall or mono >= self.due_mono

    def state(self) -> GroupState:
        return GroupState(
            has_credential=self.credential is not None,
            failures=self.failures,
            renewal_error=self.renewal_error,
            interval=self.effective_interval or self.interval,
            secrets=self.ledger.snapshot(),
        )


def credential_groups(config: AgentConfig, clock: Clock) -> list[CredentialGroup]:
    """One group per distinct credential lifetime, in service order."""
    groups: dict[tuple[dt.timedelta, dt.timedelta], list[ArgoCDService]] = {}
    for service in config.services:
        ttl = service.credential_ttl or config.credential_ttl
        interval = service.renewal_interval or config.renewal_interval
        groups.setdefault((ttl, interval), []).append(service)
    return [
        CredentialGroup(
            tuple(services), ttl, interval, Ledger(config.rotation_window_for(ttl, interval), clock)
        )
        for (ttl, interval), services in groups.items()
    ]


class Keeper:
    """Keeps every service's secrets current, one ``step`` at a time; owned by the loop."""

    def __init__(
        self,
        parts: Parts,
        *,
        metrics: Metrics,
        clock: Clock,
        rng: random.Random,
        should_stop: Callable[[], bool],
    ) -> None:
        config = parts.config
        self._config = config
        self._source = parts.source
        self._sink = parts.sink
        self._version = parts.agent_version
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._stopping = should_stop
        self.groups = credential_groups(config, clock)
        self.discovery_interval = min(s.discovery_interval for s in config.services)
        self._next_discovery: float | None = None  # monotonic
        self._last_rotation = -ROTATION_TICK  # monotonic
        self._proxy: ProxySettings | None = None
        self._clusters: list[KubeCluster] | None = None  # the last good listing
        self._listing_error: SourceError | None = None
        self.state = AgentState(groups=tuple(g.state() for g in self.groups))

    def step(self, *, forced: bool, budget: float) -> None:
        """Do whatever is due now: renewals, a discovery, and the writes they call for;
        ``forced`` (SIGUSR1) makes everything due and writes every secret at once."""
        try:
            self._step(forced=forced, budget=budget)
        finally:
            self._publish()

    def _step(self, *, forced: bool, budget: float) -> None:
        now, mono = self._clock.wall(), self._clock.monotonic()
        due = [g for g in self.groups if forced or g.due(now, mono)]
        if not due and self._next_discovery is not None and mono < self._next_discovery:
            # Between discoveries only rewrites whose slot in a rotation window came up.
            if mono - self._last_rotation >= ROTATION_TICK:
                for group in self.groups:
                    if group.ledger.rotation_due() and not self._stopping():
                        self._last_rotation = mono
                        self._rotate(group)
            return
        self._next_discovery = mono + self.discovery_interval.total_seconds()
        self._discover(refresh_proxy=bool(due))
        listing_error = self._listing_error
        if listing_error is None:
            # A group left without a credential (a join that failed and was fixed since)
            # renews now that Teleport answers, not when its backoff ends.
            due += [g for g in self.groups if g.credential is None and g not in due]
        renewed = []
        for group in due:
            if listing_error is not None and listing_error.operation in BOT_IDENTITY_OPERATIONS:
                # The listing could not get a bot identity; a renewal would try the same join.
                self._renewal_failed(group, listing_error)
            elif self._renew(group):
                renewed.append(group)
        deadline = self._clock.monotonic() + budget
        for group in self.groups:
            if self._stopping():
                return
            left = max(0.0, deadline - self._clock.monotonic())
            self._sync(group, renewal=group in renewed, spread=not forced, budget=left)

    def next_wakeup(self) -> float:
        """Seconds until something is due (discovery, a renewal, a slot in a window)."""
        now, mono = self._clock.wall(), self._clock.monotonic()
        deadlines = []
        if self._next_discovery is not None:
            deadlines.append(self._next_discovery - mono)
        for group in self.groups:
            slot = group.ledger.next_slot()
            if slot is not None:
                deadlines.append(max(slot, self._last_rotation + ROTATION_TICK) - mono)
            if group.due_wall is not None:
                deadlines.append((group.due_wall - now).total_seconds())
                deadlines.append(group.due_mono - mono)
        return max(0.0, min(deadlines, default=math.inf))

    # -- Teleport -------------------------------------------------------------------------

    def _teleport_failed(self, exc: SourceError) -> None:
        if isinstance(exc, ApiError):
            # The bot identity's Secret: a Kubernetes failure, not Teleport's.
            self._metrics.kubernetes_errors.labels(operation=exc.operation).inc()
        else:
            self._metrics.teleport_errors.labels(operation=exc.operation).inc()
        self._metrics.bot_deleted.set(isinstance(exc, BotDeleted))
        party = "Kubernetes API" if isinstance(exc, ApiError) else "Teleport"
        logger.bind(operation=exc.operation).warning("{} request failed: {}", party, exc)

    def _discover(self, *, refresh_proxy: bool) -> None:
        try:
            # The proxy's settings (address, TLS routing) are read again with every renewal, so
            # a changed proxy reaches the secrets without a restart.
            if refresh_proxy or self._proxy is None:
                self._proxy = self._source.proxy_settings()
            self._clusters = self._source.list_clusters()
        except (TeleportError, ApiError) as exc:
            self._teleport_failed(exc)
            self._listing_error = exc
            return
        self._listing_error = None

    def _renew(self, group: CredentialGroup) -> bool:
        try:
            credential = self._source.issue_credential(group.ttl)
        except (TeleportError, ApiError) as exc:
            self._teleport_failed(exc)
            self._renewal_failed(group, exc)
            return False
        now = self._clock.wall()
        group.credential = credential
        group.failures, group.renewal_error, group.revoked = 0, "", False
        self._metrics.bot_deleted.set(0)
        group.ledger.renewed()
        # Teleport may cap the lifetime below the requested TTL (the role's max_session_ttl):
        # then renew at half the life left, never after the credential has expired.
        group.effective_interval = min(group.interval, (credential.expires - now) / 2)
        self._schedule(group, renewal_delay(group.effective_interval, rng=self._rng))
        logger.bind(services=self._names(group)).info(
            "credential issued", expires=credential.expires.isoformat()
        )
        return True

    def _renewal_failed(self, group: CredentialGroup, exc: SourceError) -> None:
        group.failures += 1
        group.renewal_error = _why(exc)
        group.revoked = isinstance(exc, BotDeleted)
        cap = min(RETRY_CAP, group.interval)
        self._schedule(
            group, retry_delay(group.failures, first=RETRY_FIRST, cap=cap, rng=self._rng)
        )

    def _schedule(self, group: CredentialGroup, delay: dt.timedelta) -> None:
        group.due_wall = self._clock.wall() + delay
        group.due_mono = self._clock.monotonic() + delay.total_seconds()

    # -- secrets --------------------------------------------------------------------------

    def _sync(
        self,
        group: CredentialGroup,
        *,
        renewal: bool,
        spread: bool = True,
        budget: float | None = None,
    ) -> None:
        credential, clusters, proxy = group.credential, self._clusters, self._proxy
        if credential is None or clusters is None or proxy is None:
            return  # nothing to write with yet; the reason was logged when it failed
        if group.revoked:
            # The bot was deleted in Teleport: write nothing more, keep what was written.
            return
        now = self._clock.wall()
        if credential.expires <= now:
            # Never write a credential that no longer works; existing secrets stay as they are.
            logger.bind(services=self._names(group)).error(
                "credential expired and could not be renewed; not writing"
            )
            return
        plan = self._plan(group, credential, proxy, clusters, complete=self._listing_error is None)
        if renewal and spread and group.ledger.window and not group.learned:
            # The first renewal of this process: what do the secrets hold already? Those with a
            # valid credential wait for their slot, as after any renewal.
            changed = group.ledger.learn(plan, self._read_held(plan.secrets))
            group.learned = True
            if changed:
                self._rewrite_keeping_credentials(
                    group, changed, proxy=proxy, clusters=clusters, budget=budget
                )
        if renewal:
            work: CyclePlan | None = group.ledger.renewal_work(plan, spread=spread)
        else:
            work = group.ledger.discovery_work(plan)
        if work is None:
            self._record(group, plan)
            return
        report = apply_plan(
            work, self._sink, metrics=self._metrics, should_stop=self._stopping, budget=budget
        )
        group.ledger.settle(
            work,
            _outcomes(report),
            expires=credential.expires,
        )
        self._record(group, plan)
        logger.bind(services=self._names(group)).info(
            "sync {}",
            "finished" if report.complete else "finished with failures",
            kind="renewal" if renewal else "discovery",
            seconds=round(report.seconds, 3),
            **report.outcomes(),
        )

    def _read_held(self, secrets: Sequence[DesiredSecret]) -> dict[SecretKey, Held]:
        """What the secrets already hold, read from a sample first: when none of the sample
        exists this is a first installation, and reading the rest (one request each, every
        answer "not found") would only delay the first writes. Secret names are hashes, so
        the sample is an even draw: if a fraction f of the secrets exists, all of the sample
        is missing with probability (1 - f) ** START_SAMPLE, and the cost is then only that
        those few are rewritten at once instead of in the window."""
        ordered = sorted(secrets, key=lambda s: (s.namespace, s.name))
        sample, rest = ordered[:START_SAMPLE], ordered[START_SAMPLE:]
        held = self._sink.read_held(sample)
        if held and rest:
            held.update(self._sink.read_held(rest))
        return held

    def _rotate(self, group: CredentialGroup) -> None:
        """A rotation tick: render and write only the secrets whose slot came up (a tick
        comes every second or so while a window runs; the whole plan is rendered at
        renewals and discoveries)."""
        credential, clusters, proxy = group.credential, self._clusters, self._proxy
        due = group.ledger.slots_due()
        if credential is None or clusters is None or proxy is None or group.revoked:
            return
        if credential.expires <= self._clock.wall():
            return  # the renewal that failed said why; the next discovery tries again
        names = set(due.values())
        plan = self._plan(
            group, credential, proxy, [c for c in clusters if c.name in names], complete=False
        )
        work = only(plan, set(due))
        report = apply_plan(work, self._sink, metrics=self._metrics, should_stop=self._stopping)
        results = _outcomes(report)
        group.ledger.settle(work, results, expires=credential.expires)
        group.ledger.slots_missed(set(due) - {key for key, _ in results})
        self._published(group.ledger.refresh())
        logger.bind(services=self._names(group)).info(
            "sync {}",
            "finished" if report.complete else "finished with failures",
            kind="rotation",
            seconds=round(report.seconds, 3),
            **report.outcomes(),
        )

    def _rewrite_keeping_credentials(
        self,
        group: CredentialGroup,
        changed: Mapping[SecretKey, Credential],
        *,
        proxy: ProxySettings,
        clusters: list[KubeCluster],
        budget: float | None,
    ) -> None:
        """Write the new content of ``changed`` secrets with the credential each holds: a
        config change (labels, project, namespaces...) reaches Argo CD at once, and the
        credential rotates later, in the window, like every other."""
        by_credential: dict[bytes, list[SecretKey]] = {}
        for key, credential in changed.items():
            by_credential.setdefault(credential.cert_pem, []).append(key)
        for keys in by_credential.values():
            credential = changed[keys[0]]
            # Never a prune from this partial write.
            plan = self._plan(group, credential, proxy, clusters, complete=False)
            work = only(plan, set(keys))
            report = apply_plan(
                work, self._sink, metrics=self._metrics, should_stop=self._stopping, budget=budget
            )
            for key, ok in _outcomes(report):
                if ok:
                    group.ledger.kept(key, credential.expires)
            logger.bind(services=self._names(group)).info(
                "content changed; rewritten with the credential each secret holds",
                **report.outcomes(),
            )

    def _plan(
        self,
        group: CredentialGroup,
        credential: Credential,
        proxy: ProxySettings,
        clusters: list[KubeCluster],
        *,
        complete: bool,
    ) -> CyclePlan:
        """The group's secrets rendered now with ``credential``; pruning only after a
        ``complete`` listing."""
        return plan_cycle(
            self._config,
            proxy=proxy,
            clusters=clusters,
            credential=credential,
            agent_version=self._version,
            now=self._clock.wall(),
            services=group.services,
            listing_complete=complete,
        )

    def _record(self, group: CredentialGroup, plan: CyclePlan) -> None:
        self._published(group.ledger.record(plan))

    def _published(self, view: LedgerView) -> None:
        for service, problems in view.selector_problems.items():
            self._metrics.selectors_unmatched.labels(service=service).set(len(problems))
        self._publish()
        oldest = self.state.oldest_expiry
        if oldest is not None:
            self._metrics.credential_written(oldest)
        self._metrics.rotation_pending.set(self.state.pending)

    def _publish(self) -> None:
        error = self._listing_error
        self.state = AgentState(
            listing_failed=error is not None,
            listing_error=_why(error) if error is not None else "",
            groups=tuple(g.state() for g in self.groups),
        )

    def _names(self, group: CredentialGroup) -> str:
        return ",".join(s.resolved_name() for s in group.services)


def _outcomes(report: CycleReport) -> list[tuple[SecretKey, bool]]:
    """(secret, written) for every write of ``report``: what the ledger settles."""
    return [((r.namespace, r.name), r.ok) for s in report.services for r in s.writes]


def _why(exc: SourceError) -> str:
    """A Teleport failure for a person: what kind, then the client's sentence of what to do."""
    return f"{exc.summary}: {exc}"
