"""The daemon: a loop that asks the keeper (agent/keeper.py) to do what is due, then sleeps.

It sleeps on a self-pipe that signals and other threads can wake without taking a lock
(agent/wakeup.py). SIGUSR1 makes everything due now and writes every secret at once;
SIGTERM/SIGINT stop the loop: writes in flight finish, the rest are skipped (they keep their
older, still valid credential), so no secret is ever half-written.

The loop never hangs on one step: each has a time budget for its writes (the writer also gives
up on an unreachable API server after a run of failed connections), an unexpected exception in
a step is logged and retried with backoff instead of ending the daemon, and ``liveness`` turns
false when the loop has not come round within its sleep plus that budget, so /livez gets a
stuck process restarted.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from agent.diagnostics import DiagnosticsServer, Metrics
from agent.keeper import RETRY_CAP, RETRY_FIRST, Keeper
from agent.logs import logger
from agent.ports import Parts
from agent.rotation import Clock
from agent.schedule import Readiness, retry_delay, utcnow
from agent.wakeup import Wakeup

__all__ = ["Runtime", "serve"]

# Longest single sleep: the loop looks at the wall clock at least this often, so a suspended
# machine or a clock jump is noticed within seconds rather than after a whole interval.
MAX_SLEEP = dt.timedelta(seconds=5)
# Writes of one step that have not started within this budget are skipped and retried at the
# next discovery: a slow or unreachable API server cannot hold renewal and discovery hostage.
CYCLE_BUDGET = dt.timedelta(minutes=2)
# Beyond the budget, what a step may spend on Teleport requests and rendering before the loop is
# considered stuck (/livez fails and Kubernetes restarts the pod).
LIVENESS_GRACE = dt.timedelta(minutes=3)


class Runtime:
    """The loop, its signals and its heartbeat; ``run`` is the daemon, ``run_once`` one cycle."""

    def __init__(
        self,
        parts: Parts,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cycle_budget: dt.timedelta = CYCLE_BUDGET,
        liveness_grace: dt.timedelta = LIVENESS_GRACE,
    ) -> None:
        self._config = parts.config
        self.metrics = metrics or Metrics(clock)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._wakeup = Wakeup()
        self._keeper = Keeper(
            parts,
            metrics=self.metrics,
            clock=Clock(clock, monotonic),
            rng=self._rng,
            should_stop=self._stopping,
        )
        self._cycle_budget = cycle_budget.total_seconds()
        self._stuck_after = (cycle_budget + liveness_grace).total_seconds()
        # Monotonic time by which the loop must come round again, read by /livez. A float
        # assignment needs no lock; the first step gets the same allowance as any other.
        self._live_until = time.monotonic() + self._stuck_after
        self._step_failures = 0

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

    def readiness(self) -> Readiness:
        """From the last published state (an immutable snapshot): safe from any thread."""
        return self._keeper.state.readiness(self._clock())

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``request_stop`` or a stop signal."""
        logger.info(
            "agent started",
            services=len(self._config.services),
            credentials=len(self._keeper.groups),
            discovery_interval=self._keeper.discovery_interval.total_seconds(),
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
        return self._keeper.state.complete

    def step(self, *, forced: bool = False) -> None:
        """Do whatever is due now: renewals, a discovery, and the writes they call for."""
        self._keeper.step(forced=forced, budget=self._cycle_budget)

    def _sleep_seconds(self) -> float:
        return min(MAX_SLEEP.total_seconds(), self._keeper.next_wakeup())

    def _stopping(self) -> bool:
        return self._wakeup.stop_requested


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
