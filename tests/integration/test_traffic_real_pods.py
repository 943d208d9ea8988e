"""Live traffic to real pods: two production clusters with a real node each, the cluster
ingress reading their EndpointSlices, HAProxy between the clusters, Helm deploying the
platform's base chart as the tenant, and a real Prometheus.

* a rolling upgrade of 3 replicas under steady load loses no request;
* a version whose pods never turn ready stops rolling out, and the old pods keep serving
  every request;
* a canary whose real pods answer 20 % errors is rolled back by the canary controller,
  and users are then served by the old pods only.

Skipped with the reason where containers cannot run (not root, no cgroups, no runc).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml
from lightkube.resources.core_v1 import Pod

from tenantry import processes
from tenantry.artifacts import package
from tenantry.deploy import canary_release, release
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tenantry.local import traffic as local_traffic
from tenantry.monitoring import discovery
from tenantry.observability import pods
from tenantry.spec import models, repository
from tenantry.tenancy import reconcile
from tenantry.traffic.haproxy import HAProxy
from tenantry.traffic.load import Load
from tenantry.traffic.router import Route
from tests import real_nodes
from tests.integration.test_delivery import git
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, real_nodes.needed]

REGISTRY = "registry.acme.example"


@dataclass
class Platform:
    """The platform repository, the ledger, and deploys as the worker does them."""

    root: Path
    primary: str
    canary: str
    ledger: Ledger
    workdir: Path

    def load(self) -> repository.Repository:
        return repository.load(self.root)

    def write(self, version: str, **env: str) -> None:
        descriptor = {
            "name": "web", "version": version, "image": f"{REGISTRY}/echo/web:{version}",
            "replicas": 3, "env": env,
            "resources": {"requests": {"cpu": "20m", "memory": "32Mi"},
                          "limits": {"cpu": "200m", "memory": "64Mi"}},
        }  # fmt: skip
        path = self.root / "services" / "echo" / "web" / "service.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(descriptor))
        git(self.root, "add", ".")
        git(self.root, "commit", "-q", "--allow-empty", "-m", version)

    def artifact(self, version: str, **env: str) -> release.Artifact:
        self.write(version, **env)
        repo = self.load()
        built = package.package(repo.service("echo/web"), workdir=self.workdir / version,
                                provenance=package.Provenance("test", "test", "now"))  # fmt: skip
        return release.Artifact("echo", "web", version, built.digest, built.path)

    def deploy(self, cluster: str, version: str, *, timeout_s: float = 120,
               **env: str) -> str | None:  # fmt: skip
        repo = self.load()
        (ref,) = [c for c in repo.platform.environment("production").clusters if c.name == cluster]
        return release.deploy(repo, self.ledger, self.artifact(version, **env),
                              environment="production", clusters=[ref], actor="test",
                              timeout_s=timeout_s)  # fmt: skip


@dataclass
class Live:
    """The platform with its live traffic: HAProxy's front, the route, Prometheus."""

    platform: Platform
    route: Route
    router: HAProxy
    front: str
    prometheus: str

    @property
    def primary(self) -> str:
        return self.platform.primary

    @property
    def canary(self) -> str:
        return self.platform.canary

    def deploy(self, cluster: str, version: str, *, timeout_s: float = 120,
               **env: str) -> str | None:  # fmt: skip
        return self.platform.deploy(cluster, version, timeout_s=timeout_s, **env)


def _platform(root: Path, primary: str, canary: str, prometheus_port: int) -> None:
    platform = {
        "name": "rp",
        "environments": [{"name": "production", "clusters": [
            {"name": primary, "local": primary, "role": "primary"},
            {"name": canary, "local": canary, "role": "canary"}]}],
        "defaults": {"quota": {"cpu": "4", "memory": "4Gi", "pods": "20"},
                     "container": {"requests": {"cpu": "20m", "memory": "32Mi"},
                                   "limits": {"cpu": "200m", "memory": "64Mi"}}},
        "registries": [REGISTRY],
        "traffic": {"scrapeIntervalS": 1, "prometheusUrl": f"http://127.0.0.1:{prometheus_port}",
                    "canary": {"steps": [20, 50], "intervalS": 5, "minRequests": 10},
                    "holdDownS": 2},
    }  # fmt: skip
    (root / "tenants").mkdir(parents=True)
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    (root / "tenants" / "echo.yaml").write_text(yaml.safe_dump(
        {"name": "echo", "owners": {"users": ["e"]}, "environments": ["production"]}
    ))  # fmt: skip
    git(root, "init", "-q", "-b", "main")


