"""Benchmark: onboard 100 tenants into one real local cluster, and 1,000 tenants into
three (staging, production primary and canary), then re-apply.

Measures, in one process, each on fresh local clusters:
  * `tenants apply` of 100 tenants into one cluster, and the baseline:
    `kubectl apply --server-side` of exactly the same manifests (one kubectl process,
    its own batching);
  * `tenants apply` of 1,000 tenants into three clusters, then a no-op re-apply of all
    of them (observe with one LIST per kind, plan in memory, apply nothing), and the
    baseline: `kubectl apply --server-side` of the same manifests, one kubectl per
    cluster, all three at once.

Prints the machine and versions, seconds and objects per second, and as its last
line one JSON object with ``onboard_100_s``, ``kubectl_100_s``, ``onboard_1000x3_s``,
``noop_1000x3_s``, ``kubectl_1000_s``.
Targets: 1,000 tenants into three clusters ≤ 60 s, no-op ≤ 5 s.
Usage: python bench/tenants.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from _common import machine
from tenantry.kube import localcluster
from tenantry.spec import repository
from tenantry.tenancy import reconcile
from tenantry.tools import install

ENVIRONMENTS = (("staging", "primary"), ("production", "primary"), ("production", "canary"))


def write_repo(root: Path, clusters: Sequence[str], count: int) -> Path:
    """A platform repository with ``count`` tenants: one cluster is staging; with three,
    the other two are production's primary and canary."""
    (root / "tenants").mkdir(parents=True)
    environments: dict[str, list[dict[str, str]]] = {}
    for name, (environment, role) in zip(clusters, ENVIRONMENTS, strict=False):
        environments.setdefault(environment, []).append({"name": name, "local": name,
                                                         "role": role})  # fmt: skip
    platform = {
        "name": "bench",
        "environments": [{"name": e, "clusters": c} for e, c in environments.items()],
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
            "environments": list(environments),
        }
        (root / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump(tenant))
    return root


def clusters(prefix: str, count: int) -> list[str]:
    """``count`` fresh local clusters (one kwok node each)."""
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        localcluster.create(name, nodes=1)
    return names


def onboard(count: int, workdir: Path, *, clusters_n: int) -> tuple[float, float, int, float]:
    """Apply ``count`` tenants to fresh clusters: (load s, apply s, objects, no-op s)."""
    names = clusters(f"bench-t{count}", clusters_n)
    try:
        started = time.monotonic()
        repo = repository.load(write_repo(workdir / f"t{count}", names, count))
        loaded = time.monotonic() - started
        started = time.monotonic()
        reports = reconcile.apply_all(repo)
        applied = time.monotonic() - started
        started = time.monotonic()
        noops = reconcile.apply_all(repo)
        noop_s = time.monotonic() - started
        assert all(r.created == r.updated == r.deleted == 0 for r in noops), noops
        return loaded, applied, sum(r.created for r in reports), noop_s
    finally:
        for name in names:
            localcluster.delete(name)


def kubectl_baseline(count: int, workdir: Path, *, clusters_n: int) -> tuple[float, int]:
    """`kubectl apply --server-side` of the same objects on fresh clusters, one kubectl
    per cluster, all at once."""
    names = clusters(f"bench-k{count}", clusters_n)
    try:
        repo = repository.load(write_repo(workdir / f"k{count}", names, count))
        jobs = []
        total = 0
        for target in reconcile.targets(repo):
            manifests = reconcile.desired(repo, target.environment)
            total += len(manifests)
            files = []
            namespaces = [m for m in manifests if m["kind"] == "Namespace"]
            rest = [m for m in manifests if m["kind"] != "Namespace"]
            for label, batch in (("a", namespaces), ("b", rest)):
                path = workdir / f"k{count}-{target.name}-{label}.yaml"
                path.write_text(yaml.safe_dump_all(batch))
                files.append(path)
            jobs.append((target.kubeconfig, files))

        def apply(job: tuple[Path, list[Path]]) -> None:
            kubeconfig, files = job
            for path in files:  # namespaces first, as kubectl cannot order across them
                subprocess.run(
                    [str(install.binary("kubectl")), "--kubeconfig", str(kubeconfig),
                     "apply", "--server-side", "--field-manager", "bench", "-f", str(path)],
                    check=True, capture_output=True,
                )  # fmt: skip

        started = time.monotonic()
        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(apply, jobs))
        return time.monotonic() - started, total
    finally:
        for name in names:
            localcluster.delete(name)


def main() -> None:
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-repo-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    load_100, apply_100, objects_100, noop_100 = onboard(100, workdir, clusters_n=1)
    kubectl_100, kubectl_objects = kubectl_baseline(100, workdir, clusters_n=1)
    print(
        f"100 tenants, 1 cluster: load {load_100:.2f}s, apply {apply_100:.2f}s "
        f"({objects_100} objects, {objects_100 / apply_100:.0f}/s), no-op {noop_100:.2f}s"
    )
    print(
        f"baseline kubectl apply --server-side of the same {kubectl_objects} objects: "
        f"{kubectl_100:.2f}s -> tenantry is {kubectl_100 / apply_100:.2f}x kubectl's speed"
    )
    load_1000, apply_1000, objects_1000, noop_1000 = onboard(1000, workdir, clusters_n=3)
    print(
        f"1000 tenants, 3 clusters: load {load_1000:.2f}s, apply {apply_1000:.2f}s "
        f"({objects_1000} objects, {objects_1000 / apply_1000:.0f}/s), no-op {noop_1000:.2f}s"
    )
    kubectl_1000, kubectl_objects = kubectl_baseline(1000, workdir, clusters_n=3)
    print(
        f"baseline kubectl apply --server-side of the same {kubectl_objects} objects, one "
        f"kubectl per cluster at once: {kubectl_1000:.2f}s -> tenantry is "
        f"{kubectl_1000 / apply_1000:.2f}x kubectl's speed"
    )
    figures = {
        "onboard_100_s": round(apply_100, 2),
        "kubectl_100_s": round(kubectl_100, 2),
        "onboard_1000x3_s": round(apply_1000, 2),
        "noop_1000x3_s": round(noop_1000, 2),
        "load_1000_s": round(load_1000, 2),
        "objects_per_s_1000x3": round(objects_1000 / apply_1000),
        "kubectl_1000_s": round(kubectl_1000, 2),
        "ratio_kubectl_vs_tenantry_1000": round(kubectl_1000 / apply_1000, 2),
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
