"""What Linux's /proc says about a process: a memory field and the CPU time it has used.

The benchmarks and the Argo CD harness measure servers (and the benchmark's own cycle process)
with these. Nothing but the standard library: the cycle process measures its own peak memory,
and an import here must not add to it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "status_kib"]

_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int | str, name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status``: ``VmRSS`` (resident now), ``VmHWM`` (its
    high-water mark). ``pid`` may be ``"self"``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def cpu_seconds(pid: int | str) -> float:
    """User plus system CPU time the process has used so far (``utime`` + ``stime``)."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