def _prometheus_config(repo: repository.Repository, clusters: list[str], workdir: Path) -> dict:
    """HAProxy's exporter, and the tenant's pods found through each cluster's API
    (`kubernetes_sd_configs`, as the pods-only discovery identity), as the platform's
    monitoring does it."""
    accesses = []
    for name in clusters:
        cluster = localcluster.get(name)
        with cluster.connect() as kube:
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MONITORING}})
            token = discovery.grant(kube, MONITORING)
        accesses.append(discovery.write_access(
            workdir / "discovery" / name, cluster=name, api_server=cluster.server,
            ca_pem=cluster.ca_file.read_bytes(), token=token,
            node_pattern=f"{re.escape(name)}-real-[0-9]+",
        ))  # fmt: skip
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "platform", "static_configs": [
            {"targets": local_traffic.scrape_targets(repo)}]},
        *pods.scrape_configs(repo.tenants, repo.platform, accesses),
    ]}  # fmt: skip


MONITORING = "tenantry-monitoring"
_PODS_UP = 'up{job=~"tenant-echo/.+"} == 1'


def _query(prometheus: str, query: str) -> list[dict]:
    try:
        answer = httpx2.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=2)
        return list(answer.json()["data"]["result"])
    except (httpx2.HTTPError, LookupError, ValueError):
        return []


def _answers(url: str, count: int) -> list[str]:
    with httpx2.Client(timeout=5) as client:
        return [client.get(url).text.split()[1] for _ in range(count)]


def _ready_pods(cluster: str, version: str) -> int:
    """Pods of ``version`` that are ready and not on their way out."""
    with localcluster.get(cluster).connect() as kube:
        found = kube.list(Pod, namespace="echo", labels={"app.kubernetes.io/name": "web"})
    ready = 0
    for pod in found:
        spec, status, meta = pod.spec, pod.status, pod.metadata
        image = (spec.containers[0].image or "") if spec else ""
        conditions = (status.conditions or []) if status else []
        leaving = meta is None or meta.deletionTimestamp is not None
        if (
            image.endswith(f":{version}")
            and not leaving
            and any(c.type == "Ready" and c.status == "True" for c in conditions)
        ):
            ready += 1
    return ready


