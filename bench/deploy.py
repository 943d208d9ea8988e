"""Benchmark: chart published → staging deploy started, S3 and (``--artifacts oci``) an
OCI registry; deployer throughput with 1 and 2 workers; the resync catching up missed
pushes.

Everything real, on loopback: one local cluster as staging; helm; `tenantry deployer`
worker processes; every chart a real `helm package` of its service and version.

S3 (always run; with ``--artifacts oci`` it is the OCI figures' baseline, measured in the
same run on the same cluster): the local S3/SQS server (moto), workers sharing a SQLite
ledger.

* latency: one worker idle on the queue; N times, upload a chart archive and time
  from the PutObject call returning to the deployment's ``started`` row in the
  ledger (p50, p99);
* throughput: upload M archives of M different services at once and time until the
  ledger shows all M succeeded, with 1 worker and then 2 (baseline: 1 worker).

OCI (``--artifacts oci``; ``s3``, the default, runs the S3 part alone — there is no
``oci``-only run, since its figures mean something only beside the S3 ones): the pinned
CNCF Distribution registry (`tenantry.local.registry`: TLS, htpasswd) notifying a
`tenantry server` process, which queues deploy requests in its own SQLite ledger; one
`tenantry deployer` process (no queue) takes them; the platform says
``artifacts: {kind: oci, registry: local, resyncIntervalS: R}``. Another tenant
(``onprem``) than the S3 part's, so neither path's releases touch the other's.

* latency: N times, `publishing.publish` one new version of one service (package, push)
  and time from its return to the deployment's ``started`` row (p50, p99); the same N
  and the same single worker as the S3 latency;
* resync catch-up: the registry restarted without its notification endpoint (its
  in-memory queue lost, as in a real restart); right after a resync ran (its ledger
  lease renewed), K services get a new version in one `publishing.publish`; time from
  its return until the ledger shows all K deployed (succeeded). No notification comes,
  so the figure **includes waiting for the next resync** — almost a whole interval R,
  the worst case, less the pushes' own duration — plus deploying all K with one
  worker; both parts are printed.

Prints the machine and versions, the figures, and as its last line one JSON object
with ``event_to_deploy_p50_s``, ``event_to_deploy_p99_s``, ``releases_1000_s``
(extrapolated from M unless ``--releases 1000``; the JSON says which),
``releases_per_min_1w``, ``releases_per_min_2w``; with ``--artifacts oci`` also
``oci_event_to_deploy_p50_s``, ``oci_event_to_deploy_p99_s``, ``resync_catchup_s`` and
what they were measured with (``resync_interval_s``, ``resync_missed``, ...).
Runs in a state directory of its own (never a developer's `tenantry up`); every process
it starts is stopped by pid, the cluster deleted and the registry's storage removed.
Usage: python bench/deploy.py [--events 50] [--releases 100]
       [--artifacts oci [--missed 50] [--resync-interval 30]]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import yaml

import _cpu
import _floors
from _common import machine, start, stop
from tenantry import aws, processes
from tenantry.artifacts import package, publishing
from tenantry.aws import wiring
from tenantry.deploy import deployer as deploying
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, now, tables
from tenantry.local import awsserver, plugin, registry
from tenantry.spec import repository
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.tenancy import reconcile
from tenantry.tools import install

REGISTRY = "registry.bench.example"
S3_TENANT = "bench"
OCI_TENANT = "onprem"
SCALE_BUCKET = "scale-charts"
# Services per tenant in the scale run (100 tenants x 10 for 1,000 releases).
SCALE_SERVICES = 10
# A kwok node takes 110 pods; the scale run keeps three sets of releases (the deployer's
# and each floor's), one pod each.
PODS_PER_NODE = 110


def write_repo(
    root: Path, cluster: str, services: int, *, tenant: str = S3_TENANT,
    artifacts: dict[str, object] | None = None, tenants: Sequence[str] = (),
) -> Path:  # fmt: skip
    """A platform repository with ``services`` services of ``tenant``. Both tenants' files
    are in every repository, so onboarding one path's repository keeps the other's
    namespace (and its releases) in the shared cluster. With ``tenants``: those tenants
    alone, each with ``services`` services, on a bucket and queue of their own."""
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
    if artifacts is not None:  # an OCI registry: its notifications reach the server
        platform["artifacts"] = artifacts
        del platform["queue"]
        platform["server"] = {"managementCluster": cluster}
    if tenants:
        platform["artifacts"] = {"bucket": SCALE_BUCKET, "endpoint": "local"}
        platform["queue"] = {"name": "scale-events", "maxReceiveCount": 5,
                             "visibilityTimeoutS": 60}  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    for name in tenants or (S3_TENANT, OCI_TENANT):
        (root / "tenants" / f"{name}.yaml").write_text(
            yaml.safe_dump({"name": name, "owners": {"users": ["b"]}, "environments": ["staging"]})
        )
    for owner in tenants or (tenant,):
        for i in range(services):
            service = root / "services" / owner / f"svc-{i:04d}"
            service.mkdir(parents=True)
            small = {"cpu": "10m", "memory": "16Mi"}
            service.joinpath("service.yaml").write_text(yaml.safe_dump({
                "name": f"svc-{i:04d}", "version": "1.0.0", "image": f"{REGISTRY}/bench/app:1",
                "replicas": 1, "resources": {"requests": small, "limits": small}}))  # fmt: skip
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "b"],
        check=True,
    )
    return root


def start_workers(
    repo: Path, count: int, database: str, *, name: str = "bench", log: Path | None = None,
    concurrency: int = 1, helm: str = "sdk",
) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    """``count`` `tenantry deployer` processes, each ready when its /metrics answers (it
    has loaded the repository and is about to receive)."""
    workers, ports = [], []
    for i in range(count):
        port = processes.free_port()
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "tenantry", "deployer", "--repo", str(repo),
                 "--worker", f"{name}-{i}", "--wait", "1", "--metrics-port", str(port),
                 "--concurrency", str(concurrency), "--helm", helm],
                env={**os.environ, "TENANTRY_DATABASE_URL": database},
                stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            ))  # fmt: skip
        ports.append(port)
    deadline = time.monotonic() + 60
    while not all(processes.answers(port) for port in ports):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            stop_workers(workers)
            raise RuntimeError("a deployer worker did not start (run it by hand to see why)")
        time.sleep(0.1)
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


def upload(
    clients: aws.Clients, ledger: Ledger, archive: bytes, digest: str, key: str, *,
    tenant: str = S3_TENANT, bucket: str = "bench-charts",
) -> datetime:  # fmt: skip
    """What `tenantry publish` does, minus packaging: the publication in the ledger (the
    deployer trusts only that), then the upload; when the PutObject call returned."""
    service, version = Path(key).name.removesuffix(".tgz").rsplit("-", 1)
    ledger.add(tables.Publication(
        tenant=tenant, service=service, version=version, digest=digest, git_commit="bench",
        author="bench", key=key, result="published", at=now(),
    ))  # fmt: skip
    clients.s3.put_object(Bucket=bucket, Key=key, Body=archive, Metadata={"sha256": digest})
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def wait_started(
    ledger: Ledger, service: str, version: str, *, tenant: str = S3_TENANT, timeout_s: float = 60
) -> datetime:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in ledger.history(tenant=tenant, service=service, limit=5):
            if d.version == version:
                return _aware(d.started)
        time.sleep(0.02)
    raise TimeoutError(f"{tenant}/{service} {version} never started")


def wait_succeeded(
    ledger: Ledger, count: int, version: str, *, tenant: str | None = S3_TENANT,
    timeout_s: float = 1800,
) -> list[tables.Deployment]:  # fmt: skip
    """Until ``count`` deploys of ``version`` succeeded (of ``tenant``, or of any tenant);
    a failed one ends the benchmark with its reason: these releases are all good."""
    deadline = time.monotonic() + timeout_s
    while True:
        with ledger.session() as session:
            query = session.query(tables.Deployment).filter_by(version=version)
            if tenant is not None:
                query = query.filter_by(tenant=tenant)
            rows = query.filter(tables.Deployment.result.in_(("succeeded", "failed"))).all()
        failed = [d for d in rows if d.result == "failed"]
        if failed:
            raise RuntimeError(f"{failed[0].tenant}/{failed[0].service} {version} failed: "
                               f"{failed[0].reason[:2000]}")  # fmt: skip
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {count} releases of {version} succeeded")
        time.sleep(0.5)


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 (nearest rank) of ``latencies``."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def versioned(repo: Repository, ref: str, version: str) -> ServiceSource:
    """Service ``ref`` as if its service.yaml said ``version``."""
    source = repo.service(ref)
    assert source.descriptor is not None
    return dataclasses.replace(
        source, descriptor=source.descriptor.model_copy(update={"version": version})
    )


def run_s3(workdir: Path, cluster: str, args: argparse.Namespace) -> dict[str, object]:
    """The S3 → SQS → worker figures (the original benchmark, unchanged)."""
    awsserver.start()
    try:
        repo_root = write_repo(workdir / "repo", cluster, max(args.releases, 1))
        repo = repository.load(repo_root)
        reconcile.apply_all(repo)
        clients = aws.clients(repo.platform)
        wiring.setup(clients, repo.platform)
        database = f"sqlite:///{workdir / 'ledger.sqlite'}"
        ledger = Ledger.open(database)
        # Real archives: one per service and version (the deployer checks what runs).
        origin = publishing.provenance(repo_root)

        def archive(service: str, version: str) -> tuple[bytes, str]:
            pkg = package.package(versioned(repo, f"{S3_TENANT}/{service}", version),
                                  provenance=origin, workdir=workdir / "pkg")  # fmt: skip
            return pkg.path.read_bytes(), pkg.digest

        # Latency: one idle worker, one upload at a time; the clock starts when the
        # PutObject call has returned.
        workers = start_workers(repo_root, 1, database)
        latencies = []
        for i in range(args.events):
            version = f"0.{i}.0"
            body = archive("svc-0000", version)
            put_at = upload(clients, ledger, *body, f"{S3_TENANT}/svc-0000-{version}.tgz")
            latencies.append((wait_started(ledger, "svc-0000", version) - put_at).total_seconds())
        stop_workers(workers)
        p50, p99 = percentiles(latencies)
        print(f"S3: PutObject returned -> deploy started over {args.events} events: "
              f"p50 {p50:.3f}s, p99 {p99:.3f}s")  # fmt: skip

        # Throughput: M services at once. The baseline is the deployer as it was (1 worker,
        # one release at a time, a helm process per release); then C at once with the helm
        # CLI, C at once through Helm's SDK (tenantry-helmd), and 2 such workers.
        c = args.concurrency
        per_min = {}
        runs = (("1w_x1_cli", 1, 1, "cli"), ("1w_cli", 1, c, "cli"), ("1w", 1, c, "sdk"),
                ("2w", 2, c, "sdk"))  # fmt: skip
        for n, (label, count, concurrency, helm) in enumerate(runs):
            version = f"{n + 2}.0.0"
            bodies = [archive(f"svc-{i:04d}", version) for i in range(args.releases)]
            workers = start_workers(repo_root, count, database, concurrency=concurrency,
                                    helm=helm)  # fmt: skip
            started = time.monotonic()
            for i, body in enumerate(bodies):
                upload(clients, ledger, *body, f"{S3_TENANT}/svc-{i:04d}-{version}.tgz")
            wait_succeeded(ledger, args.releases, version)
            seconds = time.monotonic() - started
            stop_workers(workers)
            per_min[label] = args.releases / seconds * 60
            print(f"S3: {args.releases} releases, {count} worker(s) x {concurrency} at once, "
                  f"helm {helm}: {seconds:.1f}s ({per_min[label]:.0f}/min)")  # fmt: skip
        print(f"S3: against the baseline (1 worker x 1, helm CLI): x {c} with the CLI "
              f"{per_min['1w_cli'] / per_min['1w_x1_cli']:.2f}x, x {c} through the SDK "
              f"{per_min['1w'] / per_min['1w_x1_cli']:.2f}x; 2 workers vs 1: "
              f"{per_min['2w'] / per_min['1w']:.2f}x")  # fmt: skip
        ledger.close()
    finally:
        awsserver.stop()
    return {
        "event_to_deploy_p50_s": round(p50, 3),
        "event_to_deploy_p99_s": round(p99, 3),
        "event_to_deploy_events": args.events,
        **{f"releases_per_min_{label}": round(value, 1) for label, value in per_min.items()},
        "concurrency": args.concurrency,
    }


def helm_profile(kubeconfig: Path, release: _floors.Release, runs: int = 10) -> dict[str, float]:
    """CPU seconds (helm's own, user + system) of the parts of one helm run, median of
    ``runs``: the process alone (`helm version`), loading and rendering the chart
    (`helm template`), reaching the cluster (`helm list`: client and discovery), and a
    whole `helm upgrade --install --wait` of an installed release."""
    helm = str(install.binary("helm"))
    flags = ["--kubeconfig", str(kubeconfig), "--namespace", release.namespace]
    commands = {
        "process start (helm version)": [helm, "version", "--short"],
        "chart load + render (helm template)": [helm, "template", release.name,
                                                str(release.archive)],
        "client + discovery (helm list)": [helm, "list", *flags],
        "whole upgrade --install --wait": [helm, "upgrade", "--install", release.name,
                                           str(release.archive), *flags, "--wait"],
    }  # fmt: skip
    found = {}
    for what, argv in commands.items():
        samples = []
        for _ in range(runs):
            before = _cpu.self_cpu().children
            subprocess.run(argv, capture_output=True, check=True, timeout=300)
            samples.append(_cpu.self_cpu().children - before)
        found[what] = statistics.median(samples)
    return found


def run_scale(workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    """``args.scale`` releases published at once (tenants of SCALE_SERVICES services), until
    every one runs in staging, with the CPU each process spent; then both floors on the
    same cluster and archives."""
    total = args.scale
    tenants = [f"scale-{t:03d}" for t in range(max(1, total // SCALE_SERVICES))]
    total = len(tenants) * SCALE_SERVICES
    nodes = 3 * total // PODS_PER_NODE + 2
    print(f"scale: a local cluster with {nodes} kwok nodes ({PODS_PER_NODE} pods each)")
    cluster = localcluster.create("bench-scale", nodes=nodes)
    awsserver.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        repo_root = write_repo(workdir / "scale-repo", cluster.name, SCALE_SERVICES,
                               tenants=tenants)  # fmt: skip
        repo = repository.load(repo_root)
        began = time.monotonic()
        reconcile.apply_all(repo)
        print(f"scale: {len(tenants)} tenants onboarded in {time.monotonic() - began:.1f}s")
        clients = aws.clients(repo.platform)
        wiring.setup(clients, repo.platform)
        database = f"sqlite:///{workdir / 'scale-ledger.sqlite'}"
        ledger = Ledger.open(database)
        origin = publishing.provenance(repo_root)
        began = time.monotonic()
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            packages = list(pool.map(lambda s: package.package(
                s, provenance=origin, workdir=workdir / "scale-pkg"), repo.services))  # fmt: skip
        print(f"scale: {len(packages)} archives packaged in {time.monotonic() - began:.1f}s "
              "(not timed)")  # fmt: skip
        workers = start_workers(repo_root, args.workers, database, name="scale",
                                concurrency=args.concurrency)  # fmt: skip
        pids = {f"deployer {i}": w.pid for i, w in enumerate(workers)}
        pids |= _cpu.cluster_pids(cluster.workdir)
        server = awsserver.running()
        assert server is not None
        pids["S3/SQS server (moto)"] = server.pid
        before, me = _cpu.snapshot(pids), _cpu.self_cpu()
        started = time.monotonic()
        for pkg in packages:
            upload(clients, ledger, pkg.path.read_bytes(), pkg.digest,
                   f"{pkg.tenant}/{pkg.service}-{pkg.version}.tgz", tenant=pkg.tenant,
                   bucket=SCALE_BUCKET)  # fmt: skip
        uploaded = time.monotonic() - started
        wait_succeeded(ledger, total, "1.0.0", tenant=None, timeout_s=3600)
        seconds = time.monotonic() - started
        spent = _cpu.spent(before, _cpu.snapshot(pids))
        # A worker's tenantry-helmd started after the first reading (with its first
        # release) and is not reaped yet: all of its CPU is this run's.
        for i, worker in enumerate(workers):
            for child in _cpu.children(worker.pid):
                spent[f"deployer {i}'s tenantry-helmd"] = _cpu.read(child)
        bench_cpu = _cpu.self_cpu().own - me.own
        stop_workers(workers)
        workers = []
        ledger.close()
        print(f"scale: {total} releases published at once (uploads took {uploaded:.1f}s) -> "
              f"all running in staging: {seconds:.1f}s ({total / seconds * 60:.0f}/min; "
              f"{args.workers} worker(s) x {args.concurrency} at once)")  # fmt: skip
        print(f"scale: CPU seconds per release, by process ({seconds:.0f}s wall, "
              f"{os.cpu_count()} cores):")  # fmt: skip
        rows = [(f"{name} (helm it ran)" if kind == "children" else name, value)
                for name, cpu in spent.items()
                for kind, value in (("own", cpu.own), ("children", cpu.children))
                if value > 0]  # fmt: skip
        rows.append(("this benchmark (uploads, ledger)", bench_cpu))
        for name, value in sorted(rows, key=lambda r: -r[1]):
            print(f"  {name:<40} {value / total:6.3f} s  ({value:7.1f} s in all)")
        busy = sum(v for _, v in rows)
        print(f"  {'all':<40} {busy / total:6.3f} s  ({busy / seconds / (os.cpu_count() or 1):.0%}"
              " of the machine)")  # fmt: skip

        def floor(prefix: str) -> list[_floors.Release]:
            return [_floors.Release(f"{prefix}-{pkg.tenant}", pkg.service, pkg.path)
                    for pkg in packages]  # fmt: skip

        helm_s = _floors.helm_floor(cluster.kubeconfig, floor("helm"), parallel=args.floor_parallel)
        print(f"scale: floor, {args.floor_parallel} bare `helm upgrade --install --wait` at once: "
              f"{helm_s:.1f}s ({total / helm_s * 60:.0f}/min)")  # fmt: skip
        apply_s = _floors.apply_floor(cluster.kubeconfig, floor("apply"),
                                      parallel=args.floor_parallel)  # fmt: skip
        print(f"scale: floor, server-side apply of the rendered objects ({args.floor_parallel} "
              f"kubectl at once) until available: {apply_s:.1f}s "
              f"({total / apply_s * 60:.0f}/min)")  # fmt: skip
        print(f"scale: Tenantry / helm floor {seconds / helm_s:.2f}x; "
              f"Tenantry / apply floor {seconds / apply_s:.2f}x")  # fmt: skip
        profile = helm_profile(cluster.kubeconfig, floor("helm")[0])
        print("scale: helm's own CPU per part of one run, median of 10:")
        for what, value in profile.items():
            print(f"  {what:<40} {value:6.3f} s")
    finally:
        stop_workers(workers)
        awsserver.stop()
        localcluster.delete("bench-scale")
    return {
        f"releases_{total}_s": round(seconds, 1),
        f"releases_{total}_floor_helm_s": round(helm_s, 1),
        f"releases_{total}_floor_apply_s": round(apply_s, 1),
        "scale_workers": args.workers,
        "scale_concurrency": args.concurrency,
        "floor_parallel": args.floor_parallel,
        "cpu_s_per_release": {name: round(v / total, 3) for name, v in rows},
        "helm_cpu_s": {what: round(v, 3) for what, v in profile.items()},
    }


def resync_token(ledger: Ledger) -> int:
    """The resync lease's fencing token: it grows by one with every resync."""
    with ledger.session() as session:
        lease = session.get(tables.Lease, deploying.RESYNC_LEASE)
        return lease.token if lease is not None else 0


def wait_resync(ledger: Ledger, after: int, timeout_s: float) -> int:
    """Wait for a resync after the one with token ``after``; its token."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        token = resync_token(ledger)
        if token > after:
            return token
        time.sleep(0.05)
    raise TimeoutError(f"no resync within {timeout_s:.0f} s")


def start_registry(server: str | None) -> registry.Registry:
    """The local registry, notifying ``server`` (None: no notifications at all)."""
    if server is None:
        return registry.start()
    secret = registry.events_secret_file().read_text().strip()
    return registry.start(notify_url=f"{server}/api/v1/events/registry", notify_secret=secret)


def run_oci(workdir: Path, cluster: str, args: argparse.Namespace) -> dict[str, object]:
    """The OCI registry → server → deploy request → worker figures, and the resync's."""
    interval = args.resync_interval
    artifacts = {"kind": "oci", "registry": "local", "resyncIntervalS": interval}
    repo_root = write_repo(workdir / "oci-repo", cluster, max(args.missed, 1),
                           tenant=OCI_TENANT, artifacts=artifacts)  # fmt: skip
    repo = repository.load(repo_root)
    reconcile.apply_all(repo)
    database = f"sqlite:///{workdir / 'oci-ledger.sqlite'}"
    ledger = Ledger.open(database)  # migrated once, before the server opens it
    origin = publishing.provenance(repo_root)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    workers: list[subprocess.Popen[bytes]] = []

    def publish(services: list[ServiceSource]) -> None:
        published = publishing.publish(repo, services, clients=None, ledger=ledger, origin=origin)
        assert all(p.result == "published" for p in published), published

    try:
        port = processes.free_port()
        start("server", [sys.executable, "-m", "tenantry", "server", "--repo", str(repo_root),
                         "--port", str(port)],
              port=port, env={"TENANTRY_DATABASE_URL": database}, logs=logs,
              procs=procs)  # fmt: skip
        server = f"http://127.0.0.1:{port}"
        start_registry(server)
        workers = start_workers(repo_root, 1, database, name="oci", log=logs / "workers.log")
        wait_resync(ledger, 0, timeout_s=60)  # the worker is up: its first resync ran

        # Latency: one idle worker; one push at a time, through the notification.
        latencies = []
        for i in range(args.events):
            version = f"0.{i}.0"
            publish([versioned(repo, f"{OCI_TENANT}/svc-0000", version)])
            pushed_at = datetime.now(UTC)
            started = wait_started(ledger, "svc-0000", version, tenant=OCI_TENANT)
            latencies.append((started - pushed_at).total_seconds())
        p50, p99 = percentiles(latencies)
        requests = ledger.deploy_requests(tenants=[OCI_TENANT], limit=args.events + 1000)
        sources = collections.Counter(r.source for r in requests)
        print(f"OCI: push -> deploy started over {args.events} events: p50 {p50:.3f}s, "
              f"p99 {p99:.3f}s (requests by source: {dict(sources)})")  # fmt: skip

        # Resync: the registry restarts without its endpoint (the queue in its memory is
        # gone); K services get a new version just after a resync ran.
        registry.stop()
        start_registry(None)
        before = wait_resync(ledger, resync_token(ledger), timeout_s=interval + 30)
        pushes_began = time.monotonic()
        publish([versioned(repo, f"{OCI_TENANT}/svc-{i:04d}", "1.0.0")
                 for i in range(args.missed)])  # fmt: skip
        pushed_at = datetime.now(UTC)
        push_s = time.monotonic() - pushes_began
        during = resync_token(ledger) - before
        done = wait_succeeded(ledger, args.missed, "1.0.0", tenant=OCI_TENANT,
                              timeout_s=2 * interval + 30 * args.missed)  # fmt: skip
        caught_up = max(_aware(d.finished) for d in done if d.finished is not None)
        catchup = (caught_up - pushed_at).total_seconds()
        queued = [r for r in ledger.deploy_requests(tenants=[OCI_TENANT], limit=args.missed + 100)
                  if r.version == "1.0.0"]  # fmt: skip
        first_queued = min(_aware(r.created) for r in queued)
        wait = (first_queued - pushed_at).total_seconds()
        by = collections.Counter(r.source for r in queued)
        print(f"OCI: resync catch-up of {args.missed} missed pushes (resyncIntervalS "
              f"{interval:g}, 1 worker): {catchup:.1f}s from the last push returning "
              f"(pushes took {push_s:.1f}s; waiting for the resync {wait:.1f}s, then "
              f"deploying {catchup - wait:.1f}s; requests by source: {dict(by)}; "
              f"resyncs during the pushes: {during})")  # fmt: skip
    finally:
        stop_workers(workers)
        for process in procs:
            stop(process)
        registry.stop(forget=True)
        ledger.close()
    return {
        "oci_event_to_deploy_p50_s": round(p50, 3),
        "oci_event_to_deploy_p99_s": round(p99, 3),
        "oci_events": args.events,
        "oci_events_by_source": dict(sources),
        "resync_catchup_s": round(catchup, 1),
        "resync_wait_s": round(wait, 1),
        "resync_interval_s": interval,
        "resync_missed": args.missed,
        "resync_push_s": round(push_s, 1),
        "resync_during_pushes": during,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=200,
        help="pushes timed per path (a p99 wants >= 200)",
    )
    parser.add_argument(
        "--releases", type=int, default=100, help="releases per throughput run (1 and 2 workers)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="releases each worker carries out at once (deployer --concurrency)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=1000,
        help="releases of the scale run (0: none), on a cluster of its own",
    )
    parser.add_argument("--workers", type=int, default=1, help="deployer workers (scale run)")
    parser.add_argument(
        "--floor-parallel",
        type=int,
        default=8,
        help="helm or kubectl processes at once in the floors (scale run)",
    )
    parser.add_argument(
        "--artifacts",
        choices=("s3", "oci"),
        default="s3",
        help="oci: also the OCI path, beside the S3 run (its baseline)",
    )
    parser.add_argument(
        "--missed", type=int, default=50, help="pushes the resync must catch up (oci)"
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=30.0,
        help="platform.yaml's artifacts.resyncIntervalS (oci; at least 5)",
    )
    args = parser.parse_args()
    # A state directory of its own: never a developer's `tenantry up` (nor its registry).
    state = tempfile.mkdtemp(prefix="tenantry-bench-")
    os.environ["TENANTRY_STATE_DIR"] = state
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-deploy-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    plugin.install()  # artifacts endpoint/registry: local, as the tenantry command resolves it
    try:
        cluster = localcluster.create("bench-staging", nodes=3)
        try:
            figures = run_s3(workdir, cluster.name, args)
            if args.artifacts == "oci":
                figures |= run_oci(workdir, cluster.name, args)
        finally:
            localcluster.delete("bench-staging")
        if args.scale:
            figures |= run_scale(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
