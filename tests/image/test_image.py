"""The container image really builds (buildah, from Dockerfile) and really runs as a restricted pod.

Each property is shown from inside the running image, not read off the Dockerfile: the process's
/proc/self/status for the user, errno EROFS for the read-only root (also as root, so it is the
mount and not file permissions), the agent's own --version output for the version.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.image.container import (
    REPOSITORY,
    ROOT,
    TOOLS,
    build_image,
    expected_version,
    image_config,
    image_size,
    make_image,
    run_image,
    run_python,
)

# The first test builds the image when its inputs changed (about a minute, several on a fresh
# machine that also installs buildah and bootstraps the base).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

UID = 65532
SIZE_TARGET = 150 * 1000 * 1000  # bytes, uncompressed

VALID_CONFIG = """
proxy_server: teleport.example.com:443
onboarding: {token: argocd-bot}
services:
  - type: kubernetes/argo-cd
    selectors: [{labels: {env: prod}}]
    secret_namespace: argocd
"""

IMPORT_PROBE = """
import importlib, json, os, pkgutil, sys
import agent
names = [m.name for m in pkgutil.walk_packages(agent.__path__, "agent.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
import kubernetes.client, kubernetes.config, kubernetes.watch
from_source = []
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if not path.startswith("/opt/venv/"):
        continue
    if ".zip/" in path:  # zipimport names the file it loaded: .pyc, or .py if compiled
        if not path.endswith(".pyc"):
            from_source.append(module.__name__)
    elif path.endswith(".py") and not os.path.exists(module.__cached__ or ""):
        from_source.append(module.__name__)
print(json.dumps({"agent_modules": len(names), "from_source": sorted(from_source)}))
"""

WRITE_PROBE = """
import errno, json, sys
result = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as f:
            f.write("x")
        result[path] = "written"
    except OSError as e:
        result[path] = errno.errorcode[e.errno]
print(json.dumps(result))
"""


@pytest.fixture(scope="session")
def image() -> str:
    return build_image()


def probe_writes(
    image: str, paths: list[str], *, user: str | None = None, read_only: bool = True
) -> dict[str, str]:
    result = run_python(image, WRITE_PROBE, *paths, user=user, read_only=read_only)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_image_is_tagged_with_the_chart_app_version(image: str) -> None:
    assert image == f"{REPOSITORY}:{expected_version()}"


def test_version_inside_the_image_is_the_chart_app_version(image: str) -> None:
    result = run_image(image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"teleport-argocd-agent {expected_version()}"


def test_image_configuration(image: str) -> None:
    config = image_config(image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["/opt/venv/bin/teleport-argocd-agent"]
    assert config["Cmd"] == ["start"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]  # type: ignore[operator]
    labels = config["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.version"] == expected_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == "teleport-argocd-agent"
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_process_runs_as_the_fixed_non_root_user_without_privileges(image: str) -> None:
    # No --user: the image's own USER applies, as in a pod without runAsUser.
    result = run_python(image, "print(open('/proc/self/status').read())")
    assert result.returncode == 0, result.stderr
    status = dict(
        (key, value.split())
        for key, _, value in (line.partition(":") for line in result.stdout.splitlines())
    )
    assert status["Uid"] == [str(UID)] * 4
    assert status["Gid"] == [str(UID)] * 4
    assert status["Groups"] == []
    assert status["CapEff"] == ["0000000000000000"]
    assert status["NoNewPrivs"] == ["1"]


def test_root_filesystem_is_read_only_and_tmp_is_writable(image: str) -> None:
    paths = ["/etc/probe", "/opt/venv/probe", "/probe", "/tmp/probe"]
    as_agent = probe_writes(image, paths)
    assert as_agent == {
        "/etc/probe": "EROFS",
        "/opt/venv/probe": "EROFS",
        "/probe": "EROFS",
        "/tmp/probe": "written",
    }
    # Even root cannot write: it is the read-only mount, not file permissions...
    as_root = probe_writes(image, paths[:3], user="0:0")
    assert set(as_root.values()) == {"EROFS"}
    # ...and the probe does detect a writable root when there is one.
    assert set(probe_writes(image, paths[:3], user="0:0", read_only=False).values()) == {"written"}


def test_agent_starts_on_a_read_only_root_filesystem(image: str) -> None:
    # The entry point itself, as the image's user, read-only root.
    result = run_image(image, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: teleport-argocd-agent" in result.stdout
    assert result.stderr == ""
    # Every module of the agent, and every dependency it imports, loads from the byte code
    # shipped in the image (nothing is compiled at start, nothing could be written).
    result = run_python(image, IMPORT_PROBE, env={"PYTHONWARNINGS": "error::ImportWarning"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    imported = json.loads(result.stdout)
    assert imported["agent_modules"] > 0
    assert imported["from_source"] == []
    result = run_image(image, "-m", "agent", "--version", entrypoint="/opt/venv/bin/python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"teleport-argocd-agent {expected_version()}"


def test_agent_reads_a_mounted_config_as_the_image_user(image: str, tmp_path: Path) -> None:
    # As in the pod: the chart's ConfigMap is a read-only volume, the root is read-only.
    config = tmp_path / "config"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    (config / "agent.yaml").write_text(VALID_CONFIG)
    (config / "bad.yaml").write_text(VALID_CONFIG.replace("{token: argocd-bot}", "{tokn: x}"))
    volume = [f"{config}:/config:ro"]
    result = run_image(image, "validate", "--config", "/config/agent.yaml", volumes=volume)
    assert result.returncode == 0, result.stderr
    assert "proxy teleport.example.com:443" in result.stdout
    result = run_image(image, "validate", "--config", "/config/bad.yaml", volumes=volume)
    assert result.returncode == 2
    assert "tokn" in result.stderr


def test_final_image_holds_only_the_runtime(image: str) -> None:
    code = (
        "import importlib.util, json, os, shutil\n"
        "print(json.dumps({\n"
        "  'pip': importlib.util.find_spec('pip') is not None,\n"
        "  'setuptools': importlib.util.find_spec('setuptools') is not None,\n"
        "  'build': os.path.exists('/build'),\n"
        "  'shells': [s for s in ('sh', 'bash', 'dash') if shutil.which(s)],\n"
        "  'apt': bool(shutil.which('apt-get') or shutil.which('dpkg')),\n"
        "}))\n"
    )
    result = run_python(image, code)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["pip"] is False
    assert found["setuptools"] is False
    assert found["build"] is False
    labels = image_config(image)["Labels"]
    assert isinstance(labels, dict)
    if labels["org.opencontainers.image.base.name"].startswith("localhost/"):
        # The local base is distroless: nothing to exec into, nothing to install with.
        assert found["shells"] == []
        assert found["apt"] is False


def test_image_is_smaller_than_the_target(image: str) -> None:
    size = image_size(image)
    print(f"image size: {size} bytes ({size / 1e6:.1f} MB)")
    assert size < SIZE_TARGET, f"{size / 1e6:.1f} MB >= {SIZE_TARGET / 1e6:.0f} MB"


def test_second_make_image_is_a_cache_hit(image: str) -> None:
    # Back-to-back runs on an unchanged tree: the second builds nothing. (Retried because
    # other work may edit agent/ during a rebuild; a broken cache never gets a hit.)
    previous = make_image()
    for _ in range(3):
        again = make_image()
        if "up to date" in again.stderr:
            break
        previous = again
    assert "up to date" in again.stderr, again.stderr
    assert "building" not in again.stderr
    assert again.stdout.strip().splitlines()[-1] == previous.stdout.strip().splitlines()[-1]


def test_build_fails_when_version_differs_from_the_wheel(image: str, tmp_path: Path) -> None:
    # A context holding only a wheel of the real version: the builder must refuse VERSION=9.9.9
    # before installing anything (the image label and --version could otherwise disagree).
    for name in ("Dockerfile", ".dockerignore", "tools/image/build_venv.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    staged = tmp_path / "build" / "image"
    (staged / "wheels").mkdir(parents=True)
    (staged / "dist").mkdir()
    (staged / "requirements.txt").write_text("")
    (staged / "dist" / f"teleport_argocd_agent-{expected_version()}-py3-none-any.whl").write_text(
        ""
    )
    base = subprocess.run(
        [str(TOOLS / "base-image.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run(
        [
            str(TOOLS / "buildah.sh"),
            "bud",
            "--isolation",
            "chroot",
            "--pull=false",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--build-arg",
            "VERSION=9.9.9",
            "--file",
            "Dockerfile",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode != 0
    assert "no wheel for VERSION=9.9.9" in result.stdout + result.stderr
    assert f"teleport_argocd_agent-{expected_version()}" in result.stdout + result.stderr


def test_hadolint_passes_and_enforces_the_oci_labels(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    config = str(ROOT / ".hadolint.yaml")
    result = subprocess.run(
        [hadolint, "--config", config, "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check catches a release image without its licence label.
    unlabeled = tmp_path / "Dockerfile"
    unlabeled.write_text(
        (ROOT / "Dockerfile").read_text().replace("org.opencontainers.image.licenses", "x.y")
    )
    result = subprocess.run(
        [hadolint, "--config", config, str(unlabeled)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "org.opencontainers.image.licenses" in result.stdout


def test_chart_default_image_is_what_make_image_tags() -> None:
    values = ROOT / "chart" / "values.yaml"
    if not values.exists():
        pytest.skip("chart/values.yaml does not exist yet")
    image = yaml.safe_load(values.read_text())["image"]
    assert image["repository"] == REPOSITORY
    assert image.get("tag") in (None, "", expected_version())
