"""Benchmark: how long a real local cluster takes to create, and a `helm install --wait` on it.

Measures, in one process:
  * cluster create (kwokctl binary runtime, 3 simulated nodes, until nodes are Ready):
    median of 3, each cluster deleted after;
  * on one warm cluster, `helm upgrade --install --wait` of a 3-replica Deployment
    (tests/data/charts/rollout): median of 3, each into a fresh namespace;
  * the baseline, the same install without --wait, so the ratio shows what waiting
    for a real rollout (scheduler, controller-manager, kwok) costs.

Prints the machine and versions, the figures, and as its last line one JSON object.
Usage: python bench/cluster.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import machine
from tenantry import helm
from tenantry.kube import localcluster
from tenantry.kube.client import Kube

CHART = Path(__file__).resolve().parent.parent / "tests" / "data" / "charts" / "rollout"


def timed_create(name: str) -> float:
    started = time.monotonic()
    localcluster.create(name, nodes=3)
    seconds = time.monotonic() - started
    localcluster.delete(name)
    return seconds


def timed_install(cluster: localcluster.LocalCluster, namespace: str, *, wait: bool) -> float:
    with Kube.connect(cluster.kubeconfig) as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    started = time.monotonic()
    helm.upgrade_install(target, release="web", chart=CHART, wait=wait, timeout_s=120)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")

    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    creates = [timed_create(f"bench-create-{i}") for i in range(args.runs)]
    print(f"cluster create: {', '.join(f'{s:.1f}s' for s in creates)}")

    warm = localcluster.create("bench-warm", nodes=3)
    try:
        waits = [timed_install(warm, f"wait-{i}", wait=True) for i in range(args.runs)]
        bare = [timed_install(warm, f"nowait-{i}", wait=False) for i in range(args.runs)]
    finally:
        localcluster.delete("bench-warm")
    print(f"helm install --wait (3 replicas): {', '.join(f'{s:.2f}s' for s in waits)}")
    print(f"helm install, no wait (baseline): {', '.join(f'{s:.2f}s' for s in bare)}")

    figures = {
        "cluster_create_s": round(statistics.median(creates), 2),
        "helm_install_wait_s": round(statistics.median(waits), 2),
        "helm_install_nowait_s": round(statistics.median(bare), 2),
        "ratio_wait_vs_nowait": round(statistics.median(waits) / statistics.median(bare), 2),
    }
    print(
        f"median: create {figures['cluster_create_s']}s, install --wait "
        f"{figures['helm_install_wait_s']}s = {figures['ratio_wait_vs_nowait']}x the bare install"
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
