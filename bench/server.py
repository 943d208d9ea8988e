"""Benchmark: the Tenantry server — API reads, TokenReview with and without the cache,
and approval → first production deploy started.

Everything real: two local clusters (staging, which is also the management cluster and
accepts static bearer tokens, and a production cluster with one primary), the local
S3/SQS server (moto), helm, a `tenantry server` process and a `tenantry deployer`
worker process sharing a SQLite ledger.

* API reads: the ledger seeded with T tenants x S services x D deployments (written
  directly, before the server starts); C client threads x R requests alternating
  ``GET /api/v1/status`` and ``GET /api/v1/history`` with a platform admin's token
  (one warm-up of each read first, here and in the baseline, so the review is cached);
  p50/p99. Baseline in the same run: the same reads straight on the ledger
  (``current_releases()``, ``deployments_page(...)``) by C threads x R in this process,
  with one pooled connection per thread.
* TokenReview: a `Reviewer` on the management cluster with ``cache_s=0`` (every call
  a TokenReview) and ``cache_s=60`` (after the first), N calls each, median.
* approve → deploy started: a version published and brought to staging by the worker,
  requested by one owner and approved by another over HTTP; time from the approve
  POST returning 202 to the first production ``deployments`` row's ``started``;
  median of K runs (each waits for the operation to finish before the next).

Prints the machine and versions, the figures, and as its last line one JSON object
with ``api_read_p50_ms``, ``api_read_p99_ms``, ``ledger_read_p50_ms``,
``ledger_read_p99_ms``, ``approve_to_deploy_s``, ``tokenreview_cached_ms``,
``tokenreview_uncached_ms``.
Usage: python bench/server.py [--clients 50] [--requests 40] [--reviews 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import yaml
from sqlalchemy import create_engine

from _common import machine, start, stop
from tenantry import aws, processes
from tenantry.artifacts import publishing
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, tables
from tenantry.local import awsserver, plugin
from tenantry.server import identity
from tenantry.spec import repository
from tenantry.tenancy import reconcile

REGISTRY = "registry.bench.example"
STAGING, PRODUCTION = "bench-srv-staging", "bench-srv-prod"
PEOPLE = ("alice", "bob", "dana")  # echo's owners, and a platform admin


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@x", *args],
                   check=True, capture_output=True)  # fmt: skip


def write_service(root: Path, version: str) -> None:
    path = root / "services" / "echo" / "web" / "service.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "name": "web", "version": version, "image": f"{REGISTRY}/echo/web:1", "replicas": 1,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"cpu": "10m", "memory": "16Mi"}}}))  # fmt: skip


def write_repo(root: Path, seeded: list[str]) -> Path:
    """Staging (the management cluster) and production (one primary, no traffic section);
    echo owned by alice and bob in both; the seeded tenants in staging; dana administers."""
    (root / "tenants").mkdir(parents=True)
    platform = {
        "name": "bench",
        "environments": [
            {"name": "staging", "clusters": [{"name": STAGING, "local": STAGING}]},
            {"name": "production", "clusters": [{"name": PRODUCTION, "local": PRODUCTION,
                                                 "role": "primary"}]},
        ],
        "defaults": {"quota": {"cpu": "4", "memory": "4Gi", "pods": "20"},
                     "container": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                   "limits": {"cpu": "10m", "memory": "16Mi"}}},
        "registries": [REGISTRY],
        "artifacts": {"bucket": "bench-server-charts", "endpoint": "local"},
        "queue": {"name": "bench-server-events", "maxReceiveCount": 5, "visibilityTimeoutS": 60},
        "server": {"managementCluster": STAGING, "admins": {"users": ["dana"]}},
    }  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    (root / "tenants" / "echo.yaml").write_text(yaml.safe_dump(
        {"name": "echo", "owners": {"users": ["alice", "bob"]},
         "environments": ["staging", "production"]}))  # fmt: skip
    for name in seeded:
        (root / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "owners": {"users": [f"{name}-owner"]}, "environments": ["staging"]}
        ))  # fmt: skip
    write_service(root, "1.0.0")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "bench")
    return root


def seed(ledger: Ledger, tenants: list[str], services: int, deployments: int) -> int:
    """Realistic history: per service, ``deployments`` versions in staging, 1 in 10 failed."""
    start = datetime.now(UTC) - timedelta(days=30)
    rows: list[tables.Deployment] = []
    for t in tenants:
        for s in range(services):
            for d in range(deployments):
                at = start + timedelta(hours=d * 30 + s, minutes=len(rows) % 60)
                rows.append(tables.Deployment(
                    tenant=t, service=f"svc-{s}", version=f"1.{d}.0", digest="0" * 64,
                    environment="staging", cluster=STAGING, actor="s3-event",
                    result="failed" if d % 10 == 9 else "succeeded",
                    reason="rollout timed out" if d % 10 == 9 else "",
                    started=at, finished=at + timedelta(seconds=20)))  # fmt: skip
    with ledger.session() as session:
        session.add_all(rows)
    return len(rows)


def percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def hammer(clients: int, requests: int, call: Callable[[int, int], None]) -> list[float]:
    """``clients`` threads, each making ``requests`` calls ``call(thread, i)``, started
    together; the latency of every call in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(clients)
    failures: list[BaseException] = []

    def run(thread: int) -> None:
        mine = []
        try:
            go.wait(timeout=60)
            for i in range(requests):
                begun = time.perf_counter()
                call(thread, i)
                mine.append((time.perf_counter() - begun) * 1000)
        except BaseException as e:  # reported below, not lost in the thread
            failures.append(e)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if failures:
        raise RuntimeError(f"{len(failures)} client threads failed; first: {failures[0]!r}")
    assert len(latencies) == clients * requests, len(latencies)
    return latencies


