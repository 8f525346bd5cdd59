"""The rotation ledger: what each secret of one credential group holds, and what to write now.

Every credential change makes Argo CD rebuild that cluster's cache, so a renewal does not
rewrite every secret at once: secrets that still hold a valid older credential wait for their
slot in the rotation window (``schedule.rotation_offsets``), the others (new clusters, failed
writes, secrets found holding nothing usable at start) are written at once. What the secrets
hold is read once when the process starts (``learn``), so a restart or an upgrade spreads its
rewrites like any renewal. Between renewals a
discovery writes only what changed: a new cluster, a failed write, a slot that came up, a
secret whose rendered content differs from what it holds.

The ledger is owned by the daemon's loop and changed only there; readiness and metrics read
``snapshot()``, an immutable copy, so no other thread ever sees it half-updated. Purely
computational, no side-effects: the wall and monotonic clocks are injected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from agent.argocd import DesiredSecret, shape_of
from agent.labels import ANNOTATION_UPDATED
from agent.plan import CyclePlan
from agent.schedule import oldest_held, rotation_offsets
from agent.teleport.model import Credential
from agent.writes import Held

__all__ = ["Clock", "Ledger", "LedgerView", "SecretKey", "content_of", "key_of", "only"]

SecretKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Clock:
    """The wall clock (credential expiries) and the monotonic one (slots in the window)."""

    wall: Callable[[], dt.datetime]
    monotonic: Callable[[], float]


def key_of(secret: DesiredSecret) -> SecretKey:
    return (secret.namespace, secret.name)


def content_of(secret: DesiredSecret) -> int:
    """What a secret holds, but for its write time (which alone never warrants a write)."""
    annotations = {k: v for k, v in secret.annotations.items() if k != ANNOTATION_UPDATED}
    return hash(
        (
            tuple(sorted(secret.labels.items())),
            tuple(sorted(annotations.items())),
            tuple(sorted(secret.data.items())),
        )
    )


@dataclass(frozen=True)
class LedgerView:
    """An immutable snapshot of a ledger, for readiness and metrics on any thread."""

    # Expiry of the oldest credential still in any secret the group wants (None: none written).
    oldest_expiry: dt.datetime | None = None
    pending: int = 0
    # service -> selector description -> problem (a readiness warning)
    selector_problems: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # service -> secrets the last plan wanted that hold no valid credential, plus render errors
    # and duplicates (a readiness reason)
    failed_writes: Mapping[str, int] = field(default_factory=dict)


class Ledger:
    """The secrets of one credential group: held credential, content, slot in the window."""

    def __init__(self, window: dt.timedelta, clock: Clock) -> None:
        self.window = window
        self._clock = clock
        # Secrets that hold the current credential; cleared by ``renewed``.
        self._current: set[SecretKey] = set()
        # What each secret written by this process holds (``content_of``).
        self._contents: dict[SecretKey, int] = {}
        # The expiry of the credential each secret written by this process holds.
        self._held: dict[SecretKey, dt.datetime] = {}
        # Secrets waiting for their slot in the rotation window: monotonic time they are due.
        self._pending: dict[SecretKey, float] = {}
        # Secrets the last plan wanted (to notice clusters that dropped out between renewals),
        # each with the cluster it is for: a slot renders only its own secret.
        self._cluster_of: dict[SecretKey, str] = {}
        # Per service of the last plan: its secrets, and its render errors plus duplicates.
        self._wanted: tuple[tuple[str, frozenset[SecretKey], int], ...] = ()
        self._view = LedgerView()

    # -- what to write --------------------------------------------------------------------

    def renewed(self) -> None:
        """A new credential was issued: no secret holds it yet."""
        self._current.clear()

    def learn(self, plan: CyclePlan, held: Mapping[SecretKey, Held]) -> dict[SecretKey, Credential]:
        """Take what the secrets hold (read once, at start) as a hint: a secret of the shape
        the plan renders whose credential outlives the window counts as holding it, so the
        next renewal gives it a slot in the window. Every other secret (missing, someone
        else's, unreadable, expiring within the window, changed) holds nothing usable and is
        written at once.

        Returns the changed secrets whose own credential outlives the window: rewritten with
        that credential (``kept``), their change costs no rotation."""
        horizon = self._clock.wall() + self.window
        changed: dict[SecretKey, Credential] = {}
        for secret in plan.secrets:
            key, found = key_of(secret), held.get(key_of(secret))
            if found is None or found.expires is None or found.expires <= horizon:
                continue
            if found.shape is not None and found.shape == shape_of(secret):
                self._held[key] = found.expires
            elif found.credential is not None:
                changed[key] = found.credential
        return changed

    def kept(self, key: SecretKey, expires: dt.datetime) -> None:
        """``key`` was rewritten with the credential it held, which expires then."""
        self._held[key] = expires

    def renewal_work(self, plan: CyclePlan, *, spread: bool = True) -> CyclePlan:
        """After a renewal: every secret of ``plan`` but those that still hold a valid older
        credential, which get a slot in the window instead (none when ``spread`` is false);
        pruning as the plan asks."""
        now, mono = self._clock.wall(), self._clock.monotonic()
        desired = {key_of(s) for s in plan.secrets}
        holding = {k: v for k, v in self._held.items() if k in desired and v > now}
        window = self.window if spread else dt.timedelta(0)
        offsets = rotation_offsets(holding, now=now, window=window) if window else {}
        self._pending = {k: mono + o.total_seconds() for k, o in offsets.items() if o}
        return _without(plan, set(self._pending), prune=True)

    def discovery_work(self, plan: CyclePlan) -> CyclePlan | None:
        """Between renewals: the secrets of ``plan`` that do not hold the current credential
        and content and are not waiting for a slot still to come; pruning only when a secret
        the last plan wanted dropped out. None when there is nothing to do."""
        mono = self._clock.monotonic()
        waiting = {k for k, due in self._pending.items() if due > mono}
        unchanged = {
            key_of(s) for s in plan.secrets if self._contents.get(key_of(s)) == content_of(s)
        }
        desired = frozenset(key_of(s) for s in plan.secrets)
        dropped = self._cluster_of.keys() - desired
        work = _without(plan, (self._current & unchanged) | waiting, prune=bool(dropped))
        if not work.secrets and not any(s.prune for s in work.services):
            return None
        return work

    def rotation_due(self) -> bool:
        """A secret's slot in the window came up."""
        mono = self._clock.monotonic()
        return any(due <= mono for due in self._pending.values())

    def slots_due(self) -> dict[SecretKey, str]:
        """The secrets whose slot came up, each with the cluster it is for: a rotation tick
        renders and writes only these, not the whole plan."""
        mono = self._clock.monotonic()
        return {k: self._cluster_of[k] for k, due in self._pending.items() if due <= mono}

    def slots_missed(self, keys: Iterable[SecretKey]) -> None:
        """Slots that came up but had nothing to write (the secret no longer renders): they
        leave the window, and the next discovery writes whatever the secret then needs."""
        for key in keys:
            self._pending.pop(key, None)
            self._current.discard(key)

    def next_slot(self) -> float | None:
        """Monotonic time of the next slot in the window, if any secret waits for one."""
        return min(self._pending.values(), default=None)

    # -- what happened --------------------------------------------------------------------

    def settle(
        self,
        work: CyclePlan,
        results: Iterable[tuple[SecretKey, bool]],
        *,
        expires: dt.datetime,
    ) -> None:
        """Take in the outcome of writing ``work`` with a credential that ``expires``: each
        result is (secret, written). A secret whose write failed holds what it held before."""
        sent = {key_of(s): s for s in work.secrets}
        for key, ok in results:
            self._pending.pop(key, None)
            if ok:
                self._current.add(key)
                self._held[key] = expires
                if key in sent:
                    self._contents[key] = content_of(sent[key])
            else:
                self._current.discard(key)

    def record(self, plan: CyclePlan) -> LedgerView:
        """Remember what the full plan wanted (forgetting secrets it no longer wants) and
        publish a new snapshot."""
        desired = frozenset(key_of(s) for s in plan.secrets)
        self._cluster_of = {key_of(s): s.cluster for s in plan.secrets}
        self._wanted = tuple(
            (
                service.name,
                frozenset(key_of(s) for s in service.secrets),
                len(service.render_errors) + len(service.duplicates),
            )
            for service in plan.services
        )
        self._held = {k: v for k, v in self._held.items() if k in desired}
        self._contents = {k: v for k, v in self._contents.items() if k in desired}
        self._pending = {k: v for k, v in self._pending.items() if k in desired}
        return self._publish({s.name: dict(s.selector_problems) for s in plan.services})

    def refresh(self) -> LedgerView:
        """Publish a new snapshot after writes of a part of the plan (a rotation tick),
        keeping what the last full plan wanted."""
        return self._publish(self._view.selector_problems)

    def _publish(self, selector_problems: Mapping[str, Mapping[str, str]]) -> LedgerView:
        failed = {
            # A secret waiting for its slot holds a valid credential: not missing.
            name: sum(k not in self._current and k not in self._pending for k in keys) + errors
            for name, keys, errors in self._wanted
        }
        self._view = LedgerView(
            oldest_expiry=oldest_held(self._held.values()),
            pending=len(self._pending),
            selector_problems=selector_problems,
            failed_writes=failed,
        )
        return self._view

    def snapshot(self) -> LedgerView:
        return self._view


def _without(plan: CyclePlan, skip: set[SecretKey], *, prune: bool) -> CyclePlan:
    """``plan`` but for the secrets in ``skip``, and without its prune unless ``prune``."""
    return _select(plan, lambda key: key not in skip, prune=prune)


def only(plan: CyclePlan, keep: set[SecretKey]) -> CyclePlan:
    """``plan`` with only the secrets in ``keep`` and no prune."""
    return _select(plan, lambda key: key in keep, prune=False)


def _select(plan: CyclePlan, wanted: Callable[[SecretKey], bool], *, prune: bool) -> CyclePlan:
    return CyclePlan(
        tuple(
            replace(
                service,
                secrets=tuple(s for s in service.secrets if wanted(key_of(s))),
                prune=service.prune if prune else None,
            )
            for service in plan.services
        )
    )
