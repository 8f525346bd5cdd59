#!/usr/bin/env python3
"""Assembles a distroless-style Python root filesystem from a Debian staging chroot.

    base_rootfs.py STAGING TARGET PACKAGE...

STAGING is a Debian chroot in which PACKAGE... (and the essential set) were installed with their
maintainer scripts run (mmdebstrap does this). TARGET receives only what a Python program needs at
run time: the files of PACKAGE... and of their dependencies, minus the packaging and shell tooling
(dpkg, debconf, perl, coreutils, bash, ...), minus documentation, plus the few files the maintainer
scripts generated (compiled standard library, CA bundle, passwd/group). No shell, no package
manager. A filtered /var/lib/dpkg/status lists exactly the packages whose files were taken, so image
scanners still see what is inside.

Standard library only: it runs with the machine's python3 before any project environment exists.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

# Dependencies we do not follow: they are needed to install packages, not to run Python.
EXCLUDED = {
    "awk",
    "base-passwd",
    "bash",
    "coreutils",
    "dash",
    "debconf",
    "debconf-2.0",
    "debianutils",
    "dpkg",
    "init-system-helpers",
    "libc-bin",
    "mawk",
    "openssl",
    "perl-base",
    "sensible-utils",
    "usrmerge",
}

# Paths (relative, after /usr merging) that are never copied.
DROPPED = re.compile(
    r"^usr/share/(doc|man|info|locale|lintian|bug|doc-base|bash-completion|gdb)/"
    r"|^usr/lib/[^/]+-linux-gnu[^/]*/gconv/"
)
KEPT_DOCS = re.compile(r"^usr/share/doc/[^/]+/copyright$")

# Files that maintainer scripts generate (so no package lists them) and that we keep.
GENERATED = [
    "etc/passwd",
    "etc/group",
    "etc/nsswitch.conf",
    "etc/ld.so.conf",
    "etc/ca-certificates.conf",
    "etc/ssl/certs",  # the CA bundle and its hash links
    "usr/lib/ssl/cert.pem",  # OpenSSL's default CA paths (the openssl package ships these links)
    "usr/lib/ssl/certs",
    "usr/lib/locale/C.utf8",  # LANG=C.UTF-8 (libc-bin ships it)
]

MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

# Empty directories every container runtime expects, with their modes.
SKELETON = {
    "dev": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "run": 0o755,
    "tmp": 0o1777,
    "var/tmp": 0o1777,
    "root": 0o700,
    "home": 0o755,
    "etc": 0o755,
    "opt": 0o755,
}


def parse_status(text: str) -> dict[str, dict[str, str]]:
    packages: dict[str, dict[str, str]] = {}
    for paragraph in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        fields["_raw"] = paragraph
        if fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields
    return packages


def providers(installed: dict[str, dict[str, str]]) -> dict[str, str]:
    """Virtual package name -> an installed package that provides it."""
    provided: dict[str, str] = {}
    for package, fields in sorted(installed.items()):
        for entry in filter(None, (e.strip() for e in fields.get("Provides", "").split(","))):
            provided.setdefault(entry.split(" ")[0], package)
    return provided


def dependencies(fields: dict[str, str], installed: dict[str, dict[str, str]]) -> list[str]:
    provided = providers(installed)
    names = []
    for field in ("Pre-Depends", "Depends"):
        for clause in filter(None, (c.strip() for c in fields.get(field, "").split(","))):
            # "a (>= 1) | b": the first alternative that is installed (or provided).
            for alternative in clause.split("|"):
                name = alternative.strip().split(" ")[0].split(":")[0]
                if name in installed or name in EXCLUDED:
                    names.append(name)
                    break
                if name in provided:
                    names.append(provided[name])
                    break
            else:
                raise SystemExit(f"base: unresolved dependency {clause!r} of {fields['Package']}")
    return names


def closure(roots: list[str], installed: dict[str, dict[str, str]]) -> list[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in EXCLUDED:
            continue
        if name not in installed:
            raise SystemExit(f"base: package {name} is not installed in the staging chroot")
        seen.add(name)
        todo.extend(dependencies(installed[name], installed))
    return sorted(seen)


def canonical(path: str) -> str:
    """A path as dpkg lists it ("/lib/x/libc.so.6") -> its place in a merged-/usr tree."""
    rel = path.lstrip("/")
    head, _, tail = rel.partition("/")
    if head in MERGED:
        rel = MERGED[head] + ("/" + tail if tail else "")
    return rel


def package_files(staging: Path, name: str, fields: dict[str, str]) -> list[str]:
    info = staging / "var/lib/dpkg/info"
    arch = fields.get("Architecture", "")
    for candidate in (info / f"{name}:{arch}.list", info / f"{name}.list"):
        if candidate.exists():
            return [canonical(p) for p in candidate.read_text().splitlines() if p not in ("/.", "")]
    raise SystemExit(f"base: no file list for {name}")


def copy_entry(staging: Path, target: Path, rel: str) -> None:
    src, dst = staging / rel, target / rel
    if not os.path.lexists(src) or os.path.lexists(dst):
        return
    make_parents(staging, target, rel)
    st = src.lstat()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        dst.mkdir()
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
    else:
        return  # device nodes and the like: the runtime provides /dev
    os.lchown(dst, st.st_uid, st.st_gid)


def make_parents(staging: Path, target: Path, rel: str) -> None:
    parts = Path(rel).parts[:-1]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if os.path.lexists(target / sub):
            continue
        if os.path.lexists(staging / sub):
            copy_entry(staging, target, sub)  # keeps the staging directory's mode and owner
        else:
            (target / sub).mkdir(mode=0o755)


def copy_tree(staging: Path, target: Path, rel: str) -> None:
    copy_entry(staging, target, rel)
    src = staging / rel
    if src.is_dir() and not src.is_symlink():
        for child in sorted(os.listdir(src)):
            copy_tree(staging, target, f"{rel}/{child}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    staging, target, roots = Path(argv[0]), Path(argv[1]), argv[2:]
    installed = parse_status((staging / "var/lib/dpkg/status").read_text())
    selected = closure(roots, installed)

    target.mkdir(parents=True, exist_ok=False)
    for link, dest in MERGED.items():
        if os.path.lexists(staging / link):
            os.symlink(dest, target / link)
    for rel, mode in SKELETON.items():
        (target / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(target / rel, mode)

    copied = 0
    for name in selected:
        for rel in package_files(staging, name, installed[name]):
            if DROPPED.match(rel) and not KEPT_DOCS.match(rel):
                continue
            copy_entry(staging, target, rel)
            copied += 1
            if rel.endswith(".py"):  # py3compile's output next to each module
                cache = staging / os.path.dirname(rel) / "__pycache__"
                stem = os.path.basename(rel)[:-3] + "."
                if cache.is_dir():
                    for pyc in sorted(os.listdir(cache)):
                        if pyc.startswith(stem) and pyc.endswith(".pyc"):
                            copy_entry(staging, target, f"{os.path.dirname(rel)}/__pycache__/{pyc}")
    for rel in GENERATED:
        copy_tree(staging, target, rel)

    status = target / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("\n\n".join(installed[name]["_raw"] for name in selected) + "\n")
    subprocess.run(["ldconfig", "-X", "-r", str(target)], check=True)

    print(f"base: {len(selected)} packages, {copied} paths: {' '.join(selected)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
