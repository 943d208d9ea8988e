"""What every benchmark prints first: the machine and the versions of what it measured.

Run benchmarks as scripts (`python bench/NAME.py`), so this directory is on sys.path.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from tenantry.tools import catalog

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "platform-repo"


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
