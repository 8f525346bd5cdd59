"""Rolling rotation against real Argo CD: every renewal all at once (SIGUSR1) beside the same
renewal spread over ``rotation_window`` (the scheduled renewal), alternated in one run, for each
window asked for (by default 60 s, the window of the issue's own measurement, and 5 min, the
agent's default for the default 1 h / 20 m).

Argo CD (application controller, repo-server, ApplicationSet controller) runs against the
management API server; an ApplicationSet with a cluster generator makes one Application per
cluster secret the agent writes, each syncing one ConfigMap into a namespace of its own through
the Teleport stand-in to the one shared upstream API server. Every credential change makes Argo
CD drop that cluster's cache and rebuild it (discovery, a list and a watch of every type).

After each window's pairs, a restart phase: the agent stopped (SIGTERM) and started again with
the previous process's secrets in place, as an upgrade, a config change or a node drain does.

Measured per phase: the application controller's peak CPU over 5 s windows (utime + stime from
/proc/<pid>/stat) and its peak RSS (VmRSS sampled every second), the peak number of requests on
the stand-in's Kubernetes route in 5 s (its request log; a request is logged when it ends, so a
watch counts when the rebuild cancels it), each cluster's cache rebuild time (gitops-engine's
"Cluster successfully synced" line with its total_ms), and whether every Application stayed
Synced and Healthy (polled every 2 s).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import re
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from agent.schedule import JITTER_FRACTION
from tests.bench.teleport_path import BenchAgent, event_time, fleet, stop, wait_event
from tests.harness.agent_e2e import AgentDaemon
from tests.harness.argocd import GROUP, VERSION, ArgoCD, argocd, config_map_manifest
from tests.harness.kube import ControlPlane, control_plane
from tests.harness.procfs import cpu_seconds, status_kib
from tests.harness.standin import StandIn, kube_cluster_doc, standin

CONTROLLER = "argocd-application-controller"
LABELS = {"bench": "rotation"}
# Argo CD restarts (and relists) every watch of a cluster cache after this long; a rebuild
# restarts them (clusterCacheWatchResyncDuration, controller/cache/cache.go, v3.6.1).
WATCH_RESYNC_S = 600
# gitops-engine's line when a cluster cache sync ends (pkg/cache/cluster.go, v3.6.1).
SYNCED = re.compile(r'msg="Cluster successfully synced".*?total_ms=(\d+)')


@dataclass
class Sample:
    mono: float
    cpu_s: float  # controller utime + stime so far
    rss_kib: int
    apps_healthy: int | None = None  # Synced and Healthy Applications, when polled


@dataclass
class Sampler:
    """A thread sampling the controller every second and the Applications every two."""

    pid: int
    api: k8s.ApiClient
    namespace: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(1.0 - (time.monotonic() % 1.0)):
            cpu, rss = cpu_seconds(self.pid), status_kib(self.pid, "VmRSS")
            healthy = self._healthy() if tick % 2 == 0 else None
            self.samples.append(Sample(time.monotonic(), cpu, rss, healthy))
            tick += 1

    def _healthy(self) -> int | None:
        try:
            listing: Any = k8s.CustomObjectsApi(self.api).list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "applications"
            )
        except Exception:  # a missed poll is a gap, not a failure of the run
            return None
        return _count_healthy(listing)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.mono <= end]


def peak_cpu(samples: Sequence[Sample], window: float = 5.0) -> float:
    """Highest CPU (cores) over any ``window`` seconds between two samples."""
    best = 0.0
    for i, first in enumerate(samples):
        for last in samples[i + 1 :]:
            if last.mono - first.mono >= window - 0.2:
                best = max(best, (last.cpu_s - first.cpu_s) / (last.mono - first.mono))
                break
    return best


def mean_cpu(samples: Sequence[Sample]) -> float:
    """Average CPU (cores) from the first sample to the last."""
    if len(samples) < 2 or samples[-1].mono <= samples[0].mono:
        return 0.0
    return (samples[-1].cpu_s - samples[0].cpu_s) / (samples[-1].mono - samples[0].mono)


def peak_rate(times: Sequence[float], window: float = 5.0) -> int:
    """Most events in any ``window`` seconds."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def _epoch(stamp: str) -> float:
    # Go writes up to nine fractional digits; Python 3.11 reads at most six.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(trimmed).timestamp()


@dataclass
class Phase:
    kind: str  # "all at once" or "spread"
    start: float  # monotonic
    end: float
    writes: int
    write_span_s: float  # first to last secret written in the phase
    log_offset: int
    log_end: int = 0
    requests: list[float] = field(default_factory=list)  # epoch times on the kube route
    log_truncated: bool = False


