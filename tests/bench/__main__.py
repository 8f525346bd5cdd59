"""`make bench`: the agent measured on its real path, one table per topic, from one run.

1. Cold start of ``start`` with the real Teleport client against the Teleport stand-in (join,
   output identity, ListResources paging) to the first complete sync, at 1 / 100 / 1,000
   clusters (tests/bench/teleport_path.py).
2. A cluster added in Teleport to its secret (and, with Argo CD, to its Application Synced).
3. Peak RSS of the daemon at 1,000 clusters.
4. Secret writes beside a raw-apply baseline (below), with a profile of one update cycle.
5. Rolling rotation against real Argo CD: all at once vs spread (tests/bench/rotation.py).
6. The chart's pod on a real node at 1,000 clusters: peak memory against the chart's default
   limit, OOMKilled or not (tests/bench/node_memory.py; ``--only node``).

Numbers are measurements printed side by side, never assertions: the machine is shared, so
compare ratios within a run. For the writes: for 1, 100 and 1,000 clusters the agent renders
and writes every secret (a create cycle, then an update cycle with a renewed credential) in
two modes: "policy", the chart's default install (helm installs its ServiceAccount, Role and
admission policy; the agent and the baseline both write as that ServiceAccount, so both pay the
policy's admission cost), and "rbac only" (``admissionPolicy.enabled: false``: a least-privilege
ServiceAccount, and the agent's first write of each existing secret is preceded by a dry run that
decides ownership). The baseline, in the same run against the same server, sends the same
server-side applies straight through urllib3 with the same concurrency and no agent logic at
all. Each side runs twice per phase in alternating order and the faster run counts, so a noisy
neighbour hurts both sides alike. Ratios (agent throughput / baseline throughput) are printed; they
are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import urllib3
from kubernetes import client as k8s

from agent.argocd import DesiredSecret, render_secret
from agent.kube import APPLY_CONTENT_TYPE, SecretWriter
from agent.teleport.model import Credential, KubeCluster, ProxySettings
from tests.bench import node_memory, rotation, teleport_path
from tests.bench.cycle_process import bench_config
from tests.chart.helm import CHART, Helm
from tests.harness.kube import (
    ControlPlane,
    agent_namespace,
    control_plane,
    grant_secret_verbs,
    service_account_token,
    unique_namespace,
    wait_for_admission_policy,
)
from tests.harness.pki import CertificateAuthority, write_private

CONCURRENCY = 16
# The chart's release name in the policy mode; also its ServiceAccount's name.
CHART_RELEASE = "teleport-argocd-agent"
PROXY = ProxySettings("bench.example.com", "teleport.example.com:443", tls_routing=True)


def make_credential(ca: CertificateAuthority, serial: int) -> Credential:
    pair = ca.issue(f"bot-argocd-{serial}", client=True)
    return Credential.from_pem(pair.cert_pem, pair.key_pem, (ca.cert_pem,), "argocd")


def render_all(
    namespace: str,
    count: int,
    credential: Credential,
    *,
    instance: str = "bench/agent",
    cluster_prefix: str = "cluster",
) -> list[DesiredSecret]:
    service = bench_config(
        namespace, secret_labels={"team": '{{ index .Labels "team" }}'}
    ).services[0]
    now = dt.datetime.now(dt.UTC)
    return [
        render_secret(
            service=service,
            service_name="argo-cd",
            instance=instance,
            proxy=PROXY,
            cluster=KubeCluster(f"{cluster_prefix}-{i:04d}", {"env": "bench", "team": f"t{i % 7}"}),
            credential=credential,
            agent_version="bench",
            now=now,
        )
        for i in range(count)
    ]


class RawApplier:
    """The baseline: parallel server-side applies with nothing but urllib3."""

    def __init__(self, plane: ControlPlane, token: str) -> None:
        self._pool = urllib3.PoolManager(
            maxsize=CONCURRENCY, cert_reqs="CERT_REQUIRED", ca_certs=str(plane.ca_path)
        )
        self._url = plane.url
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": APPLY_CONTENT_TYPE,
            "Accept": "application/json",
        }

    def apply(self, bodies: Sequence[tuple[str, str, bytes]]) -> None:
        def one(item: tuple[str, str, bytes]) -> None:
            namespace, name, body = item
            response = self._pool.request(
                "PATCH",
                f"{self._url}/api/v1/namespaces/{namespace}/secrets/{name}?fieldManager=baseline",
                body=body,
                headers=self._headers,
            )
            if response.status >= 300:
                raise RuntimeError(
                    f"baseline apply failed: {response.status} {response.data[:200]!r}"
                )

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, bodies))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def agent_cycle(writer: SecretWriter, render: Callable[[], list[DesiredSecret]]) -> None:
    """What one agent cycle costs: render every secret, then write them."""
    results = writer.write(render())
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"agent write failed: {failed[0]}")


@dataclass(frozen=True)
class WriteSetup:
    """Where one mode's agent and baseline write, and as whom."""

    mode: str
    agent_ns: str
    base_ns: str
    token: str
    instance: str
    ownership_enforced: bool


