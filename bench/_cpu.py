"""Where the CPU goes: CPU seconds of named processes between two readings, from
``/proc/PID/stat`` (user + system time of the process itself, and of its children it
has waited for — a deployer worker's helm runs are counted there)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of one process: its own, and its reaped children's."""

    own: float
    children: float


def read(pid: int) -> Cpu:
    """The process's CPU seconds so far (fields 14 to 17 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return Cpu((utime + stime) / _TICK, (cutime + cstime) / _TICK)


def snapshot(pids: Mapping[str, int]) -> dict[str, Cpu]:
    """Each named process's CPU seconds now."""
    return {name: read(pid) for name, pid in pids.items()}


def spent(before: Mapping[str, Cpu], after: Mapping[str, Cpu]) -> dict[str, Cpu]:
    """CPU seconds each process spent between two snapshots."""
    return {
        name: Cpu(after[name].own - before[name].own,
                  after[name].children - before[name].children)
        for name in before if name in after
    }  # fmt: skip


def children(pid: int) -> list[int]:
    """The running children of ``pid`` (a worker's tenantry-helmd, say)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cluster_pids(workdir: Path) -> dict[str, int]:
    """A local cluster's components (kube-apiserver, etcd, kwok-controller, ...) by the
    pid files kwokctl keeps."""
    return {f.stem: int(f.read_text().strip()) for f in sorted((workdir / "pids").glob("*.pid"))}


def self_cpu() -> Cpu:
    """This process's CPU seconds (and its waited-for children's)."""
    times = os.times()
    return Cpu(times.user + times.system, times.children_user + times.children_system)