@dataclass
class Result:
    kind: str
    cpu_peak: float
    cpu_idle: float  # the controller's own background load in the 10 s before the phase
    rss_peak_mib: float
    requests_peak_5s: int
    requests_total: int
    rebuilds: int
    rebuild_median_s: float
    rebuild_max_s: float
    healthy_min: int
    apps: int
    write_span_s: float
    log_truncated: bool

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextmanager
def environment(workdir: Path) -> Iterator[tuple[ControlPlane, ControlPlane, ArgoCD]]:
    with (
        control_plane(workdir / "management") as kube,
        control_plane(workdir / "target") as target,
        argocd(kube, workdir / "argocd") as argo,
    ):
        yield kube, target, argo


def run(clusters: int, windows: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The whole rotation benchmark, one Argo CD for all of it: for each (window, rounds), the
    agent (re)started with that ``rotation_window`` and ``rounds`` pairs of phases; then, under
    the last agent, the new-cluster path. Returns the phases of each window and the new-cluster
    numbers."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-rotation-"))
    names = [f"c-{i:03d}" for i in range(clusters)]
    with environment(workdir) as (kube, target, argo), standin(fleet(names, target, LABELS)) as s:
        print(f"Argo CD up in {argo.startup_seconds:.0f}s; {clusters} clusters", flush=True)
        admin = kube.admin_client()
        agent = BenchAgent(kube, admin, s, secret_namespace=argo.namespace)
        assert argo.repo is not None
        argo.repo.commit({"bench/cm.yaml": config_map_manifest("bench", {"what": "rotation"})})
        argo.cluster_generator_set("rot", selector=LABELS, path="bench", namespace="app-{{name}}")
        proc = argo.processes[CONTROLLER].popen
        assert proc is not None
        sampler = Sampler(proc.pid, admin, argo.namespace)
        measured: list[dict[str, Any]] = []
        added: dict[str, float] = {}
        try:
            for index, (window, rounds) in enumerate(windows):
                daemon = _start_agent(agent, window)
                try:
                    seen = _settled_start(
                        daemon, sampler, argo, admin, clusters=clusters, window=window
                    )
                    phases: list[Phase] = []
                    for kind in ("all at once", "spread") * rounds:
                        phase, seen = _phase(
                            kind,
                            daemon=daemon,
                            seen=seen,
                            teleport=s,
                            argo=argo,
                            window=window,
                            clusters=clusters,
                        )
                        phases.append(phase)
                        print(
                            f"window {window}s, {kind}: {phase.writes} writes over "
                            f"{phase.write_span_s:.1f}s",
                            flush=True,
                        )
                        _settle(sampler)
                    # A restart (upgrade, crash, drain) with the previous process's secrets in
                    # place: its first cycle reads what they hold and spreads the rewrites.
                    phase, daemon, seen = _restart_phase(
                        agent, daemon, teleport=s, argo=argo, window=window, clusters=clusters
                    )
                    phases.append(phase)
                    print(
                        f"window {window}s, restart: {phase.writes} writes over "
                        f"{phase.write_span_s:.1f}s",
                        flush=True,
                    )
                    _settle(sampler)
                    results = [_result(p, sampler, argo, clusters).row() for p in phases]
                    measured.append({"window_s": window, "phases": results})
                    if index == len(windows) - 1:
                        added = _new_cluster(daemon, seen, s, argo, target)
                finally:
                    stop(daemon)
        finally:
            sampler.stop()
            admin.close()  # type: ignore[no-untyped-call]
    return {"windows": measured, "new_cluster": added}


def _settled_start(
    daemon: AgentDaemon,
    sampler: Sampler,
    argo: ArgoCD,
    admin: k8s.ApiClient,
    *,
    clusters: int,
    window: int,
) -> int:
    """Wait out a fresh agent's first cycle, which writes every secret at once (it cannot read
    what they hold), until every Application is Synced and Healthy and the controller has
    settled. Returns the index of the next agent event to look at."""
    _, seen = wait_event(daemon, "sync finished", after=0, timeout=300)
    started = time.monotonic()
    argo.wait_for(
        lambda: _all_synced(admin, argo.namespace, clusters),
        f"{clusters} Applications",
        timeout=900,
    )
    print(
        f"window {window}s: all {clusters} Applications Synced/Healthy after "
        f"{time.monotonic() - started:.0f}s",
        flush=True,
    )
    _settle(sampler)
    return seen


