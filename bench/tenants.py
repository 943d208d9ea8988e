"""Benchmark: onboard 100 and 1,000 tenants into one real local cluster, then re-apply.

Measures, in one process, each on a fresh local cluster:
  * `tenants apply` of 100 tenants, and the baseline: `kubectl apply --server-side`
    of exactly the same manifests (one kubectl process, its own batching);
  * `tenants apply` of 1,000 tenants, then a no-op re-apply of all 1,000
    (observe with one LIST per kind, plan in memory, apply nothing).

Prints the machine and versions, seconds and objects per second, and as its last
line one JSON object with ``onboard_100_s``, ``onboard_1000_s``, ``noop_1000_s``.
Targets (DESIGN.md): 1,000 tenants ≤ 60 s, no-op ≤ 5 s.
Usage: python bench/tenants.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import machine
from tenantry.kube import localcluster
from tenantry.spec import repository
from tenantry.tenancy import reconcile
from tenantry.tools import install


def write_repo(root: Path, cluster: str, count: int) -> Path:
    """A platform repository with ``count`` tenants on one local cluster."""
    (root / "tenants").mkdir(parents=True)
    platform = {
        "name": "bench",
        "environments": [{"name": "staging", "clusters": [{"name": cluster, "local": cluster}]}],
        "defaults": {
            "quota": {"cpu": "4", "memory": "8Gi", "pods": "20"},
            "container": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
        },
        "registries": ["registry.bench.example"],
    }
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    for i in range(count):
        name = f"team-{i:04d}"
        tenant = {
            "name": name,
            "owners": {"users": [f"owner-{i}@bench.example"]},
            "members": {"groups": [f"{name}-devs"]},
            "environments": ["staging"],
        }
        (root / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump(tenant))
    return root


def onboard(count: int, workdir: Path) -> tuple[float, float, int, float]:
    """Apply ``count`` tenants to a fresh cluster: (load s, apply s, objects, no-op s)."""
    name = f"bench-t{count}"
    localcluster.create(name, nodes=1)
    try:
        started = time.monotonic()
        repo = repository.load(write_repo(workdir / name, name, count))
        loaded = time.monotonic() - started
        started = time.monotonic()
        (report,) = reconcile.apply_all(repo)
        applied = time.monotonic() - started
        started = time.monotonic()
        (noop,) = reconcile.apply_all(repo)
        noop_s = time.monotonic() - started
        assert noop.created == noop.updated == noop.deleted == 0, noop
        return loaded, applied, report.created, noop_s
    finally:
        localcluster.delete(name)


def kubectl_baseline(count: int, workdir: Path) -> tuple[float, int]:
    """`kubectl apply --server-side` of the same objects on a fresh cluster."""
    name = f"bench-k{count}"
    cluster = localcluster.create(name, nodes=1)
    try:
        repo = repository.load(write_repo(workdir / name, name, count))
        manifests = reconcile.desired(repo, "staging")
        namespaces = [m for m in manifests if m["kind"] == "Namespace"]
        rest = [m for m in manifests if m["kind"] != "Namespace"]
        files = []
        for label, batch in (("a", namespaces), ("b", rest)):
            path = workdir / f"{name}-{label}.yaml"
            path.write_text(yaml.safe_dump_all(batch))
            files.append(path)
        started = time.monotonic()
        for path in files:  # namespaces first, as kubectl cannot order across them
            subprocess.run(
                [str(install.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig),
                 "apply", "--server-side", "--field-manager", "bench", "-f", str(path)],
                check=True, capture_output=True,
            )  # fmt: skip
        return time.monotonic() - started, len(manifests)
    finally:
        localcluster.delete(name)


def main() -> None:
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-repo-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    load_100, apply_100, objects_100, noop_100 = onboard(100, workdir)
    kubectl_100, kubectl_objects = kubectl_baseline(100, workdir)
    print(
        f"100 tenants: load {load_100:.2f}s, apply {apply_100:.2f}s "
        f"({objects_100} objects, {objects_100 / apply_100:.0f}/s), no-op {noop_100:.2f}s"
    )
    print(
        f"baseline kubectl apply --server-side of the same {kubectl_objects} objects: "
        f"{kubectl_100:.2f}s -> tenantry is {kubectl_100 / apply_100:.2f}x kubectl's speed"
    )
    load_1000, apply_1000, objects_1000, noop_1000 = onboard(1000, workdir)
    print(
        f"1000 tenants: load {load_1000:.2f}s, apply {apply_1000:.2f}s "
        f"({objects_1000} objects, {objects_1000 / apply_1000:.0f}/s), no-op {noop_1000:.2f}s"
    )
    figures = {
        "onboard_100_s": round(apply_100, 2),
        "onboard_1000_s": round(apply_1000, 2),
        "noop_1000_s": round(noop_1000, 2),
        "load_1000_s": round(load_1000, 2),
        "objects_per_s_1000": round(objects_1000 / apply_1000),
        "kubectl_100_s": round(kubectl_100, 2),
        "ratio_kubectl_vs_tenantry_100": round(kubectl_100 / apply_100, 2),
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
