"""The agent on the real path: ``start`` with the real Teleport client against the stand-in.

Every Teleport cluster here is a ``standin_kube_cluster`` whose upstream is one shared API server,
so a fleet of 1,000 clusters costs one kube-apiserver. The agent joins with a token, keeps its
bot identity in a Secret, lists the clusters through ListResources paging and writes its Argo CD
cluster secrets as a least-privilege ServiceAccount, as the chart runs it.
"""

from __future__ import annotations

import datetime as dt
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.harness.agent_e2e import AgentDaemon
from tests.harness.kube import (
    ControlPlane,
    unique_namespace,
)
from tests.harness.pki import write_private
from tests.harness.policy import agent_account, write_agent_config
from tests.harness.procfs import status_kib
from tests.harness.standin import StandIn, bot_doc, kube_cluster_doc, role_doc, standin, token_doc

ACCESS_ROLE = "bench-access"


def fleet(names: Sequence[str], upstream: ControlPlane, labels: Mapping[str, str]) -> list[Any]:
    """Stand-in resources: the role the bots get, and one cluster per name on ``upstream``."""
    return [
        role_doc(ACCESS_ROLE, kubernetes_labels={"*": "*"}, kubernetes_groups=["system:masters"]),
        *(kube_cluster_doc(name, upstream, labels=labels, servers=1) for name in names),
    ]


@contextmanager
def fleet_standin(count: int, upstream: ControlPlane) -> Iterator[StandIn]:
    with standin(fleet([f"c-{i:04d}" for i in range(count)], upstream, {"env": "bench"})) as s:
        yield s


class BenchAgent:
    """One agent installation on ``plane``: its namespace, ServiceAccount, Roles (create and
    patch on secrets where it writes; its identity Secret by name), a bot and a join token.
    With ``policy`` (the chart's default), the chart's admission policy for that
    ServiceAccount, rendered by helm, guards it, and the agent is told so."""

    def __init__(
        self,
        plane: ControlPlane,
        admin: k8s.ApiClient,
        teleport: StandIn,
        *,
        secret_namespace: str | None = None,
        policy: bool = True,
    ) -> None:
        self.teleport = teleport
        self.namespace = unique_namespace(admin, prefix="agent")
        self.secret_namespace = secret_namespace or self.namespace
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-agent-"))
        self.policy = policy
        token = agent_account(
            plane,
            admin,
            self.workdir,
            namespace=self.namespace,
            secret_namespace=self.secret_namespace,
            policy_proxy=teleport.proxy_addr if policy else None,
        )
        self.kubeconfig = plane.kubeconfig(self.workdir / "kubeconfig", token=token)
        bot = f"bench-{uuid.uuid4().hex[:6]}"
        join = uuid.uuid4().hex
        teleport.create([bot_doc(bot, [ACCESS_ROLE]), token_doc(join, bot)])
        write_private(self.workdir / "token", join)

    def configure(self, service: Mapping[str, Any], **top: Any) -> Path:
        return write_agent_config(
            self.workdir,
            self.teleport,
            namespace=self.namespace,
            services=[
                {
                    "type": "kubernetes/argo-cd",
                    "secret_namespace": self.secret_namespace,
                    "cluster_name_template": "{{.KubeName}}",
                    **service,
                }
            ],
            **{"admission_policy": self.policy, **top},
        )

    def start(self) -> tuple[AgentDaemon, float]:
        """The daemon and the wall-clock time (epoch seconds) just before it was spawned."""
        spawned = time.time()
        daemon = AgentDaemon(
            ["-c", str(self.workdir / "config.yaml")],
            kubeconfig=self.kubeconfig,
            POD_NAMESPACE=self.namespace,
        )
        return daemon, spawned


def event_time(event: Mapping[str, Any]) -> float:
    """An agent log event's timestamp as epoch seconds."""
    return dt.datetime.fromisoformat(str(event["time"])).timestamp()


def wait_event(
    daemon: AgentDaemon, message: str, *, after: int, timeout: float, **fields: Any
) -> tuple[dict[str, Any], int]:
    """The first event past index ``after`` whose message starts with ``message`` and whose
    fields match; returns it and its index (to wait for the next one)."""
    deadline = time.monotonic() + timeout
    while True:
        events = daemon.events()
        for index in range(after, len(events)):
            event = events[index]
            if str(event.get("message", "")).startswith(message) and all(
                event.get(k) == v for k, v in fields.items()
            ):
                return event, index + 1
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            tail = "".join(daemon.lines[-20:])
            raise RuntimeError(f"no {message!r} {fields} from the agent:\n{tail}")
        time.sleep(0.05)


def stop(daemon: AgentDaemon) -> None:
    try:
        daemon.stop()
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()