def renewal_interval_for(window: int) -> int:
    """The agent's renewal interval (seconds) for a phase pair with ``window``.

    The window may be at most half of the shorter of the renewal interval and ttl - interval
    (agent/config.py); the interval also leaves room for the all-at-once phase (the window plus
    30 s) and the settling after it. And the spread phase, which begins at the scheduled
    renewal (up to JITTER_FRACTION early), must stay clear of the wave of relists that the
    all-at-once phase set up: every rebuild restarts the cluster's watches, which Argo CD
    relists after WATCH_RESYNC_S, so all 30 relist together then. That wave is the cost of
    writing all at once; measured inside the spread phase it would be charged to the spread.
    """
    earliest = 1 - JITTER_FRACTION  # of the interval: the renewal's earliest moment
    interval = max(2 * window, window + 150)
    first, last = earliest * interval, interval + window + 30  # when the spread phase can run
    if first < WATCH_RESYNC_S + 60 and last > WATCH_RESYNC_S:
        interval = max(interval, math.ceil((WATCH_RESYNC_S + 60) / earliest))
    return interval


def _start_agent(agent: BenchAgent, window: int) -> AgentDaemon:
    """The agent with ``rotation_window`` = ``window``, renewing on its own schedule; a restart
    continues from the bot identity it stored."""
    interval = renewal_interval_for(window)
    agent.configure(
        {
            "selectors": [{"labels": LABELS}],
            "secret_labels": LABELS,
            "discovery_interval": "5s",
        },
        credential_ttl=f"{2 * interval + 60}s",
        renewal_interval=f"{interval}s",
        rotation_window=f"{window}s",
    )
    daemon, _ = agent.start()
    return daemon


def _count_healthy(listing: Any) -> int:
    """Applications in a listing that are Synced and Healthy."""
    return sum(
        item.get("status", {}).get("sync", {}).get("status") == "Synced"
        and item.get("status", {}).get("health", {}).get("status") == "Healthy"
        for item in listing["items"]
    )


def _all_synced(api: k8s.ApiClient, namespace: str, count: int) -> bool | None:
    listing: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "applications"
    )
    return True if _count_healthy(listing) >= count else None


def _settle(sampler: Sampler, limit: float = 120.0) -> None:
    """Wait until the controller has been nearly idle for 10 s (or ``limit`` passed), so one
    phase's tail does not land in the next."""
    deadline = time.monotonic() + limit
    time.sleep(10)
    while time.monotonic() < deadline:
        recent = sampler.between(time.monotonic() - 10, time.monotonic())
        if len(recent) >= 5 and peak_cpu(recent) < 0.15:
            return
        time.sleep(2)


def _issued(daemon: AgentDaemon, seen: int, *, timeout: float) -> tuple[float, float, int]:
    """The next "credential issued" past event ``seen``: its time as a monotonic and an epoch
    time, and its index."""
    issued, seen = wait_event(daemon, "credential issued", after=seen, timeout=timeout)
    start_epoch = event_time(issued)
    return time.monotonic() - max(0.0, time.time() - start_epoch), start_epoch, seen


def _writes(
    daemon: AgentDaemon, seen: int, *, clusters: int, timeout: float, counted: Sequence[str]
) -> tuple[int, float, int]:
    """Follow the syncs past event ``seen`` until ``clusters`` secrets were written (the
    ``counted`` fields of "sync finished"); returns the writes, the time from the first writing
    sync to the last, and the index of the last event read."""
    writes, first, last = 0, 0.0, 0.0
    while writes < clusters:
        done, seen = wait_event(daemon, "sync finished", after=seen, timeout=timeout)
        count = sum(int(done.get(name, 0)) for name in counted)
        if count:
            first = first or event_time(done)
            last = event_time(done)
            writes += count
    return writes, last - first, seen


def _phase(
    kind: str,
    *,
    daemon: AgentDaemon,
    seen: int,
    teleport: StandIn,
    argo: ArgoCD,
    window: int,
    clusters: int,
) -> tuple[Phase, int]:
    teleport.admin("DELETE", "/v1/log")
    log = argo.processes[CONTROLLER].log_path
    offset = log.stat().st_size
    start, start_epoch = time.monotonic(), time.time()
    if kind == "all at once":
        # SIGUSR1 renews and writes every secret now, by design.
        daemon.proc.send_signal(signal.SIGUSR1)
        done, seen = wait_event(daemon, "sync finished", after=seen, timeout=120, kind="renewal")
        writes, span = int(done.get("updated", 0)), 0.0
    else:
        # The scheduled renewal issues the credential, then rewrites the secrets one slot at a
        # time over the window (the renewal's own sync writes none of them).
        start, start_epoch, seen = _issued(daemon, seen, timeout=6 * window)
        offset = log.stat().st_size  # no slot has come up yet: the first is a tick away at least
        writes, span, seen = _writes(
            daemon, seen, clusters=clusters, timeout=2 * window, counted=("updated",)
        )
    phase = _finish(
        kind,
        start=start,
        start_epoch=start_epoch,
        writes=writes,
        span=span,
        offset=offset,
        teleport=teleport,
        argo=argo,
        window=window,
    )
    return phase, seen


