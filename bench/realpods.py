"""Benchmark: real pods on a real kubelet node against kwok's simulated ones.

Measures, in one run, on this machine:
  * ``real_cluster_create_s``: `localcluster.create` of a cluster with one real node
    (API server, etcd, controllers, kwok, containerd, kubelet; Node Ready), beside
    ``kwok_cluster_create_s``, the same without the real node;
  * ``real_install_wait_s`` / ``kwok_install_wait_s``: `helm upgrade --install --wait` of
    the example service payments/api (base chart, 3 replicas, readiness probe) into a
    fresh namespace, its pods on the real node (the kwok node beside it is tainted) and on kwok;
  * ``real_verify_s`` / ``kwok_verify_s``: `tenantry verify --all --kubeconfig` of the
    same service in each cluster (lint, render, policy, onboarding, dry-run and install
    as the tenant, rollout, cleanup), the real node's images already loaded;
  * ``upgrade_failed_requests``: requests that failed or answered an error while the
    3 replicas on the real node were upgraded (`helm upgrade --wait`, the base chart's
    PDB, maxUnavailable 0, readiness) under steady load through the cluster ingress
    (`tenantry.traffic.ingress`: HAProxy filled from the service's EndpointSlices);
    baseline ``steady_failed_requests``: the same load for as long, no upgrade.
Each time is the median of ``--runs``.

Prints the machine and versions, the figures, and as its last line one JSON object.
Usage: python bench/realpods.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from _common import machine, one_service_repo
from tenantry import processes
from tenantry.charts import BASE_CHART, render
from tenantry.kube import localcluster, realnodes
from tenantry.spec import repository
from tenantry.tools import install
from tenantry.traffic import ingress
from tenantry.traffic.load import Load

SERVICE = "payments/api"


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} … failed:\n{done.stdout}\n{done.stderr}")


def kubectl(cluster: localcluster.LocalCluster, *args: str) -> list[str]:
    return [str(install.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig), *args]


def helm_install(cluster: localcluster.LocalCluster, values: Path, namespace: str) -> float:
    run(kubectl(cluster, "create", "namespace", namespace))
    return timed(lambda: run(
        [str(install.binary("helm")), "upgrade", "--install", "api", str(BASE_CHART),
         "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
         "--values", str(values), "--wait", "--timeout", "180s"]
    ))  # fmt: skip


def failed(load: Load) -> int:
    return load.versions["failed"] + load.versions["error"]


def upgrade_under_load(
    cluster: localcluster.LocalCluster, values: Path, image: str, workdir: Path
) -> tuple[int, int, int]:
    """(failed during the upgrade, failed in as long without one, requests in all)."""
    namespace = "upgrade"
    helm_install(cluster, values, namespace)
    backend = ingress.Backend("payments-api", processes.free_port(), namespace, "api")
    cluster_ingress = ingress.Ingress("bench-ingress", workdir / "ingress", [backend],
                                      stats_port=processes.free_port())  # fmt: skip
    (workdir / "ingress").mkdir()
    cluster_ingress.start()
    controller = ingress.Controller(cluster_ingress, cluster.connect)
    done = threading.Event()
    syncing = threading.Thread(target=controller.run, args=(done.is_set,), daemon=True)
    syncing.start()
    url = f"http://127.0.0.1:{backend.port}/"
    try:
        deadline = time.monotonic() + 60
        while len(controller.sync().get(backend.route, [])) < 3:
            if time.monotonic() > deadline:
                raise SystemExit("the ingress never had the 3 pods")
            time.sleep(0.2)
        new = image.rsplit(":", 1)[0] + ":1.4.1"
        localcluster.load_images(cluster, [new])
        upgraded = yaml.safe_load(values.read_text()) | {"image": new}
        (workdir / "upgraded.yaml").write_text(yaml.safe_dump(upgraded))
        load = Load(url, threads=2, interval_s=0.02)
        took = timed(lambda: run(
            [str(install.binary("helm")), "upgrade", "api", str(BASE_CHART),
             "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
             "--values", str(workdir / "upgraded.yaml"), "--wait", "--timeout", "180s"]
        ))  # fmt: skip
        load.stop()
        print(f"rolling upgrade under load: {took:.1f}s, {dict(load.versions)}")
        steady = Load(url, threads=2, interval_s=0.02)
        time.sleep(took)  # the baseline's duration, not a synchronisation
        steady.stop()
        print(f"same load, no upgrade:      {took:.1f}s, {dict(steady.versions)}")
        total = sum(load.versions.values()) + sum(steady.versions.values())
        return failed(load), failed(steady), total
    finally:
        done.set()
        syncing.join(timeout=10)
        controller.close()
        cluster_ingress.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    realnodes.preflight()
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-realpods-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")
    repo = repository.load(one_service_repo(workdir))
    source = render.chart_input(repo.service(SERVICE))
    values = workdir / "values.yaml"
    values.write_text(yaml.safe_dump(source.values))
    image = str(source.values["image"])

    created: list[str] = []

    def create(real: bool) -> localcluster.LocalCluster:
        name = f"bench-{'real' if real else 'kwok'}-{secrets.token_hex(2)}"
        created.append(name)
        return localcluster.create(name, nodes=1, real_nodes=1 if real else 0)

    try:
        kwok_create = [timed(lambda: create(False)) for _ in range(args.runs)]
        real_create = [timed(lambda: create(True)) for _ in range(args.runs)]
        print(f"cluster create, kwok only:   {', '.join(f'{s:.2f}s' for s in kwok_create)}")
        print(f"cluster create, 1 real node: {', '.join(f'{s:.2f}s' for s in real_create)}")
        kwok, real = localcluster.get(created[0]), localcluster.get(created[-1])
        localcluster.load_images(real, [image])

        kwok_install = [helm_install(kwok, values, f"kwok-{i}") for i in range(args.runs)]
        real_install = []
        for i in range(args.runs):  # one at a time: the real node has 2 cores to request
            real_install.append(helm_install(real, values, f"real-{i}"))
            run(kubectl(real, "delete", "namespace", f"real-{i}", "--wait=true"))
        print(f"helm install --wait, kwok:      {', '.join(f'{s:.2f}s' for s in kwok_install)}")
        print(f"helm install --wait, real node: {', '.join(f'{s:.2f}s' for s in real_install)}")

        def verify(cluster: localcluster.LocalCluster) -> float:
            return timed(lambda: run(
                [sys.executable, "-m", "tenantry", "verify", "--all", "--repo", str(repo.root),
                 "--kubeconfig", str(cluster.kubeconfig)]
            ))  # fmt: skip

        kwok_verify = [verify(kwok) for _ in range(args.runs)]
        real_verify = [verify(real) for _ in range(args.runs)]
        print(f"verify, kwok:      {', '.join(f'{s:.2f}s' for s in kwok_verify)}")
        print(f"verify, real node: {', '.join(f'{s:.2f}s' for s in real_verify)}")
        upgrade_failed, steady_failed, requests = upgrade_under_load(real, values, image, workdir)
    finally:
        for name in created:
            localcluster.delete(name)

    figures = {
        "kwok_cluster_create_s": round(statistics.median(kwok_create), 2),
        "real_cluster_create_s": round(statistics.median(real_create), 2),
        "kwok_install_wait_s": round(statistics.median(kwok_install), 2),
        "real_install_wait_s": round(statistics.median(real_install), 2),
        "kwok_verify_s": round(statistics.median(kwok_verify), 2),
        "real_verify_s": round(statistics.median(real_verify), 2),
        "upgrade_failed_requests": upgrade_failed,
        "steady_failed_requests": steady_failed,
        "load_requests": requests,
    }
    print(
        f"median: create {figures['real_cluster_create_s']}s with a real node "
        f"(kwok only {figures['kwok_cluster_create_s']}s); install --wait "
        f"{figures['real_install_wait_s']}s real vs {figures['kwok_install_wait_s']}s kwok; "
        f"verify {figures['real_verify_s']}s real vs {figures['kwok_verify_s']}s kwok; "
        f"{upgrade_failed} failed requests in a rolling upgrade under load "
        f"({steady_failed} without one; {requests} requests in all)"
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
