"""Start the agent's daemon loop (tests/harness/daemon.py) as a process and watch it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agent.teleport.model import KubeCluster
from tests.harness.kube import ControlPlane, free_port
from tests.harness.source import write_inventory

ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    """A running agent process, its JSON events and its diagnostics endpoint."""

    def __init__(self, proc: subprocess.Popen[str], diag: str, inventory: Path) -> None:
        self.proc = proc
        self.diag = diag
        self.inventory = inventory
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def wait_event(self, message: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "agent exited:\n" + "".join(self.lines[-20:])
                continue
            if event.get("message", "").startswith(message):
                return event
        raise AssertionError(f"no {message!r} event:\n" + "".join(self.lines[-20:]))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.diag + path, timeout=5) as resp:  # noqa: S310
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:
            return 0, str(err)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


def launch(
    plane: ControlPlane,
    workdir: Path,
    token_file: Path,
    namespace: str,
    clusters: list[KubeCluster],
    **service: Any,
) -> Daemon:
    """Run the agent with one service selecting ``env=prod`` clusters into ``namespace``."""
    port = free_port()
    config = workdir / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "proxy_server": "teleport.example.com:443",
                "onboarding": {"token": "bot"},
                "diag_addr": f"127.0.0.1:{port}",
                "instance": f"{namespace}/agent",
                "services": [
                    {
                        "type": "kubernetes/argo-cd",
                        "secret_namespace": namespace,
                        "selectors": [{"labels": {"env": "prod"}}],
                        **service,
                    }
                ],
            }
        )
    )
    return launch_with_config(plane, workdir, token_file, config, clusters, diag_port=port)


def launch_with_config(
    plane: ControlPlane,
    workdir: Path,
    token_file: Path,
    config: Path,
    clusters: list[KubeCluster],
    *,
    diag_port: int,
) -> Daemon:
    """Run the agent with a config file made elsewhere (e.g. rendered by the chart)."""
    inventory = workdir / "inventory.json"
    write_inventory(inventory, clusters)
    args = [config, plane.url, plane.ca_path, token_file, inventory]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.daemon", *map(str, args)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Daemon(proc, f"http://127.0.0.1:{diag_port}", inventory)
