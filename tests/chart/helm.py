"""Run the real ``helm`` (and ``ct``) against the chart, and parse what they render.

Binaries come from ``HELM_BIN`` / ``CT_BIN``, which ``make`` fills from the tool cache; a
missing binary is an error that says how to get it, never a skipped test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.kube import binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Bumped on every chart change; tests read it rather than repeat it.
CHART_VERSION: str = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]

Manifest = dict[str, Any]


def pinned_kubernetes_version() -> str:
    """The Kubernetes version the tests run (tools/versions.env), used as helm's --kube-version.

    A helm built without its release ldflags assumes Kubernetes 1.20, which the chart's
    kubeVersion constraint rejects; rendering for the version we actually test is right anyway.
    """
    for line in (REPO / "tools" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.partition("=")[2].strip()
    raise RuntimeError("KUBERNETES_VERSION is missing from tools/versions.env")


class HelmFailed(AssertionError):
    """A helm command that was expected to succeed failed."""


@dataclass
class Helm:
    """One helm binary with its own config/cache/data directories (never the user's)."""

    home: Path
    kubeconfig: Path | None = None

    def __post_init__(self) -> None:
        self.binary = binary("HELM_BIN", "helm")
        self.kube_version = pinned_kubernetes_version()

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.home, kubeconfig)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise HelmFailed(
                f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    # -- rendering ---------------------------------------------------------------------------

    def template_args(
        self,
        values: Iterable[Path | Mapping[str, Any]] = (),
        *,
        release: str = "rel",
        namespace: str = "argocd",
        chart: Path = CHART,
    ) -> list[str]:
        args = ["template", release, str(chart), "--namespace", namespace]
        args += ["--kube-version", self.kube_version]
        return args + self.values_args(values)

    def template(
        self,
        values: Iterable[Path | Mapping[str, Any]] = (),
        *,
        release: str = "rel",
        namespace: str = "argocd",
        chart: Path = CHART,
    ) -> Rendered:
        args = self.template_args(values, release=release, namespace=namespace, chart=chart)
        return Rendered.parse(self.run(*args).stdout)

    def template_error(
        self, values: Iterable[Path | Mapping[str, Any]] = (), *, chart: Path = CHART
    ) -> str:
        """Render values that must be rejected; return helm's error output."""
        proc = self.run(*self.template_args(values, chart=chart), check=False)
        if proc.returncode == 0:
            raise AssertionError("helm template accepted values that must be rejected")
        return proc.stderr

    def values_args(self, values: Iterable[Path | Mapping[str, Any]]) -> list[str]:
        args: list[str] = []
        for item in values:
            if isinstance(item, Path):
                path = item
            else:
                path = self.home / f"values-{uuid.uuid4().hex}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump(dict(item)))
            args += ["--values", str(path)]
        return args


@dataclass
class Rendered:
    """The objects of one ``helm template`` run, looked up by kind and name."""

    objects: list[Manifest]

    @classmethod
    def parse(cls, text: str) -> Rendered:
        return cls([doc for doc in yaml.safe_load_all(text) if doc])

    def all(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        if len(found) != 1:
            have = [(o["kind"], o["metadata"]["name"]) for o in self.objects]
            raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}: {have}")
        return found[0]

    def config(self) -> dict[str, Any]:
        """The agent configuration in the ConfigMap, parsed."""
        return yaml.safe_load(self.config_text())  # type: ignore[no-any-return]

    def config_text(self) -> str:
        return str(self.one("ConfigMap")["data"]["config.yaml"])

    def deployment(self) -> Manifest:
        return self.one("Deployment")

    def pod_spec(self) -> Manifest:
        return self.deployment()["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    def container(self) -> Manifest:
        containers = self.pod_spec()["containers"]
        assert len(containers) == 1
        return containers[0]  # type: ignore[no-any-return]


def tool_path(*binaries: str) -> str:
    """PATH with the given binaries' directories and the project's .venv/bin first.

    ct calls helm, yamllint and yamale by name.
    """
    dirs = [str(Path(b).parent) for b in binaries] + [str(REPO / ".venv" / "bin")]
    return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


def ct_binary() -> str:
    return binary("CT_BIN", "ct")


def require_on_path(name: str, path: str) -> str:
    found = shutil.which(name, path=path)
    if found is None:
        raise AssertionError(f"{name} not found on PATH; run `make tools` (it installs {name}).")
    return found
