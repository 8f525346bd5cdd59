"""Build and run the agent image without a container engine (buildah + namespaces).

Reusable by other tiers, e.g. an end-to-end test running `start --oneshot` inside the image:

    ref = build_image()
    run_image(ref, "start", "--oneshot", "--config", "/config/agent.yaml",
              volumes=[f"{cfg_dir}:/config:ro"], env={"POD_NAMESPACE": "argocd"})

The network is the machine's, so servers on loopback are reachable from inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
REPOSITORY = "ghcr.io/teleport-argocd-agent/teleport-argocd-agent"


def expected_version() -> str:
    """The chart's appVersion (the image tag a release publishes), else pyproject's version."""
    chart = ROOT / "chart" / "Chart.yaml"
    if chart.exists():
        return str(yaml.safe_load(chart.read_text())["appVersion"])
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def make_image() -> subprocess.CompletedProcess[str]:
    """`make image`: builds on first use, then a cache hit. stdout's last line is the reference."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(
        ["make", "--no-print-directory", "image"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        raise AssertionError(f"make image failed:\n{result.stdout}\n{result.stderr}")
    return result


def build_image() -> str:
    return make_image().stdout.strip().splitlines()[-1]


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / "buildah.sh"), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def image_config(ref: str) -> dict[str, object]:
    """The OCI image configuration: User, Env, Entrypoint, Cmd, Labels."""
    inspected = json.loads(buildah("inspect", "--type", "image", ref).stdout)
    return inspected["OCIv1"]["config"]  # type: ignore[no-any-return]


def image_size(ref: str) -> int:
    out = subprocess.run(
        [str(TOOLS / "image-size.sh"), ref], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def run_image(
    ref: str,
    *args: str,
    user: str | None = None,
    read_only: bool = True,
    entrypoint: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the image like a restricted pod (see tools/image-run.sh); never raises on exit code."""
    cmd = [str(TOOLS / "image-run.sh")]
    if not read_only:
        cmd.append("--rw")
    if user is not None:
        cmd += ["--user", user]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    for name, value in (env or {}).items():
        cmd += ["--env", f"{name}={value}"]
    for volume in volumes:
        cmd += ["--volume", volume]
    cmd += ["--", ref, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)


def run_python(
    ref: str,
    code: str,
    *args: str,
    user: str | None = None,
    read_only: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet with the image's venv interpreter (a probe from inside)."""
    return run_image(
        ref,
        "-c",
        code,
        *args,
        entrypoint="/opt/venv/bin/python",
        user=user,
        read_only=read_only,
        env=env,
    )
