"""What became of each write and prune: the results the writer reports and the loop reads.

Purely computational, no side-effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Outcome", "PruneResult", "WriteResult"]


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
