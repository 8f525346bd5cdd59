"""What became of each write and prune, and what a secret held before: the writer reports
them, the loop reads them.

Purely computational, no side-effects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from agent.teleport.model import Credential

__all__ = ["Held", "Outcome", "PruneResult", "WriteResult"]


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    ERROR = "error"


@dataclass(frozen=True)
class WriteResult:
    namespace: str
    name: str
    cluster: str
    outcome: Outcome
    detail: str = ""
    # Foreign field managers behind a conflict, or the adopted ones after a forced apply.
    managers: tuple[str, ...] = ()
    # The API server could not be reached (or was not tried because it could not be).
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED)


@dataclass(frozen=True)
class PruneResult:
    namespace: str
    deleted: tuple[str, ...]
    skipped_reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class Held:
    """What one of the agent's own secrets holds, as read at start: a hint for the rotation
    window, never trusted for more (a secret found holding nothing usable is written at once)."""

    # The expiry of the credential in it (its credential-expires annotation), if readable.
    expires: dt.datetime | None
    # Its content but for the credential and the write time (``argocd.shape_of``).
    shape: int | None
    # The credential in it, when it reads as one: a secret whose other content changed is
    # rewritten with it, so the change costs no credential rotation.
    credential: Credential | None = field(default=None, repr=False)
