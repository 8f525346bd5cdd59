"""The Dockerfile's builder stage: make /opt/venv from the build context, offline.

Runs with the base image's own python3 (standard library only, no shell needed), so the venv's
interpreter path is the one the final stage (same base) has. Reads what `make image`
(tools/build-image.sh) put in /build:

    requirements.txt   every run-time dependency pinned with its hashes (uv export of uv.lock)
    wheels/            those wheels, downloaded by hash on the build machine
    dist/              the project's wheel, built from the tree

and writes:

    /opt/venv          the runtime: dependencies + the agent, byte-compiled, no pip
    /rootfs/etc/       passwd and group with the agent's fixed non-root user added

The build fails if a hash does not match, a dependency is missing, or the wheel's version is not
the VERSION build argument (the image's label and the agent's --version must agree).
"""

from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

BUILD = Path("/build")
VENV = Path("/opt/venv")
INSTALLER = BUILD / "installer"  # pip lives here, never in the runtime venv
STAGE = Path("/rootfs")
USER, UID = "agent", 65532
PROJECT = "teleport-argocd-agent"
# Pure-Python packages too big to ship as loose files: kubernetes carries ~2,000 generated
# modules (sync and asyncio clients, ~120 MB as .py + .pyc). Zipped with their byte code they
# are ~20 MB and import the same way (zipimport; sources stay inside for tracebacks).
ZIPPED = ["kubernetes"]


def run(*args: str | Path) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(a) for a in args], check=True)


def pip(*args: str | Path) -> None:
    run(INSTALLER / "bin/pip", "--python", VENV / "bin/python", *args)


def site_packages() -> Path:
    out = subprocess.run(
        [VENV / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def zip_package(site: Path, name: str) -> None:
    """Replace site/name/ by site/name.zip (sources + legacy-layout .pyc) and a .pth entry."""
    package = site / name
    archive = site / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(site).as_posix()
            zf.write(path, rel)
            if path.suffix == ".py":
                pyc = path.with_suffix(".pyc")
                py_compile.compile(
                    str(path),
                    cfile=str(pyc),
                    dfile=f"{archive}/{rel}",
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
                zf.write(pyc, rel[:-3] + ".pyc")
                pyc.unlink()
    shutil.rmtree(package)
    (site / f"_{name}_zip.pth").write_text(f"{name}.zip\n")


def add_user(stage: Path) -> None:
    """passwd/group of the base plus the agent's user, unless the base already has the UID."""
    (stage / "etc").mkdir(parents=True, exist_ok=True)
    for name, line in (
        ("passwd", f"{USER}:x:{UID}:{UID}:{PROJECT}:/nonexistent:/usr/sbin/nologin"),
        ("group", f"{USER}:x:{UID}:"),
    ):
        entries = Path("/etc", name).read_text().splitlines()
        if not any(e.split(":")[2:3] == [str(UID)] for e in entries):
            entries.append(line)
        (stage / "etc" / name).write_text("\n".join(entries) + "\n")


def main() -> int:
    version = os.environ.get("VERSION", "")
    if not version:
        sys.exit("build_venv: the VERSION build argument is required")
    wheel = BUILD / "dist" / f"{PROJECT.replace('-', '_')}-{version}-py3-none-any.whl"
    if not wheel.exists():
        found = ", ".join(p.name for p in (BUILD / "dist").glob("*.whl")) or "none"
        sys.exit(f"build_venv: no wheel for VERSION={version} in the context (found: {found})")

    run(sys.executable, "-m", "venv", INSTALLER)
    run(sys.executable, "-m", "venv", "--without-pip", VENV)
    common = ["--no-cache-dir", "--disable-pip-version-check", "--no-index", "--no-compile"]
    pip(
        "install",
        *common,
        "--require-hashes",
        "--only-binary=:all:",
        "--no-deps",
        "--find-links",
        str(BUILD / "wheels"),
        "--requirement",
        str(BUILD / "requirements.txt"),
    )
    pip("install", *common, "--no-deps", str(wheel))
    pip("check")

    out = subprocess.run(
        [
            VENV / "bin/python",
            "-c",
            f"import importlib.metadata as m; print(m.version({PROJECT!r}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    if out.stdout.strip() != version:
        sys.exit(f"build_venv: installed {PROJECT} is {out.stdout.strip()}, VERSION is {version}")

    site = site_packages()
    for name in ZIPPED:
        zip_package(site, name)
    # Byte code for everything else, checked by hash-less flags: the root filesystem is read-only
    # at run time, so Python could never write a stale .pyc back anyway.
    ok = compileall.compile_dir(
        str(VENV / "lib"),
        quiet=1,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        sys.exit("build_venv: byte-compiling the venv failed")
    for script in (VENV / "bin").glob("[Aa]ctivate*"):
        script.unlink()  # shell helpers for humans; the image has no shell

    add_user(STAGE)
    # The agent and its dependencies import from the zip as they did from the directory.
    run(VENV / "bin/python", "-c", "import agent, agent.commands.cli, " + ", ".join(ZIPPED))
    print(f"build_venv: {PROJECT} {version} in {VENV} ({sysconfig.get_python_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
