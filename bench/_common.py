"""What every benchmark prints first: the machine and the versions of what it measured.

Run benchmarks as scripts (`python bench/NAME.py`), so this directory is on sys.path.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from tenantry import processes
from tenantry.tools import catalog

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "platform-repo"
# How long a started process may take to answer on its port.
READY_S = 60


def machine() -> dict[str, str]:
    """The facts a reader needs to compare figures across machines."""
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores {mem_kb // 1024 // 1024} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        **{tool.name: tool.version for tool in catalog.GO_TOOLS},
    }


def one_service_repo(workdir: Path) -> Path:
    """A copy of the example repository with payments/api as its only service."""
    repo = workdir / "repo"
    shutil.copytree(EXAMPLE, repo)
    shutil.rmtree(repo / "services" / "checkout")
    shutil.rmtree(repo / "services" / "payments" / "ledger")
    return repo


def start(name: str, argv: list[str], *, port: int, env: dict[str, str], logs: Path,
          procs: list[subprocess.Popen[bytes]]) -> None:  # fmt: skip
    """A process of its own session (kept in ``procs``), ready when it answers on ``port``."""
    with (logs / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env}, start_new_session=True)  # fmt: skip
    procs.append(process)
    deadline = time.monotonic() + READY_S
    while not processes.answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (logs / f"{name}.log").read_text()[-3000:]
            raise RuntimeError(f"{name} did not answer within {READY_S} s:\n{tail}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to this pid (a worker finishes what it holds), then wait; kill if stuck."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