def _restart_phase(
    agent: BenchAgent,
    daemon: AgentDaemon,
    *,
    teleport: StandIn,
    argo: ArgoCD,
    window: int,
    clusters: int,
) -> tuple[Phase, AgentDaemon, int]:
    """Stop the agent (SIGTERM) and start a new process with the same config; measured from
    its first credential until every secret holds the new one."""
    stop(daemon)
    teleport.admin("DELETE", "/v1/log")
    offset = argo.processes[CONTROLLER].log_path.stat().st_size
    daemon, _ = agent.start()
    start, start_epoch, seen = _issued(daemon, 0, timeout=120)
    writes, span, seen = _writes(
        daemon, seen, clusters=clusters, timeout=2 * window + 60, counted=("updated", "created")
    )
    phase = _finish(
        "restart",
        start=start,
        start_epoch=start_epoch,
        writes=writes,
        span=span,
        offset=offset,
        teleport=teleport,
        argo=argo,
        window=window,
    )
    return phase, daemon, seen


def _finish(
    kind: str,
    *,
    start: float,
    start_epoch: float,
    writes: int,
    span: float,
    offset: int,
    teleport: StandIn,
    argo: ArgoCD,
    window: int,
) -> Phase:
    """Wait out the phase's tail (the window and 30 s), then collect what it cost."""
    log = argo.processes[CONTROLLER].log_path
    end = max(time.monotonic(), start + window) + 30
    while time.monotonic() < end:
        time.sleep(1)
    entries = teleport.request_log()
    # Only what ended after the phase began: the log also holds the wait for the scheduled
    # renewal, where Argo CD's own relists of an earlier phase may fall.
    requests = [
        t
        for t in (_epoch(str(e["time"])) for e in entries if e.get("route") == "kube")
        if t >= start_epoch
    ]
    return Phase(
        kind,
        start,
        time.monotonic(),
        writes,
        span,
        offset,
        log.stat().st_size,
        requests,
        len(entries) >= 10_000,  # the stand-in keeps the last 10,000 entries
    )


def _result(phase: Phase, sampler: Sampler, argo: ArgoCD, clusters: int) -> Result:
    samples = sampler.between(phase.start, phase.end)
    with argo.processes[CONTROLLER].log_path.open("rb") as f:
        f.seek(phase.log_offset)
        text = f.read(phase.log_end - phase.log_offset).decode(errors="replace")
    rebuilds = [int(m.group(1)) / 1000 for m in SYNCED.finditer(text)]
    healthy = [s.apps_healthy for s in samples if s.apps_healthy is not None]
    return Result(
        kind=phase.kind,
        cpu_peak=peak_cpu(samples),
        cpu_idle=mean_cpu(sampler.between(phase.start - 10, phase.start)),
        rss_peak_mib=max((s.rss_kib for s in samples), default=0) / 1024,
        requests_peak_5s=peak_rate(phase.requests),
        requests_total=len(phase.requests),
        rebuilds=len(rebuilds),
        rebuild_median_s=statistics.median(rebuilds) if rebuilds else 0.0,
        rebuild_max_s=max(rebuilds, default=0.0),
        healthy_min=min(healthy, default=-1),
        apps=clusters,
        write_span_s=phase.write_span_s,
        log_truncated=phase.log_truncated,
    )


def _new_cluster(
    daemon: AgentDaemon, seen: int, teleport: StandIn, argo: ArgoCD, target: ControlPlane
) -> dict[str, float]:
    """A cluster added in Teleport: seconds to its secret (the agent's write) and to its
    Application, made by the ApplicationSet, being Synced and Healthy."""
    time.sleep(2.2)  # off the discovery timer's beat
    teleport.create([kube_cluster_doc("c-new", target, labels=LABELS, servers=1)])
    added = time.time()
    event, _ = wait_event(daemon, "sync finished", after=seen, timeout=60, created=1)
    argo.wait_synced("rot-c-new", timeout=300)
    synced = time.time() - added
    result = {"secret_s": event_time(event) - added, "application_synced_s": synced}
    print(
        f"new cluster: secret after {result['secret_s']:.1f}s, Application Synced/Healthy "
        f"after {synced:.1f}s (discovery every 5s)",
        flush=True,
    )
    return result
