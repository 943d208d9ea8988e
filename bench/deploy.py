"""Benchmark: S3 upload → staging deploy started, and deployer throughput with 1 and 2 workers.

Everything real: the local S3/SQS server (moto), one local cluster as staging, helm,
`tenantry deployer` worker processes sharing a SQLite ledger.

* latency: one worker idle on the queue; N times, upload a chart archive and time
  from the PutObject call returning to the deployment's ``started`` row in the
  ledger (p50, p99);
* throughput: upload M archives of M different services at once and time until the
  ledger shows all M succeeded, with 1 worker and then 2 (baseline: 1 worker).

Prints the machine and versions, the figures, and as its last line one JSON object
with ``event_to_deploy_p50_s``, ``event_to_deploy_p99_s``, ``releases_1000_s``
(extrapolated from M unless ``--releases 1000``; the JSON says which),
``releases_per_min_1w``, ``releases_per_min_2w``.
Usage: python bench/deploy.py [--events 50] [--releases 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from _common import machine
from tenantry import aws
from tenantry.artifacts import package, publishing
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, now, tables
from tenantry.local import awsserver, plugin
from tenantry.spec import repository
from tenantry.tenancy import reconcile

REGISTRY = "registry.bench.example"


def write_repo(root: Path, cluster: str, services: int) -> Path:
    (root / "tenants").mkdir(parents=True)
    platform = {
        "name": "bench",
        "environments": [{"name": "staging", "clusters": [{"name": cluster, "local": cluster}]}],
        "defaults": {"quota": {"cpu": "500", "memory": "500Gi", "pods": "5000", "services": "2000"},
                     "container": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                   "limits": {"cpu": "10m", "memory": "16Mi"}}},
        "registries": [REGISTRY],
        "artifacts": {"bucket": "bench-charts", "endpoint": "local"},
        "queue": {"name": "bench-events", "maxReceiveCount": 5, "visibilityTimeoutS": 60},
    }  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    (root / "tenants" / "bench.yaml").write_text(
        yaml.safe_dump({"name": "bench", "owners": {"users": ["b"]}, "environments": ["staging"]})
    )
    for i in range(services):
        service = root / "services" / "bench" / f"svc-{i:04d}"
        service.mkdir(parents=True)
        service.joinpath("service.yaml").write_text(yaml.safe_dump({
            "name": f"svc-{i:04d}", "version": "1.0.0", "image": f"{REGISTRY}/bench/app:1",
            "replicas": 1, "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                         "limits": {"cpu": "10m", "memory": "16Mi"}}}))  # fmt: skip
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "b"],
        check=True,
    )
    return root


def start_workers(repo: Path, count: int, database: str) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenantry",
                "deployer",
                "--repo",
                str(repo),
                "--worker",
                f"bench-{i}",
                "--wait",
                "1",
            ],
            env={**os.environ, "TENANTRY_DATABASE_URL": database},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


def upload(clients: aws.Clients, ledger: Ledger, archive: bytes, digest: str, key: str) -> None:
    """What `tenantry publish` does, minus packaging: the publication in the ledger (the
    deployer trusts only that) and the upload."""
    service, version = Path(key).name.removesuffix(".tgz").rsplit("-", 1)
    ledger.add(tables.Publication(
        tenant="bench", service=service, version=version, digest=digest, git_commit="bench",
        author="bench", key=key, result="published", at=now(),
    ))  # fmt: skip
    clients.s3.put_object(Bucket="bench-charts", Key=key, Body=archive, Metadata={"sha256": digest})


def wait_started(ledger: Ledger, service: str, version: str, timeout_s: float = 60) -> datetime:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in ledger.history(tenant="bench", service=service, limit=5):
            if d.version == version:
                return d.started if d.started.tzinfo else d.started.replace(tzinfo=UTC)
        time.sleep(0.02)
    raise TimeoutError(f"{service} {version} never started")


def wait_succeeded(ledger: Ledger, count: int, version: str, timeout_s: float = 1800) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [d for d in ledger.deployments() if d.version == version and d.result == "succeeded"]
        if len(done) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"only some of {count} releases of {version} succeeded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--releases", type=int, default=100)
    args = parser.parse_args()
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-deploy-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    plugin.install()  # artifacts.endpoint: local, as the tenantry command resolves it
    cluster = localcluster.create("bench-staging", nodes=3)
    awsserver.start()
    try:
        repo_root = write_repo(workdir / "repo", cluster.name, max(args.releases, 1))
        repo = repository.load(repo_root)
        reconcile.apply_all(repo)
        clients = aws.clients(repo.platform)
        wiring.setup(clients, repo.platform)
        database = f"sqlite:///{workdir / 'ledger.sqlite'}"
        ledger = Ledger.open(database)
        # Real archives: one per service and version (the deployer checks what runs).
        origin = publishing.provenance(repo_root)

        def archive(service: str, version: str) -> tuple[bytes, str]:
            source = repo.service(f"bench/{service}")
            assert source.descriptor is not None
            versioned = dataclasses.replace(
                source, descriptor=source.descriptor.model_copy(update={"version": version})
            )
            pkg = package.package(versioned, provenance=origin, workdir=workdir / "pkg")
            return pkg.path.read_bytes(), pkg.digest

        # Latency: one idle worker, one upload at a time.
        workers = start_workers(repo_root, 1, database)
        time.sleep(3)  # the worker is up and long-polling
        latencies = []
        for i in range(args.events):
            version = f"0.{i}.0"
            body = archive("svc-0000", version)
            put_at = datetime.now(UTC)
            upload(clients, ledger, *body, f"bench/svc-0000-{version}.tgz")
            latencies.append((wait_started(ledger, "svc-0000", version) - put_at).total_seconds())
        stop_workers(workers)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(f"upload -> deploy started over {args.events} events: p50 {p50:.3f}s, p99 {p99:.3f}s")

        # Throughput: M services at once, 1 worker, then 2.
        per_min = {}
        for count, version in ((1, "2.0.0"), (2, "3.0.0")):
            bodies = [archive(f"svc-{i:04d}", version) for i in range(args.releases)]
            workers = start_workers(repo_root, count, database)
            time.sleep(3)
            started = time.monotonic()
            for i, body in enumerate(bodies):
                upload(clients, ledger, *body, f"bench/svc-{i:04d}-{version}.tgz")
            wait_succeeded(ledger, args.releases, version)
            seconds = time.monotonic() - started
            stop_workers(workers)
            per_min[count] = args.releases / seconds * 60
            print(f"{args.releases} releases with {count} worker(s): {seconds:.1f}s "
                  f"({per_min[count]:.0f}/min)")  # fmt: skip
        print(f"2 workers vs 1 (baseline): {per_min[2] / per_min[1]:.2f}x")
        ledger.close()
    finally:
        awsserver.stop()
        localcluster.delete("bench-staging")
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "event_to_deploy_p50_s": round(p50, 3),
        "event_to_deploy_p99_s": round(p99, 3),
        "releases_1000_s": round(1000 / per_min[2] * 60, 1),
        "releases_1000_measured": args.releases >= 1000,
        "releases_per_min_1w": round(per_min[1], 1),
        "releases_per_min_2w": round(per_min[2], 1),
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