def policy_setup(plane: ControlPlane, admin: k8s.ApiClient, helm: Helm) -> WriteSetup:
    """The chart's default install: its ServiceAccount, Role and admission policy, installed by
    helm. The agent and the baseline write as that ServiceAccount into its namespace (distinct
    secret names), so both pay the policy's admission cost and the ratio shows the agent's."""
    namespace = unique_namespace(admin, prefix="policy")
    helm.run(
        "install",
        CHART_RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        *helm.values_args(
            [
                {
                    "clusterName": "teleport.example.com",
                    "teleportProxyAddress": "teleport.example.com:443",
                    "token": "bench-bot",
                    "argocd": {"clusterSelectors": [{"labels": {"env": "bench"}}]},
                }
            ]
        ),
    )
    wait_for_admission_policy(plane, namespace, CHART_RELEASE)
    return WriteSetup(
        "policy",
        namespace,
        namespace,
        service_account_token(admin, namespace, CHART_RELEASE, create=False),
        f"{namespace}/{CHART_RELEASE}",
        ownership_enforced=True,
    )


def rbac_setup(admin: k8s.ApiClient) -> WriteSetup:
    """RBAC only (admissionPolicy.enabled: false): the agent's first write of each secret is a
    dry run first, to decide ownership itself."""
    agent_ns = unique_namespace(admin, prefix="agent")
    base_ns = unique_namespace(admin, prefix="base")
    for ns in (agent_ns, base_ns):
        grant_secret_verbs(
            admin,
            ns,
            ["create", "patch"],
            service_account="writer",
            service_account_namespace=agent_ns,
            name="writer",
        )
    token = service_account_token(admin, agent_ns, "writer")
    return WriteSetup("rbac only", agent_ns, base_ns, token, "bench/agent", False)


