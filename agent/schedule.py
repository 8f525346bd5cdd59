"""When to renew, when to retry, and whether the agent is ready.

Each decision is a pure function of the current time and what the agent last did, with the
clock injected, so every rule is tested without sleeping. Purely computational, no side-effects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "Readiness",
    "oldest_held",
    "readiness",
    "renewal_delay",
    "retry_delay",
    "rotation_offsets",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """The wall clock every part of the agent reads unless a test injects its own."""
    return dt.datetime.now(dt.UTC)


# Renew early by up to this fraction of the interval, so several agents started together
# spread their load on Teleport instead of renewing in lockstep.
JITTER_FRACTION = 0.1


def renewal_delay(interval: dt.timedelta, *, rng: random.Random | None = None) -> dt.timedelta:
    """How long after a renewal the next one is due: one interval, less a random jitter of up
    to ``JITTER_FRACTION`` of it. A process that was paused or a clock that jumped is caught by
    the loop, which compares the due time with both the wall and the monotonic clock."""
    return interval * (1 - (rng or random).uniform(0, JITTER_FRACTION))


def retry_delay(
    failures: int,
    *,
    first: dt.timedelta,
    cap: dt.timedelta,
    rng: random.Random | None = None,
) -> dt.timedelta:
    """How long to wait before trying again after ``failures`` consecutive failures.

    Exponential from ``first``, capped at ``cap``, with "full jitter" in its upper half so
    agents that lost Teleport together do not come back in lockstep.
    """
    if failures <= 0:
        return dt.timedelta(0)
    ceiling = min(cap, first * (1 << min(failures - 1, 32)))
    factor: float = (rng or random).uniform(0.5, 1.0)
    return ceiling * factor


SecretKey = tuple[str, str]  # (namespace, name)


def rotation_offsets(
    held: Mapping[SecretKey, dt.datetime],
    *,
    now: dt.datetime,
    window: dt.timedelta,
) -> dict[SecretKey, dt.timedelta]:
    """When, after a renewal, each secret that still holds a valid older credential gets the
    new one: spread evenly over ``window``.

    Every credential change makes Argo CD drop and rebuild that cluster's cache, so rewriting
    all secrets at once is a burst of rebuilds; spread over the window the same work arrives a
    little at a time. The order is by a hash of the secret's name, so a cluster lands at about
    the same offset every renewal and Argo CD's own relist timers stay spread as well. A secret
    whose old credential would not outlive its slot (Teleport granted a shorter life than
    configured) moves forward to half of the life it has left.

    ``held`` maps (namespace, name) to the expiry of the credential each secret holds now.
    """
    order = sorted(held, key=lambda key: hashlib.sha256("/".join(key).encode()).digest())
    count = len(order)
    offsets: dict[SecretKey, dt.timedelta] = {}
    for index, key in enumerate(order):
        slot = window * index / count
        left = held[key] - now
        offsets[key] = max(dt.timedelta(0), min(slot, left / 2))
    return offsets


def oldest_held(held: Iterable[dt.datetime]) -> dt.datetime | None:
    """The expiry of the oldest credential still in any secret (None when none was written)."""
    return min(held, default=None)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]
    # Worth an operator's attention, but the agent is doing its job (a selector matched nothing).
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ready else "degraded",
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
        }


def readiness(
    *,
    now: dt.datetime,
    credential_expires: dt.datetime | None,
    renewal_interval: dt.timedelta,
    selector_problems: Mapping[str, Mapping[str, str]],
    failed_writes: Mapping[str, int],
) -> Readiness:
    """Ready when the newest written credential outlives one more renewal interval and the last
    cycle wrote every secret. A selector that matched nothing is a warning, not a reason: the
    cluster may simply not be registered yet, and a pod that never turns ready blocks
    ``helm install --wait`` and keeps an Argo CD Application unhealthy. It turns true again by
    itself when the cause goes away, because it is recomputed from the current state each time.
    """
    reasons: list[str] = []
    warnings: list[str] = []
    if credential_expires is None:
        reasons.append("no credential has been written yet")
    elif credential_expires - now <= renewal_interval:
        left = max(0, int((credential_expires - now).total_seconds()))
        reasons.append(f"credential expires in {left}s, within one renewal interval")
    for service, problems in sorted(selector_problems.items()):
        for selector, problem in sorted(problems.items()):
            warnings.append(f"service {service}: selector {selector} {problem}")
    for service, count in sorted(failed_writes.items()):
        if count:
            reasons.append(f"service {service}: {count} secret(s) failed to write")
    return Readiness(not reasons, tuple(reasons), tuple(warnings))
