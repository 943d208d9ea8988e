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
``noop_1000x3_s``, ``kubectl_1000_s``, and ``cpu_s_1000x3``: the CPU seconds this
process and each kind of cluster process (kube-apiserver, etcd, ...; the three
clusters' summed) spent during the 1,000 x 3 apply, since on two cores that is
what bounds it.
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
from dataclasses import dataclass
from pathlib import Path

import yaml

import _cpu
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


@dataclass(frozen=True)
class Onboarded:
    """One onboarding run: seconds to load the repository, to apply it, the objects
    created, the no-op re-apply's seconds, and the CPU seconds each kind of process
    spent during the apply (every cluster's components summed by name)."""

    load_s: float
    apply_s: float
    objects: int
    noop_s: float
    cpu_s: dict[str, float]


def onboard(count: int, workdir: Path, *, clusters_n: int) -> Onboarded:
    """Apply ``count`` tenants to fresh clusters, then again (a no-op)."""
    names = clusters(f"bench-t{count}", clusters_n)
    try:
        started = time.monotonic()
        repo = repository.load(write_repo(workdir / f"t{count}", names, count))
        loaded = time.monotonic() - started
        pids = {
            f"{name} {component}": pid
            for name in names
            for component, pid in _cpu.cluster_pids(localcluster.get(name).workdir).items()
        }
        before, me = _cpu.snapshot(pids), _cpu.self_cpu()
        started = time.monotonic()
        reports = reconcile.apply_all(repo)
        applied = time.monotonic() - started
        cpu: dict[str, float] = {"this process (tenantry)": _cpu.self_cpu().own - me.own}
        for key, spent in _cpu.spent(before, _cpu.snapshot(pids)).items():
            component = key.split(" ", 1)[1]
            cpu[component] = cpu.get(component, 0.0) + spent.own
        started = time.monotonic()
        noops = reconcile.apply_all(repo)
        noop_s = time.monotonic() - started
        assert all(r.created == r.updated == r.deleted == 0 for r in noops), noops
        return Onboarded(loaded, applied, sum(r.created for r in reports), noop_s, cpu)
    finally:
        for name in names:
            localcluster.delete(name)


def print_cpu(run: Onboarded) -> None:
    """Where the CPU went during an apply, per kind of process, busiest first."""
    busy = sum(run.cpu_s.values())
    print(f"  CPU seconds during the apply ({run.apply_s:.1f}s wall, {os.cpu_count()} cores):")
    for name, seconds in sorted(run.cpu_s.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<26} {seconds:7.2f} s  {1000 * seconds / run.objects:6.3f} ms/object")
    print(f"    {'all':<26} {busy:7.2f} s  {1000 * busy / run.objects:6.3f} ms/object "
          f"({busy / run.apply_s / (os.cpu_count() or 1):.0%} of the machine)")  # fmt: skip


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

    small = onboard(100, workdir, clusters_n=1)
    kubectl_100, kubectl_objects = kubectl_baseline(100, workdir, clusters_n=1)
    print(
        f"100 tenants, 1 cluster: load {small.load_s:.2f}s, apply {small.apply_s:.2f}s "
        f"({small.objects} objects, {small.objects / small.apply_s:.0f}/s), "
        f"no-op {small.noop_s:.2f}s"
    )
    print(
        f"baseline kubectl apply --server-side of the same {kubectl_objects} objects: "
        f"{kubectl_100:.2f}s -> tenantry is {kubectl_100 / small.apply_s:.2f}x kubectl's speed"
    )
    big = onboard(1000, workdir, clusters_n=3)
    print(
        f"1000 tenants, 3 clusters: load {big.load_s:.2f}s, apply {big.apply_s:.2f}s "
        f"({big.objects} objects, {big.objects / big.apply_s:.0f}/s), no-op {big.noop_s:.2f}s"
    )
    print_cpu(big)
    kubectl_1000, kubectl_objects = kubectl_baseline(1000, workdir, clusters_n=3)
    print(
        f"baseline kubectl apply --server-side of the same {kubectl_objects} objects, one "
        f"kubectl per cluster at once: {kubectl_1000:.2f}s -> tenantry is "
        f"{kubectl_1000 / big.apply_s:.2f}x kubectl's speed"
    )
    figures = {
        "onboard_100_s": round(small.apply_s, 2),
        "kubectl_100_s": round(kubectl_100, 2),
        "onboard_1000x3_s": round(big.apply_s, 2),
        "noop_1000x3_s": round(big.noop_s, 2),
        "load_1000_s": round(big.load_s, 2),
        "objects_per_s_1000x3": round(big.objects / big.apply_s),
        "kubectl_1000_s": round(kubectl_1000, 2),
        "ratio_kubectl_vs_tenantry_1000": round(kubectl_1000 / big.apply_s, 2),
        "cpu_s_1000x3": {name: round(value, 2) for name, value in big.cpu_s.items()},
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