def run(counts: Sequence[int]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with control_plane(Path(tempfile.mkdtemp(prefix="bench-"))) as plane:
        admin = plane.admin_client()
        home = Path(tempfile.mkdtemp(prefix="bench-helm-"))
        helm = Helm(home, plane.kubeconfig(home / "kubeconfig"))
        ca = CertificateAuthority("bench-teleport-host-ca")
        credentials = [make_credential(ca, i) for i in range(4)]
        print(f"control plane up in {plane.startup_seconds:.1f}s; concurrency {CONCURRENCY}")
        for count in counts:
            for setup in (policy_setup(plane, admin, helm), rbac_setup(admin)):
                rows += compare_writes(plane, setup, count, credentials)
        rss_ns = agent_namespace(admin, "rss", ["create", "patch"])
        rows.append({"peak_rss_kib": peak_rss(plane, admin, rss_ns, max(counts), ca)})
        rows.append({"profile": profile_update(plane, admin, max(counts), ca)})
        admin.close()  # type: ignore[no-untyped-call]
    return rows


def compare_writes(
    plane: ControlPlane, setup: WriteSetup, count: int, credentials: Sequence[Credential]
) -> list[dict[str, object]]:
    """A create cycle, then an update cycle, of ``count`` secrets: agent beside baseline."""
    cfg = plane.configuration(token=setup.token)
    cfg.connection_pool_maxsize = CONCURRENCY
    writer = SecretWriter(
        k8s.ApiClient(cfg), concurrency=CONCURRENCY, ownership_enforced=setup.ownership_enforced
    )
    raw = RawApplier(plane, setup.token)
    agent = partial(render_all, setup.agent_ns, count, instance=setup.instance)

    def baseline_bodies(credential: Credential) -> list[tuple[str, str, bytes]]:
        # Pre-rendered and pre-serialized: the floor of the cost.
        secrets = render_all(
            setup.base_ns, count, credential, instance=setup.instance, cluster_prefix="base"
        )
        return [(s.namespace, s.name, json.dumps(s.apply_body()).encode()) for s in secrets]

    rows: list[dict[str, object]] = []
    for phase, (cred_a, cred_b) in (
        ("create", (credentials[0], credentials[1])),
        ("update", (credentials[2], credentials[3])),
    ):
        bodies_a, bodies_b = baseline_bodies(cred_a), baseline_bodies(cred_b)
        # Order B, A, A, B. In the create phase only the first run of each side creates
        # (the second updates), so the first runs are compared; in the update phase
        # every run updates and the faster of two counts.
        base_t = timed(partial(raw.apply, bodies_a))
        agent_t = timed(partial(agent_cycle, writer, partial(agent, cred_a)))
        agent_t2 = timed(partial(agent_cycle, writer, partial(agent, cred_b)))
        base_t2 = timed(partial(raw.apply, bodies_b))
        if phase == "create":
            base_best, agent_best = base_t, agent_t
        else:
            base_best, agent_best = min(base_t, base_t2), min(agent_t, agent_t2)
        row: dict[str, object] = {
            "clusters": count,
            "mode": setup.mode,
            "phase": phase,
            "baseline_s": base_best,
            "agent_s": agent_best,
            "baseline_wps": count / base_best,
            "agent_wps": count / agent_best,
            "ratio": base_best / agent_best,
        }
        rows.append(row)
        print(
            f"{count:>6} {setup.mode:<9} {phase:<7} baseline {base_best:7.3f}s "
            f"({count / base_best:7.1f}/s)  agent {agent_best:7.3f}s "
            f"({count / agent_best:7.1f}/s)  ratio {base_best / agent_best:.2f}",
            flush=True,
        )
    return rows


def peak_rss(
    plane: ControlPlane, admin: k8s.ApiClient, namespace: str, count: int, ca: CertificateAuthority
) -> int:
    """Peak RSS of a fresh process that plans and writes ``count`` clusters with agent code."""
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    token = work / "token"
    write_private(token, service_account_token(admin, namespace, "agent"))
    pair = ca.issue("bot-argocd", client=True)
    (work / "cert.pem").write_bytes(pair.cert_pem)
    write_private(work / "key.pem", pair.key_pem)
    (work / "ca.pem").write_bytes(ca.cert_pem)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.cycle_process",
            plane.url,
            str(plane.ca_path),
            str(token),
            namespace,
            str(count),
            str(work),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    kib = int(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS of one {count}-cluster cycle in a fresh process: {kib / 1024:.1f} MiB")
    return kib


def profile_update(
    plane: ControlPlane, admin: k8s.ApiClient, count: int, ca: CertificateAuthority
) -> str:
    """cProfile of one update cycle of ``count`` secrets, written one at a time: the profiler
    sees only the thread that enables it, so the writer runs without its worker threads here
    and every write's Python cost shows in one profile."""
    namespace = agent_namespace(admin, "profile", ["create", "patch"])
    cfg = plane.configuration(token=service_account_token(admin, namespace, "agent"))
    writer = SecretWriter(k8s.ApiClient(cfg), concurrency=1)
    agent_cycle(writer, partial(render_all, namespace, count, make_credential(ca, 100)))
    profiler = cProfile.Profile()
    credential = make_credential(ca, 101)
    started = time.perf_counter()
    profiler.enable()
    agent_cycle(writer, partial(render_all, namespace, count, credential))
    profiler.disable()
    seconds = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"profile: one update cycle of {count} secrets, one at a time: {seconds:.2f}s\n")
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(30)
    return out.getvalue()


def writes_table(rows: Sequence[dict[str, object]]) -> None:
    print(
        f"{'clusters':>8} {'mode':<9} {'phase':<7} {'cycle (agent)':>14} {'writes/s agent':>15} "
        f"{'writes/s raw':>13} {'ratio':>6}"
    )
    for row in rows:
        if "clusters" in row:
            print(
                f"{row['clusters']:>8} {row['mode']:<9} {row['phase']:<7} {row['agent_s']:>13.3f}s "
                f"{row['agent_wps']:>15.1f} {row['baseline_wps']:>13.1f} {row['ratio']:>6.2f}"
            )
        elif "peak_rss_kib" in row:
            print(
                f"peak RSS of a fresh process planning and writing the largest fleet: "
                f"{int(str(row['peak_rss_kib'])) / 1024:.1f} MiB"
            )


def teleport_section(counts: Sequence[int], additions: int) -> dict[str, object]:
    """Topics 1-3: cold starts, a new cluster's secret and peak RSS, on the real path."""
    with (
        control_plane(Path(tempfile.mkdtemp(prefix="bench-mgmt-"))) as plane,
        control_plane(Path(tempfile.mkdtemp(prefix="bench-upstream-"))) as upstream,
    ):
        admin = plane.admin_client()
        starts = teleport_path.cold_starts(plane, admin, upstream, counts)
        daemon = teleport_path.daemon_at_scale(
            plane, admin, upstream, max(counts), additions=additions
        )
        admin.close()  # type: ignore[no-untyped-call]
    return {"cold_starts": starts, "daemon": daemon}


def teleport_tables(result: dict[str, object]) -> None:
    starts = result["cold_starts"]
    assert isinstance(starts, dict)
    print("cold start: process start -> first complete sync, real client against the stand-in")
    print(f"{'clusters':>16} {'first sync (runs)':>22} {'best':>6} {'loop up (best)':>15}")
    for count, runs in starts.items():
        syncs = ", ".join(f"{r[1]:.2f}" for r in runs)
        print(
            f"{count:>16} {syncs + ' s':>22} {min(r[1] for r in runs):>5.2f}s "
            f"{min(r[0] for r in runs):>14.2f}s"
        )
    daemon = result["daemon"]
    assert isinstance(daemon, dict)
    delays = ", ".join(f"{d:.1f}" for d in daemon["new_cluster_to_secret_s"])
    print(
        f"new cluster in Teleport -> secret written, {daemon['clusters']} clusters, discovery "
        f"every {daemon['discovery_interval_s']}s: {delays} s (tbot: at its next renewal, up to "
        "20 min by default)"
    )
    print(
        f"daemon peak RSS (VmHWM), {daemon['clusters']} clusters, real client: "
        f"{daemon['rss_after_first_sync_kib'] / 1024:.0f} MiB after the first sync, "
        f"{daemon['rss_peak_kib'] / 1024:.0f} MiB after discoveries and a SIGUSR1 renewal of "
        f"{daemon['renewal_written']} secrets in {daemon['renewal_seconds']}s (target < 120 MB)"
    )


def worst_vs_mildest(spread: Sequence[float], burst: Sequence[float]) -> float:
    """The largest spread value over the smallest burst one; nan when the burst is zero."""
    mildest = min(burst)
    return max(spread) / mildest if mildest > 0 else float("nan")


def rotation_table(result: dict[str, object]) -> None:
    windows = result["windows"]
    assert isinstance(windows, list)
    every = [p for w in windows for p in w["phases"]]
    # Every burst of the run is the same thing (SIGUSR1 writes all at once whatever the window),
    # so each window's spread phases are compared with all of them.
    bursts = [p for p in every if p["kind"] == "all at once"]
    print(
        f"rotation of {every[0]['apps']} secrets with Argo CD: controller peak CPU (5 s) and "
        "idle CPU before the phase, peak RSS, kube-route requests (peak 5 s / total), cache "
        "rebuilds (count, median, max), fewest Applications Synced+Healthy"
    )
    print(
        f"{'window':>6} {'phase':<12} {'writes over':>11} {'cpu peak':>9} {'idle':>6} "
        f"{'rss peak':>9} {'req/5s':>7} {'req total':>9} {'rebuilds':>8} {'median':>7} "
        f"{'max':>6} {'healthy':>8}"
    )
    for measured in windows:
        for p in measured["phases"]:
            print(
                f"{measured['window_s']:>5}s {p['kind']:<12} {p['write_span_s']:>10.1f}s "
                f"{p['cpu_peak']:>8.2f}c {p['cpu_idle']:>5.2f}c "
                f"{p['rss_peak_mib']:>6.0f}MiB {p['requests_peak_5s']:>7} "
                f"{p['requests_total']:>9} {p['rebuilds']:>8} {p['rebuild_median_s']:>6.2f}s "
                f"{p['rebuild_max_s']:>5.1f}s {p['healthy_min']:>4}/{p['apps']}"
                + (" (request log truncated)" if p["log_truncated"] else "")
            )
    for measured in windows:
        spread = [p for p in measured["phases"] if p["kind"] == "spread"]
        restart = [p for p in measured["phases"] if p["kind"] == "restart"]
        window = measured["window_s"]
        for key in ("cpu_peak", "requests_peak_5s", "rss_peak_mib", "rebuild_median_s"):
            ratio = worst_vs_mildest(
                [float(p[key]) for p in spread], [float(p[key]) for p in bursts]
            )
            print(f"  spread over {window}s / all at once, {key}: {ratio:.2f} (worst vs mildest)")
            if restart:
                # A restart wrote every secret at once before the agent read what they hold.
                ratio = worst_vs_mildest(
                    [float(p[key]) for p in restart], [float(p[key]) for p in bursts]
                )
                print(f"  restart, window {window}s / all at once, {key}: {ratio:.2f}")
        # The peak includes the controller's own background work (relists, status refreshes),
        # which no write schedule changes; above that, the rebuilds' own load.
        above = worst_vs_mildest(
            [float(p["cpu_peak"]) - float(p["cpu_idle"]) for p in spread],
            [float(p["cpu_peak"]) - float(p["cpu_idle"]) for p in bursts],
        )
        print(f"  spread over {window}s / all at once, cpu_peak above idle: {above:.2f}")
    new = result["new_cluster"]
    assert isinstance(new, dict)
    print(
        f"new cluster in Teleport -> secret {new['secret_s']:.1f}s -> Application Synced and "
        f"Healthy {new['application_synced_s']:.1f}s (discovery every 5s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["writes", "teleport", "rotation", "node"],
        default=["writes", "teleport", "rotation", "node"],
    )
    parser.add_argument("--rotation-clusters", type=int, default=30)
    # 60 s is the window of the issue's own measurement; 300 s is the agent's default for the
    # default credential_ttl / renewal_interval (1 h / 20 m), what an installation gets.
    parser.add_argument(
        "--rotation-window", type=int, nargs="+", default=[60, 300], help="seconds, each in turn"
    )
    parser.add_argument(
        "--rotation-rounds",
        type=int,
        nargs="+",
        default=[2, 1],
        help="pairs of phases per window (the last count repeats)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    if "writes" in args.only:
        print("== secret writes: agent vs raw parallel server-side apply (same server, same run)")
        results["writes"] = run(args.clusters)
    if "teleport" in args.only:
        print("== the agent process with the real Teleport client against the stand-in")
        results["teleport"] = teleport_section(args.clusters, additions=3)
    if "rotation" in args.only:
        print("== rolling rotation vs all at once, with Argo CD")
        rounds = [*args.rotation_rounds, *[args.rotation_rounds[-1]] * len(args.rotation_window)]
        results["rotation"] = rotation.run(
            args.rotation_clusters, list(zip(args.rotation_window, rounds, strict=False))
        )
    if "node" in args.only:
        print("== the chart's pod on a real node, default resources")
        results["node"] = node_memory.run(max(args.clusters))
    print()
    if "node" in results:
        assert isinstance(results["node"], dict)
        node_memory.table(results["node"])
        print()
    if "teleport" in results:
        assert isinstance(results["teleport"], dict)
        teleport_tables(results["teleport"])
        print()
    if "writes" in results:
        rows = results["writes"]
        assert isinstance(rows, list)
        writes_table(rows)
        for row in rows:
            if "profile" in row:
                print(row["profile"])
        print()
    if "rotation" in results:
        assert isinstance(results["rotation"], dict)
        rotation_table(results["rotation"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


@contextlib.contextmanager
def scratch_root() -> Iterator[Path]:
    """One temporary directory for the whole run, removed at the end however the run ends.

    Every directory the benchmarks make (API servers, agents, helm homes, Argo CD) is made with
    ``tempfile`` and so lands in it, and so do the files of the processes they start (TMPDIR):
    a run, even an interrupted one, leaves nothing behind in the temporary directory.
    """
    root = Path(tempfile.mkdtemp(prefix="teleport-argocd-agent-bench-"))
    previous_dir, previous_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = previous_dir
        if previous_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_env
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with scratch_root():
        code = main()
    sys.exit(code)
