"""What every benchmark prints first: the machine and the versions of what it measured.

Run benchmarks as scripts (`python bench/NAME.py`), so this directory is on sys.path.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from tenantry.tools import catalog


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
