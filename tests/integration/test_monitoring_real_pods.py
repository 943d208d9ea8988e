"""Metrics and logs of real pods: Prometheus discovers a tenant's pods through the
cluster's API (as a read-only identity) and scrapes them, and the log shipper tails the
files the kubelet writes and routes each line to its tenant's index.

One cluster (1 kwok node, 1 real node) and one monitoring stack (real Prometheus,
Alertmanager, otelcol-tenantry and the stand-in receivers) for the module, in a state
directory of its own; both are stopped and deleted at the end. A machine that cannot
run containers (not root, no cgroups, no runc) skips these with the reason.
"""

from __future__ import annotations

import os
import secrets
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube.core.resource import NamespacedResource
from lightkube.resources.core_v1 import Pod, Secret, ServiceAccount

from tenantry import errors
from tenantry.images import build as images
from tenantry.kube import localcluster, realnode
from tenantry.kube.client import Kube
from tenantry.local import monitoring
from tenantry.observability import pods
from tenantry.observability import secrets as receiver_secrets
from tenantry.spec import repository
from tests import real_nodes
from tests.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
IMAGE = "registry.acme.example/payments/api:1.4.0"


pytestmark = [pytest.mark.slow, real_nodes.needed]


def _pod(name: str, *, real: bool) -> dict[str, Any]:
    """A pod of the app image labelled as the service chart labels its pods."""
    node = {realnode.REAL_NODE_LABEL: "real"} if real else {"type": "kwok"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "payments",
            "labels": {
                "app.kubernetes.io/name": "api",
                "app.kubernetes.io/version": "1.4.0",
                "tenantry.dev/service": "api",
                "tenantry.dev/tenant": "payments",
            },
        },
        "spec": {
            "nodeSelector": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "api",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",  # imported into the node, no registry
                    "ports": [{"name": "http", "containerPort": images.APP_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": images.APP_PORT},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("monitoring-real-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    name = f"mr-{secrets.token_hex(3)}"
    repo = repository.load(EXAMPLE)
    try:
        cluster = localcluster.create(name, nodes=1, real_nodes=1)
        with cluster.connect() as kube:
            kube.apply({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "payments"}})  # fmt: skip
            localcluster.load_images(cluster, [IMAGE])
            # Pod admission needs the namespace's default ServiceAccount, made by a controller.
            wait_for(lambda: _exists(kube, ServiceAccount, "default"), "payments' default SA")
            kube.apply(_pod("api-0", real=True))
            kube.apply(_pod("api-kwok", real=False))  # a kwok pod: runs nothing
            watched = monitoring.watch_cluster(repo, name)
            # No receiver secrets: alerting is skipped, metrics and logs are what is tested.
            values, problems = receiver_secrets.resolve(
                receiver_secrets.needs(repo), lambda _: None
            )
            stack, _ = monitoring.start(repo, secret_values=values, secret_problems=problems)
            yield {"cluster": cluster, "kube": kube, "stack": stack, "watched": watched,
                   "repo": repo}  # fmt: skip
    finally:
        monitoring.stop()
        localcluster.delete(name)
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def _exists(kube: Kube, kind: type[NamespacedResource], name: str) -> bool:
    try:
        kube.get(kind, name, namespace="payments")
    except errors.NotFoundError:
        return False
    return True


def _ready_ip(kube: Kube, name: str) -> str | None:
    status = kube.get(Pod, name, namespace="payments").status
    if status is None or not status.podIP:
        return None
    ready = [c for c in status.conditions or [] if c.type == "Ready" and c.status == "True"]
    return status.podIP if ready else None


def _query(stack: monitoring.Stack, promql: str) -> list[dict[str, Any]]:
    response = httpx2.get(f"{stack.prometheus}/api/v1/query", params={"query": promql},
                          timeout=10)  # fmt: skip
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_the_discovery_identity_may_read_pods_and_nothing_more(platform: dict[str, Any]) -> None:
    access = platform["watched"].access
    for path in (access.token_file, access.ca_file):
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    token = Path(access.token_file).read_text()
    with Kube.connect_with_token(access.api_server, token,
                                 ca_file=Path(access.ca_file)) as reader:  # fmt: skip
        assert {p.metadata.name for p in reader.list(Pod, namespace="payments") if p.metadata} >= {
            "api-0"
        }
        with pytest.raises(errors.ForbiddenError):
            reader.list(Secret, namespace="payments")
        with pytest.raises(errors.ForbiddenError):
            reader.apply(_pod("intruder", real=True))


def test_a_real_pod_is_discovered_and_scraped_with_the_labels_rules_select_on(
    platform: dict[str, Any],
) -> None:
    stack, name = platform["stack"], platform["cluster"].name
    ip = wait_for(lambda: _ready_ip(platform["kube"], "api-0"), "api-0 Ready with an IP",
                  timeout_s=90)  # fmt: skip
    for _ in range(5):
        with urllib.request.urlopen(f"http://{ip}:{images.APP_PORT}/", timeout=5) as response:
            assert response.read().decode() == "api 1.4.0 on api-0\n"
    selector = (f'http_requests_total{{tenant="payments",namespace="payments",service="api",'
                f'version="1.4.0",cluster="{name}",pod="api-0",code="200"}}')  # fmt: skip
    series = wait_for(
        lambda: [s for s in _query(stack, selector) if float(s["value"][1]) >= 5],
        "api-0's five requests in Prometheus", timeout_s=60,
    )  # fmt: skip
    (found,) = series
    assert found["metric"]["job"] == pods.job_name("payments", name)
    assert found["metric"]["instance"] == f"{ip}:{images.APP_PORT}"
    assert found["metric"]["node"] == f"{name}-real-0"
    # The canary's latency histogram is there with the labels its query selects on.
    buckets = _query(
        stack, f'http_request_duration_seconds_bucket{{service="api",cluster="{name}"}}'
    )
    assert buckets


def test_pods_on_kwok_nodes_are_not_targets(platform: dict[str, Any]) -> None:
    stack, name = platform["stack"], platform["cluster"].name
    job = pods.job_name("payments", name)

    def active_pods() -> set[str] | None:
        response = httpx2.get(f"{stack.prometheus}/api/v1/targets", timeout=10)
        targets = [t for t in response.json()["data"]["activeTargets"]
                   if t["labels"].get("job") == job]  # fmt: skip
        return {t["labels"]["pod"] for t in targets} or None

    assert wait_for(active_pods, "the job's targets") == {"api-0"}
    wait_for(lambda: _query(stack, f'up{{job="{job}",pod="api-0"}} == 1'), "api-0 up")


def test_a_real_pods_log_lines_reach_its_tenants_index(platform: dict[str, Any]) -> None:
    stack, name = platform["stack"], platform["cluster"].name

    def lines() -> list[dict[str, Any]]:
        response = httpx2.get(f"{stack.receivers}/received/hec", timeout=5)
        return [r for r in response.json() if "api 1.4.0 listening on :8080" in str(r["event"])]

    (line, *_) = wait_for(lines, "api-0's start-up line at the HEC receiver", timeout_s=60)
    assert line["index"] == "payments"
    fields = line.get("fields", {})
    assert fields.get("k8s.namespace.name") == "payments"
    assert fields.get("k8s.pod.name") == "api-0"
    assert fields.get("k8s.container.name") == "api"
    assert fields.get("k8s.cluster.name") == name
    assert fields.get("tenant") == "payments"


def test_up_watches_the_clusters_with_real_nodes_and_skips_missing_ones(
    platform: dict[str, Any],
) -> None:
    name = platform["cluster"].name
    watched = monitoring.watch_real_clusters(platform["repo"], [name, "absent-cluster"])
    assert [w.access.cluster for w in watched] == [name]
    assert [w.access.cluster for w in monitoring.watched_clusters()] == [name]
    (node,) = watched[0].nodes
    assert node.pod_logs_dir.endswith("/real/0/pod-logs")