@pytest.fixture(scope="module")
def live(state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    suffix = secrets.token_hex(2)
    primary, canary = f"rp-primary-{suffix}", f"rp-canary-{suffix}"
    tmp = tmp_path_factory.mktemp("real-traffic")
    root = tmp / "platform"
    prometheus = None
    created: list[str] = []
    stack = contextlib.ExitStack()
    try:
        for name in (primary, canary):
            localcluster.create(name, nodes=1, real_nodes=1)
            created.append(name)
        prom_port = processes.free_port()
        _platform(root, primary, canary, prom_port)
        ledger = stack.enter_context(Ledger.open(f"sqlite:///{tmp / 'ledger.sqlite'}"))
        p = Platform(root, primary, canary, ledger, tmp / "charts")
        p.write("1.0.0")
        repo = p.load()
        reconcile.apply_all(repo)
        for name in (primary, canary):
            assert p.deploy(name, "1.0.0") is None
        router = local_traffic.start(repo)
        assert router is not None
        ((route, front),) = local_traffic.routes(repo)
        config = _prometheus_config(repo, created, tmp)
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        live = Live(p, route, router, f"http://127.0.0.1:{front}/", f"http://127.0.0.1:{prom_port}")
        wait_for(lambda: len(_query(live.prometheus, _PODS_UP)) == 6,
                 "Prometheus to scrape the six pods", timeout_s=60)  # fmt: skip
        wait_for(lambda: all(s.healthy for s in router.state(route)),
                 "both clusters' ingresses healthy in HAProxy", timeout_s=30)  # fmt: skip
        yield live
    finally:
        stack.close()
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        local_traffic.stop()
        for name in created:
            localcluster.delete(name)


def test_real_pods_serve_the_route_through_the_cluster_ingress(live: Live) -> None:
    answers = httpx2.get(live.front, timeout=5).text.split()
    assert answers[:2] == ["web", "1.0.0"]
    # Served by a pod (its hostname), not a demo app standing in for the cluster.
    assert answers[3].startswith("web-")
    with localcluster.get(live.primary).connect() as kube:
        pods = kube.list(Pod, namespace="echo")
    nodes = {p.spec.nodeName for p in pods if p.spec}
    assert nodes == {f"{live.primary}-real-0"}  # the kwok node is tainted


def test_a_rolling_upgrade_under_load_loses_no_request(live: Live) -> None:
    load = Load(live.front, threads=2, interval_s=0.05)
    try:
        wait_for(lambda: len(load.answers) >= 20, "the load to start")
        assert live.deploy(live.primary, "1.1.0") is None
        wait_for(lambda: [v for _, v in load.answers[-20:]] == ["1.1.0"] * 20,
                 "users to be served 1.1.0 only", timeout_s=30)  # fmt: skip
    finally:
        load.stop()
    assert load.failed == 0, load.errors
    assert load.versions["error"] == 0
    assert set(load.versions) == {"1.0.0", "1.1.0"}
    assert 100 < sum(load.versions.values()) < 3000  # steady, and bounded
    assert _ready_pods(live.primary, "1.1.0") == 3


def test_a_version_whose_pods_never_turn_ready_stops_and_the_old_pods_serve(live: Live) -> None:
    load = Load(live.front, threads=2, interval_s=0.1)
    try:
        wait_for(lambda: len(load.answers) >= 20, "the load to start")
        failure = live.deploy(live.primary, "1.2.0", timeout_s=20, APP_READY="false")
    finally:
        load.stop()
    assert failure is not None and live.primary in failure
    assert load.failed == 0, load.errors
    assert set(load.versions) == {"1.1.0"}  # every request answered, by the old pods
    assert sum(load.versions.values()) > 100
    assert _ready_pods(live.primary, "1.1.0") == 3
    assert set(_answers(live.front, 20)) == {"1.1.0"}


def test_a_canary_with_20_percent_errors_is_rolled_back_and_old_pods_serve(live: Live) -> None:
    assert live.deploy(live.canary, "1.1.0") is None
    wait_for(lambda: len(_query(live.prometheus, _PODS_UP)) == 6,
             "Prometheus to scrape the new pods", timeout_s=60)  # fmt: skip
    lines: list[str] = []
    artifact = live.platform.artifact("1.3.0", APP_ERROR_RATE="0.2")
    repo = live.platform.load()
    service = repo.service("echo/web")

    def deploy(clusters: Sequence[models.ClusterRef]) -> str | None:
        return release.deploy(repo, live.platform.ledger, artifact, environment="production",
                              clusters=clusters, actor="test", timeout_s=120)  # fmt: skip

    load = Load(live.front, threads=2, interval_s=0.05)
    try:
        failure = canary_release.release(
            repo, live.platform.ledger, service=service, version="1.3.0", environment="production",
            deploy=deploy, log=lines.append, decide_within_s=60,
        )  # fmt: skip
        after = len(load.answers)
        wait_for(lambda: len(load.answers) >= after + 40, "answers after the rollback")
    finally:
        load.stop()
    assert failure is not None and failure.startswith("canary rolled-back"), (failure, lines)
    assert "success rate" in failure
    assert load.failed == 0, load.errors
    assert load.versions["1.3.0"] > 0  # the canary did take real traffic
    assert {v for _, v in load.answers[after:]} == {"1.1.0"}  # then the old pods only
    weights = {s.role: s.weight for s in live.router.state(live.route)}
    assert weights["canary"] == 0
    assert _ready_pods(live.canary, "1.1.0") == 3  # helm rollback on the canary
    assert _ready_pods(live.primary, "1.1.0") == 3  # the primary never got it