def cold_starts(
    plane: ControlPlane, admin: k8s.ApiClient, upstream: ControlPlane, counts: Sequence[int]
) -> dict[str, list[tuple[float, float]]]:
    """Process start to the first complete sync (join, output identity, listing, every write),
    each fleet size twice in mirrored order (1, 100, 1000, 1000, 100, 1) so load drifting over
    the run hits every size alike, in the chart's default mode (its admission policy guards the
    ServiceAccount); the largest fleet also twice with RBAC only (a dry run before each first
    write); and the largest fleet's first installation once more, restarted with its secrets in
    place (process start to the end of its first step, when it is ready). Keyed "<count>",
    "<count> rbac only" and "<count> restart"; each result: (seconds to the "agent started"
    line, i.e. the interpreter and imports; seconds to the end of the first step)."""
    largest = max(counts)
    runs = [(n, True) for n in [*counts, *reversed(counts)]] + [(largest, False)] * 2
    results: dict[str, list[tuple[float, float]]] = {}
    for count, policy in runs:
        key = f"{count}" if policy else f"{count} rbac only"
        with fleet_standin(count, upstream) as teleport:
            agent = BenchAgent(plane, admin, teleport, policy=policy)
            agent.configure({"selectors": [{"labels": {"env": "bench"}}]})
            result, event = _first_step(agent)
            written = int(event.get("created", 0)) + int(event.get("updated", 0))
            if written != count:
                raise RuntimeError(f"first sync wrote {written} of {count}: {event}")
            _record(results, key, result)
            if count == largest and policy:
                # The same installation started again with every secret in place and valid (an
                # upgrade or a crash): its first step reads what they hold and writes nothing at
                # once, so it is ready when that step ends.
                result, event = _first_step(agent)
                at_once = int(event.get("created", 0)) + int(event.get("updated", 0))
                if at_once > 1:  # the first slot of the window is due at once, as after a renewal
                    raise RuntimeError(f"a restart rewrote {at_once} secrets at once: {event}")
                _record(results, f"{count} restart", result)
    return results


def _first_step(agent: BenchAgent) -> tuple[tuple[float, float], dict[str, Any]]:
    """Starts the agent and stops it after its first step; returns (seconds to the "agent
    started" line, seconds to the end of the first step) from the spawn, and that step's event."""
    daemon, spawned = agent.start()
    try:
        started, seen = wait_event(daemon, "agent started", after=0, timeout=120)
        event, _ = wait_event(daemon, "sync finished", after=seen, timeout=300)
    finally:
        stop(daemon)
    return (event_time(started) - spawned, event_time(event) - spawned), event


def _record(
    results: dict[str, list[tuple[float, float]]], key: str, result: tuple[float, float]
) -> None:
    results.setdefault(key, []).append(result)
    print(
        f"cold start, {key:>15} clusters: first sync {result[1]:.2f}s "
        f"(loop started at {result[0]:.2f}s)",
        flush=True,
    )


def daemon_at_scale(
    plane: ControlPlane, admin: k8s.ApiClient, upstream: ControlPlane, count: int, *, additions: int
) -> dict[str, Any]:
    """One daemon with ``count`` clusters and a 5 s discovery interval: clusters added in the
    stand-in one at a time (time to the agent's write of their secret), then one renewal of
    every secret by SIGUSR1; the peak RSS (VmHWM) over all of it."""
    interval = 5
    with fleet_standin(count, upstream) as teleport:
        agent = BenchAgent(plane, admin, teleport)
        agent.configure(
            {
                "selectors": [{"labels": {"env": "bench"}}],
                "discovery_interval": f"{interval}s",
            }
        )
        daemon, _ = agent.start()
        try:
            _, seen = wait_event(daemon, "sync finished", after=0, timeout=300)
            after_first = status_kib(daemon.proc.pid, "VmHWM")
            delays = []
            for i in range(additions):
                # A random phase against the discovery timer, as a real addition would have.
                time.sleep(1.3 * (i + 1))
                teleport.add_cluster(f"new-{i}", upstream, labels={"env": "bench"}, servers=1)
                added = time.time()
                event, seen = wait_event(
                    daemon, "sync finished", after=seen, timeout=60, kind="discovery", created=1
                )
                delays.append(event_time(event) - added)
            daemon.proc.send_signal(signal.SIGUSR1)
            renewal, seen = wait_event(
                daemon, "sync finished", after=seen, timeout=300, kind="renewal"
            )
            peak = status_kib(daemon.proc.pid, "VmHWM")
        finally:
            stop(daemon)
    print(
        f"daemon, {count} clusters: new cluster to secret {[round(d, 1) for d in delays]} s "
        f"(discovery every {interval}s); SIGUSR1 renewal of {count + additions} secrets "
        f"{renewal.get('seconds')} s; VmHWM {after_first / 1024:.0f} MiB after the first sync, "
        f"{peak / 1024:.0f} MiB at the end",
        flush=True,
    )
    return {
        "clusters": count,
        "discovery_interval_s": interval,
        "new_cluster_to_secret_s": delays,
        "renewal_seconds": renewal.get("seconds"),
        "renewal_written": int(renewal.get("updated", 0)) + int(renewal.get("unchanged", 0)),
        "rss_after_first_sync_kib": after_first,
        "rss_peak_kib": peak,
    }
