"""The chart's pod at scale on a real node: memory under the chart's default limits.

The user's path (tests/harness/user_path.py) with ``count`` clusters selected: the chart from
the local registry with its default ``resources``, the agent's pod writing every secret, then a
SIGUSR1 that makes it renew and rewrite all of them. The container's memory cgroup reports the
peak (``memory.max_usage_in_bytes``: the kernel's own accounting against the limit, page cache of
the container included) and the kubelet whether it was ever OOMKilled or restarted.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.user_path import agent_pid, container_memory, sandbox


def run(count: int) -> dict[str, Any]:
    clusters = {f"c-{i:04d}": "production" for i in range(count)}
    with (
        tempfile.TemporaryDirectory(prefix="bench-node-") as tmp,
        sandbox(Path(tmp), clusters=clusters, argo_cd=False) as s,
    ):
        s.install()
        s.wait(f"{count} cluster secrets", lambda: len(s.secrets()) >= count or None, timeout=600)
        written = time.monotonic()
        pod = s.ready_pod()
        assert pod is not None
        uid = pod.metadata.uid
        container_id = pod.status.container_statuses[0].container_id.split("://", 1)[1]
        after_first, limit = container_memory(uid, container_id)
        # A renewal that rewrites every secret: the agent's busiest moment after the start.
        before = {name: data["config"] for name, data in s.secrets()}
        os.kill(agent_pid(uid), signal.SIGUSR1)

        def rewritten() -> bool | None:
            now = {name: data["config"] for name, data in s.secrets()}
            return sum(now[k] != before.get(k) for k in now) >= count or None

        s.wait("every secret rewritten", rewritten, timeout=900)
        rewrite_seconds = time.monotonic() - written
        peak, _ = container_memory(uid, container_id)
        current = s.ready_pod()
        status = (current or pod).status.container_statuses[0]
        last = status.last_state.terminated if status.last_state else None
        return {
            "clusters": count,
            "limit_mib": limit / 2**20,
            "peak_after_first_sync_mib": after_first / 2**20,
            "peak_mib": peak / 2**20,
            "restarts": status.restart_count,
            "oom_killed": bool(last and last.reason == "OOMKilled"),
            "first_secret_s": s.timings["first secret"],
            "pod_ready_s": s.timings["pod Ready"],
            "rewrite_s": rewrite_seconds,
        }


def table(result: dict[str, Any]) -> None:
    print(
        "| clusters | memory limit | peak after first sync | peak after a full rewrite | "
        "OOMKilled | restarts | pod Ready after install |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {result['clusters']:,} | {result['limit_mib']:.0f} MiB "
        f"| {result['peak_after_first_sync_mib']:.0f} MiB | {result['peak_mib']:.0f} MiB "
        f"| {'yes' if result['oom_killed'] else 'no'} | {result['restarts']} "
        f"| {result['pod_ready_s']:.1f} s |"
    )
