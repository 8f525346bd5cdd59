"""What the daemon knows, as an immutable snapshot: readiness and ``--oneshot``'s verdict.

The loop publishes a new snapshot after every step (one reference assignment); the diagnostics
thread reads whichever is current and never sees one half-built. Purely computational, no
side-effects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from agent.rotation import LedgerView
from agent.schedule import Readiness, readiness

__all__ = ["AgentState", "GroupState"]


@dataclass(frozen=True)
class GroupState:
    """One credential group: its renewals and its secrets."""

    has_credential: bool = False
    # Renewals failed in a row, and the last failure for a person (empty when none).
    failures: int = 0
    renewal_error: str = ""
    # The renewal interval in force (shorter than configured when Teleport capped the lifetime).
    interval: dt.timedelta = dt.timedelta(0)
    secrets: LedgerView = field(default_factory=LedgerView)


@dataclass(frozen=True)
class AgentState:
    # The last cluster listing failed, and why (for a person).
    listing_failed: bool = False
    listing_error: str = ""
    groups: tuple[GroupState, ...] = ()

    def readiness(self, now: dt.datetime) -> Readiness:
        """Ready when the oldest credential in any secret outlives one more renewal interval,
        the last listing worked and every selected cluster was written; selectors that matched
        nothing are warnings."""
        reasons: list[str] = []
        warnings: list[str] = []
        if self.listing_failed:
            reasons.append(
                "the last cluster listing from Teleport failed"
                + (f": {self.listing_error}" if self.listing_error else "")
            )
        for group in self.groups:
            if group.failures:
                reasons.append(
                    f"renewing the credential failed {group.failures} time(s) in a row: "
                    f"{group.renewal_error}"
                )
            state = readiness(
                now=now,
                credential_expires=group.secrets.oldest_expiry,
                renewal_interval=group.interval,
                selector_problems=group.secrets.selector_problems,
                failed_writes=group.secrets.failed_writes,
            )
            reasons += [r for r in state.reasons if r not in reasons]
            warnings += [w for w in state.warnings if w not in warnings]
        return Readiness(not reasons, tuple(reasons), tuple(warnings))

    @property
    def complete(self) -> bool:
        """Every selected cluster written, the listing worked and every selector matched."""
        return not self.listing_failed and all(
            g.has_credential
            and g.failures == 0
            and not any(g.secrets.failed_writes.values())
            and not any(g.secrets.selector_problems.values())
            for g in self.groups
        )

    @property
    def oldest_expiry(self) -> dt.datetime | None:
        """The oldest credential in any secret, once every group has written one."""
        expiries = [g.secrets.oldest_expiry for g in self.groups]
        if not expiries or any(e is None for e in expiries):
            return None
        return min(e for e in expiries if e is not None)

    @property
    def pending(self) -> int:
        return sum(g.secrets.pending for g in self.groups)
