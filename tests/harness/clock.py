"""A clock the test moves by hand, for the pure rotation ledger and the keeper's loop steps."""

from __future__ import annotations

import datetime as dt

from agent.rotation import Clock

START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


class FakeClock:
    """Wall time from ``START`` and a monotonic reading, both moved only by ``advance``."""

    def __init__(self) -> None:
        self.now = START
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds

    def clock(self) -> Clock:
        return Clock(lambda: self.now, lambda: self.mono)
