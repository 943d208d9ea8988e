"""The example platform repository, made to run against the test session's one cluster.

Its people lose their ``@acme.example`` (the session cluster knows ``alice``, ``bob``,
``carol``, ``erin`` and ``dana`` by token); every cluster of every environment is the
session cluster, so TokenReview and the ResourceQuota reads are real."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).parents[2] / "examples" / "platform-repo"


def example_platform(root: Path, cluster: str, *, alertmanager: str | None = None) -> Path:
    """A copy of the example repository under ``root``, on ``cluster``, reading firing
    alerts from ``alertmanager``."""
    shutil.copytree(EXAMPLE, root)
    for path in root.rglob("*.yaml"):
        path.write_text(path.read_text().replace("@acme.example", ""))
    platform = yaml.safe_load((root / "platform.yaml").read_text())
    for environment in platform["environments"]:
        for entry in environment["clusters"]:
            entry["local"] = cluster
    platform["server"] = {"managementCluster": "staging", "admins": {"users": ["dana"]},
                          "reviewCacheS": 5}  # fmt: skip
    if alertmanager:
        platform["server"]["alertmanagerUrl"] = alertmanager
    for key in ("traffic", "alerts"):
        platform.pop(key, None)
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    return root
