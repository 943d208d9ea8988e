"""Benchmark: `tenantry verify` of one service, cold and warm, against a bare helm install.

Measures, in one process, for the example service payments/api (3 replicas, base chart):
  * cold: `tenantry verify --fresh-cluster` — a new cluster is created and deleted;
  * warm: `tenantry verify` on the warm `verify` cluster (lint, render, policy,
    onboarding, dry-run as the tenant, install --wait as the tenant, rollout, cleanup),
    run by the warm process the first verify left (`tenantry.cli.warm`), and again
    with ``TENANTRY_WARM=0`` (each in its own process: Python's start and imports);
  * baseline: a bare `helm upgrade --install --wait` of the same chart and values into
    a fresh namespace of the same warm cluster.
Each is the whole command as a user runs it (process start included), median of N
(at least 5).

Prints the machine and versions, the figures, and as its last line one JSON object with
``verify_cold_s``, ``verify_warm_s``, ``verify_warm_own_process_s``, ``bare_install_s``,
``ratio_warm_vs_bare``.
Targets (DESIGN.md): ≤ 15 s per service, ≤ 1.5x the bare install.
Usage: python bench/verify.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from lightkube.resources.core_v1 import Namespace, Pod

from _common import machine, one_service_repo
from tenantry.charts import BASE_CHART, render
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.spec import repository
from tenantry.tools import install
from tenantry.verify import run as verification


def timed(argv: list[str], *, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def bare_installs(repo: Path, workdir: Path, runs: int) -> list[float]:
    """``helm upgrade --install --wait`` of the same chart and values into a fresh
    namespace of the warm cluster, each namespace and its pods deleted at once after (as
    verify's cleanup does), so every run starts on a node with no pods stopping."""
    cluster = localcluster.get(verification.WARM_CLUSTER)
    source = render.chart_input(repository.load(repo).service("payments/api"))
    values = workdir / "values.yaml"
    values.write_text(yaml.safe_dump(source.values))
    bare = []
    with Kube.connect(cluster.kubeconfig) as kube:
        for i in range(runs):
            namespace = f"bare-{i}"
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            bare.append(
                timed(
                    [str(install.binary("helm")), "upgrade", "--install", "api", str(BASE_CHART),
                     "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
                     "--values", str(values), "--wait", "--timeout", "120s"]
                )
            )  # fmt: skip
            kube.delete(Namespace, namespace)
            kube.delete_all(Pod, namespace=namespace, grace_period_s=0)
    return bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5: a median of fewer says little")
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-verify-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    repo = one_service_repo(workdir)
    verify = [sys.executable, "-m", "tenantry", "verify", "--all", "--repo", str(repo)]
    cold = [timed([*verify, "--fresh-cluster"]) for _ in range(args.runs)]
    print(f"verify, fresh cluster: {', '.join(f'{s:.2f}s' for s in cold)}")

    try:
        timed(verify)  # creates the warm cluster and the warm process; not counted
        warm = [timed(verify) for _ in range(args.runs)]
        print(f"verify, warm cluster:  {', '.join(f'{s:.2f}s' for s in warm)}")
        own = [timed(verify, env={"TENANTRY_WARM": "0"}) for _ in range(args.runs)]
        print(f"verify, warm cluster, in its own process: {', '.join(f'{s:.2f}s' for s in own)}")
        bare = bare_installs(repo, workdir, args.runs)
    finally:
        localcluster.delete(verification.WARM_CLUSTER)
    print(f"bare helm install --wait: {', '.join(f'{s:.2f}s' for s in bare)}")

    figures = {
        "verify_cold_s": round(statistics.median(cold), 2),
        "verify_warm_s": round(statistics.median(warm), 2),
        "verify_warm_own_process_s": round(statistics.median(own), 2),
        "bare_install_s": round(statistics.median(bare), 2),
    }
    figures["ratio_warm_vs_bare"] = round(figures["verify_warm_s"] / figures["bare_install_s"], 2)
    print(
        f"median: cold {figures['verify_cold_s']}s, warm {figures['verify_warm_s']}s, "
        f"bare install {figures['bare_install_s']}s -> warm verify is "
        f"{figures['ratio_warm_vs_bare']}x the bare install"
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