def api_reads(url: str, token: str, clients: int, requests: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    sessions = [
        httpx2.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60, trust_env=False)
        for _ in range(clients)
    ]
    try:
        for path in ("/status", "/history"):  # warm-up, not measured
            warm = sessions[0].get(path)
            assert warm.status_code == 200, warm.text

        def call(thread: int, i: int) -> None:
            api = sessions[thread]
            answer = api.get("/status") if (thread + i) % 2 == 0 else api.get("/history")
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")

        return hammer(clients, requests, call)
    finally:
        for session in sessions:
            session.close()


def ledger_reads(ledger: Ledger, tenants: list[str], clients: int, requests: int) -> list[float]:
    ledger.current_releases()  # warm-up, not measured (as over HTTP)
    ledger.deployments_page(tenants=tenants, limit=50)

    def call(thread: int, i: int) -> None:
        if (thread + i) % 2 == 0:
            ledger.current_releases()
        else:
            ledger.deployments_page(tenants=tenants, limit=50)

    return hammer(clients, requests, call)


def median_ms(call: Callable[[], object], count: int) -> float:
    ms = []
    for _ in range(count):
        begun = time.perf_counter()
        call()
        ms.append((time.perf_counter() - begun) * 1000)
    return statistics.median(ms)


def reviews(cluster: localcluster.LocalCluster, token: str, count: int, cache_s: float) -> float:
    """Median ms of ``count`` calls to a fresh `Reviewer` (connected and, with a cache,
    holding the review from one call made first)."""
    reviewer = identity.Reviewer(cluster.connect, cache_s=cache_s)
    reviewer.person(token)  # connects (and fills the cache when there is one)
    ms = []
    for _ in range(count):
        begun = time.perf_counter()
        person = reviewer.person(token)
        ms.append((time.perf_counter() - begun) * 1000)
    assert person.username == "dana", person
    return statistics.median(ms)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def approve_to_deploy(
    repo_root: Path, ledger: Ledger, url: str, tokens: dict[str, str], version: str
) -> float:
    """Publish ``version``, let the worker bring it to staging, request (alice) and
    approve (bob) its promotion; seconds from the 202 to production's ``started``."""
    write_service(repo_root, version)
    git(repo_root, "add", ".")
    git(repo_root, "commit", "-qm", version)
    repo = repository.load(repo_root)
    publishing.publish(repo, list(repo.services), clients=aws.clients(repo.platform),
                       ledger=ledger, origin=publishing.provenance(repo_root))  # fmt: skip

    def deployed(environment: str) -> list[tables.Deployment]:
        return [d for d in ledger.history(tenant="echo", service="web", limit=10)
                if d.version == version and d.environment == environment]  # fmt: skip

    wait_for(lambda: any(d.result == "succeeded" for d in deployed("staging")),
             f"echo/web {version} in staging")  # fmt: skip

    def as_(who: str) -> httpx2.Client:
        return httpx2.Client(base_url=f"{url}/api/v1", timeout=60, trust_env=False,
                             headers={"Authorization": f"Bearer {tokens[who]}"})  # fmt: skip

    with as_("alice") as api:
        requested = api.post("/promotions", json={"service": "echo/web", "version": version})
    assert requested.status_code == 201, requested.text
    with as_("bob") as api:
        approved = api.post(f"/promotions/{requested.json()['id']}/approve")
        returned = datetime.now(UTC)
    assert approved.status_code == 202, approved.text
    operation = approved.json()["operation"]["id"]
    first = wait_for(lambda: deployed("production"), f"echo/web {version} started in production")
    seconds = (utc(first[-1].started) - returned).total_seconds()

    def finished() -> bool:
        with as_("alice") as api:
            return api.get(f"/operations/{operation}").json()["status"] in ("succeeded", "failed")

    wait_for(finished, f"operation {operation}")
    with as_("alice") as api:
        status = api.get(f"/operations/{operation}").json()["status"]
    assert status == "succeeded", f"operation {operation} {status}"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--deployments", type=int, default=20)
    args = parser.parse_args()
    os.environ["TENANTRY_STATE_DIR"] = tempfile.mkdtemp(prefix="tenantry-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-server-"))
    for key, value in machine().items():
        print(f"{key:>12}: {value}")

    plugin.install()  # artifacts.endpoint: local, as the tenantry command resolves it
    tokens = {who: secrets.token_urlsafe(24) for who in PEOPLE}
    token_file = workdir / "people-tokens.csv"
    token_file.write_text("".join(f'{tokens[who]},{who},{who},""\n' for who in PEOPLE))
    token_file.chmod(0o600)
    procs: list[subprocess.Popen[bytes]] = []
    clusters: list[str] = []
    aws_started = False
    try:
        clusters.append(STAGING)
        staging = localcluster.create(STAGING, nodes=1, token_file=token_file)
        clusters.append(PRODUCTION)
        localcluster.create(PRODUCTION, nodes=1)
        aws_started = True
        awsserver.start()
        seeded = [f"t{i:02d}" for i in range(args.tenants)]
        repo_root = write_repo(workdir / "repo", seeded)
        repo = repository.load(repo_root)
        reconcile.apply_all(repo)
        wiring.setup(aws.clients(repo.platform), repo.platform)
        database = f"sqlite:///{workdir / 'ledger.sqlite'}"
        ledger = Ledger.open(database)  # migrated once, before the processes open it
        rows = seed(ledger, seeded, args.services, args.deployments)
        print(f"ledger seeded: {rows} deployments ({args.tenants} tenants x {args.services} "
              f"services x {args.deployments})")  # fmt: skip

        env = {"TENANTRY_DATABASE_URL": database}
        port = processes.free_port()
        start("server", [sys.executable, "-m", "tenantry", "server", "--repo", str(repo_root),
                         "--port", str(port)], port=port, env=env, logs=workdir,
              procs=procs)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        metrics = processes.free_port()
        start("worker", [sys.executable, "-m", "tenantry", "deployer", "--repo", str(repo_root),
                         "--worker", "bench-w1", "--wait", "1", "--metrics-port", str(metrics)],
              port=metrics, env=env, logs=workdir, procs=procs)  # fmt: skip

        # 1. Reads: over HTTP, then straight on the ledger.
        all_tenants = ["echo", *seeded]
        n = args.clients * args.requests
        begun = time.monotonic()
        api_p50, api_p99 = percentiles(api_reads(url, tokens["dana"], args.clients, args.requests))
        print(f"API reads, {args.clients} clients x {args.requests} (status/history): "
              f"p50 {api_p50:.1f} ms, p99 {api_p99:.1f} ms over {n} "
              f"({n / (time.monotonic() - begun):.0f}/s)")  # fmt: skip
        # With Ledger.open's pool (5 + 10 overflow, 30 s timeout), 4 of 50 threads in one
        # process timed out waiting for a connection (first run, 2026-11-29): the
        # baseline gets one connection per thread, so it measures the reads themselves.
        direct = Ledger(create_engine(database, pool_size=args.clients, max_overflow=0))
        begun = time.monotonic()
        led_p50, led_p99 = percentiles(
            ledger_reads(direct, all_tenants, args.clients, args.requests)
        )
        # Where the time goes: each read alone, one thread, on the same ledger.
        alone = {
            "current_releases": lambda: direct.current_releases(),
            "deployments_page": lambda: direct.deployments_page(tenants=all_tenants, limit=50),
        }
        single = {name: median_ms(read, 20) for name, read in alone.items()}
        direct.close()
        print(f"ledger reads (baseline), {args.clients} threads x {args.requests}: "
              f"p50 {led_p50:.1f} ms, p99 {led_p99:.1f} ms over {n} "
              f"({n / (time.monotonic() - begun):.0f}/s)")  # fmt: skip
        print(f"API / ledger: p50 {api_p50 / led_p50:.1f}x, p99 {api_p99 / led_p99:.1f}x")
        print("each read alone, median of 20: " + ", ".join(
            f"{name} {ms:.1f} ms" for name, ms in single.items()))  # fmt: skip

        # 2. TokenReview, without and with the cache.
        uncached = reviews(staging, tokens["dana"], args.reviews, cache_s=0)
        cached = reviews(staging, tokens["dana"], args.reviews, cache_s=60)
        print(f"TokenReview median over {args.reviews}: uncached {uncached:.2f} ms, "
              f"cached {cached:.4f} ms")  # fmt: skip

        # 3. Approve → first production deploy started.
        seconds = []
        for i in range(args.runs):
            seconds.append(approve_to_deploy(repo_root, ledger, url, tokens, f"1.{i + 1}.0"))
            print(f"approve -> production deploy started, run {i + 1}: {seconds[-1]:.3f} s")
        approve_s = statistics.median(seconds)
        print(f"approve -> production deploy started, median of {args.runs}: {approve_s:.3f} s "
              f"(min {min(seconds):.3f}, max {max(seconds):.3f})")  # fmt: skip
        ledger.close()
    finally:
        for process in reversed(procs):
            stop(process)
        if aws_started:
            awsserver.stop()
        for name in clusters:
            localcluster.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "api_read_p50_ms": round(api_p50, 1),
        "api_read_p99_ms": round(api_p99, 1),
        "ledger_read_p50_ms": round(led_p50, 1),
        "ledger_read_p99_ms": round(led_p99, 1),
        "api_read_requests": n,
        "current_releases_alone_ms": round(single["current_releases"], 1),
        "deployments_page_alone_ms": round(single["deployments_page"], 1),
        "approve_to_deploy_s": round(approve_s, 3),
        "approve_to_deploy_runs": args.runs,
        "tokenreview_cached_ms": round(cached, 4),
        "tokenreview_uncached_ms": round(uncached, 2),
        "seeded_deployments": rows,
    }
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
