"""On premises: publish → OCI registry → its push notification → the Tenantry server →
a deploy request → the deployer → staging. The real Distribution registry over TLS with
htpasswd (the local one `tenantry up` runs), a real `tenantry server` process, a deployer
worker taking requests, real Helm and the session cluster.

When the notification is lost (the registry restarted with its in-memory queue), the
workers' resync deploys the release within one interval; a duplicate notification deploys
nothing twice; a notification without the shared secret is refused and records nothing.
The real helm client reads the tenant's charts from the registry through the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

from tenantry import helm, processes
from tenantry.artifacts import package, publishing, source, store
from tenantry.deploy import deployer as deploying
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, tables
from tenantry.local import registry
from tests.integration.test_delivery import Platform, onboarded, released
from tests.integration.test_helm_repository import Helm
from tests.integration.test_oci_registry import helm_cli
from tests.integration.test_server import start, stop
from tests.waiting import wait_for

__all__ = ["onboarded"]  # the fixture, shared with test_delivery

RESYNC_S = 5  # the shortest resyncIntervalS platform.yaml allows


@dataclass(frozen=True)
class OnPrem:
    """The platform repository, its ledger, the server and what the registry posts to."""

    platform: Platform
    ledger: Ledger
    server: str
    secret: str

    def publish(self) -> publishing.Published:
        repo = self.platform.load()
        (published,) = publishing.publish(
            repo, list(repo.services), clients=None, ledger=self.ledger,
            origin=publishing.provenance(repo.root),
        )  # fmt: skip
        return published

    def notify(self, envelope: dict, *, secret: str | None = None) -> httpx2.Response:
        """Post ``envelope`` to the server as the registry would (``secret=""``: with no
        Authorization header at all)."""
        sent = self.secret if secret is None else secret
        headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                   **({"Authorization": f"Bearer {sent}"} if sent else {})}  # fmt: skip
        return httpx2.post(f"{self.server}/api/v1/events/registry", content=json.dumps(envelope),
                           headers=headers, timeout=30, trust_env=False)  # fmt: skip

    def deployed(self, version: str) -> list[tables.Deployment]:
        return [d for d in self.ledger.history(tenant="echo", service="web")
                if d.version == version and d.result == "succeeded"]  # fmt: skip

    def requests(self, version: str) -> list[tables.DeployRequest]:
        return [r for r in self.ledger.deploy_requests(tenants=["echo"], limit=100)
                if r.version == version]  # fmt: skip


def start_registry(server: str | None, secret: str) -> registry.Registry:
    return registry.start(notify_url=f"{server}/api/v1/events/registry" if server else None,
                          notify_secret=secret if server else None)  # fmt: skip


@pytest.fixture(scope="module")
def onprem(
    cluster: localcluster.LocalCluster, onboarded: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnPrem]:
    root = tmp_path_factory.mktemp("onprem")
    p = Platform(root / "platform", cluster.name)
    data = yaml.safe_load((p.root / "platform.yaml").read_text())
    data["artifacts"] = {"kind": "oci", "registry": "local", "resyncIntervalS": RESYNC_S}
    del data["queue"]
    data["server"] = {"managementCluster": cluster.name}
    (p.root / "platform.yaml").write_text(yaml.safe_dump(data))
    tenant = yaml.safe_load((p.root / "tenants" / "echo.yaml").read_text())
    tenant["owners"]["users"].append("alice")  # a person with a token (tests/conftest.py)
    (p.root / "tenants" / "echo.yaml").write_text(yaml.safe_dump(tenant))
    p.commit("charts in the local OCI registry")
    database = f"sqlite:///{root / 'ledger.sqlite'}"
    ledger = Ledger.open(database)  # migrated once, before the server opens it
    port = processes.free_port()
    server = start("server", [sys.executable, "-m", "tenantry", "server", "--repo", str(p.root),
                              "--port", str(port)],
                   port=port, env={"TENANTRY_DATABASE_URL": database}, logs=root)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    secret = registry.events_secret_file().read_text().strip()
    start_registry(url, secret)
    worker = deploying.Deployer(
        p.load(), clients=None, queue_url=None, ledger=ledger,
        options=deploying.Options(worker="w1", deploy_timeout_s=30),
    )  # fmt: skip
    thread = threading.Thread(target=worker.run, name="w1")
    thread.start()
    try:
        yield OnPrem(p, ledger, url, secret)
    finally:
        worker.stop()
        thread.join()
        registry.stop(forget=True)
        stop(server)
        ledger.close()
        helm.uninstall(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"),
                       release="web")  # fmt: skip
    log = (root / "server.log").read_text()
    assert secret not in log, "the registry's shared secret was logged"


def test_a_push_notification_deploys_the_chart_to_staging_once(
    onprem: OnPrem, cluster: localcluster.LocalCluster
) -> None:
    published = onprem.publish()
    assert published.result == "published"
    assert published.key.startswith("oci://127.0.0.1:") and published.key.endswith(
        "/charts/echo/web:1.0.0"
    )
    wait_for(lambda: onprem.deployed("1.0.0"), "the notification's deploy of 1.0.0",
             timeout_s=120)  # fmt: skip
    (request,) = onprem.requests("1.0.0")
    assert (request.source, request.requested_by, request.status) == (
        "registry-event", "registry", "succeeded")  # fmt: skip
    assert released(cluster)["chart"] == "web-1.0.0"
    queued = [e for e in onprem.ledger.events(limit=100)
              if e.key == published.key and e.result == "queued"]  # fmt: skip
    assert queued, "the notification was not recorded under the chart's reference"

    # The registry delivers at least once: the same notification again (its retry after a
    # lost answer) deploys nothing a second time.
    with contextlib.closing(source.for_repository(onprem.platform.load())) as charts:
        assert isinstance(charts, source.OciCharts)
        chart = charts.registry.chart("echo", "web", "1.0.0")
    assert chart is not None
    tag = published.key.rsplit(":", 1)[1]
    again = onprem.notify({"events": [{
        "id": "again", "timestamp": "2026-11-29T17:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": "charts/echo/web", "tag": tag, "digest": chart.digest},
    }]})  # fmt: skip
    assert again.status_code == 200, again.text
    wait_for(lambda: all(r.status != "queued" and r.status != "running"
                         for r in onprem.requests("1.0.0")),
             "the duplicate's request to be handled", timeout_s=60)  # fmt: skip
    assert len(onprem.deployed("1.0.0")) == 1


def test_a_real_helm_client_reads_the_tenants_charts_from_the_registry_through_the_server(
    onprem: OnPrem, tokens: dict[str, str], tmp_path: Path
) -> None:
    # The same /helm/<tenant> repository as with S3, its index and archives read from the
    # registry, with the person's own token; no registry credential leaves the server.
    helm_client = Helm(tmp_path / "helm")
    added = helm_client.add("echo", f"{onprem.server}/helm/echo", username="alice",
                            token=tokens["alice"])  # fmt: skip
    assert added.returncode == 0, added.stderr
    found = helm_client.run("search", "repo", "echo", "--versions", "-o", "json")
    assert found.returncode == 0, found.stderr
    assert ("echo/web", "1.0.0") in [
        (c["name"], c["version"]) for c in yaml.safe_load(found.stdout)
    ]
    pulled = helm_client.run("pull", "echo/web", "--version", "1.0.0", "-d", str(tmp_path))
    assert pulled.returncode == 0, pulled.stderr
    digest = hashlib.sha256((tmp_path / "web-1.0.0.tgz").read_bytes()).hexdigest()
    assert onprem.ledger.published_digests(tenant="echo", service="web", version="1.0.0") == {
        digest
    }


def test_a_lost_notification_is_deployed_by_the_resync(onprem: OnPrem) -> None:
    # The registry restarted between the push and the notification's delivery: its
    # in-memory queue (and the event in it) is gone, so no notification ever comes.
    registry.stop()
    start_registry(None, onprem.secret)
    try:
        onprem.platform.write("1.1.0")
        onprem.platform.commit("1.1.0")
        assert onprem.publish().result == "published"
    finally:
        registry.stop()
        start_registry(onprem.server, onprem.secret)
    wait_for(lambda: onprem.deployed("1.1.0"), "the resync's deploy of 1.1.0",
             timeout_s=RESYNC_S * 6 + 60)  # fmt: skip
    assert [r.source for r in onprem.requests("1.1.0")] == ["resync"]


def test_same_version_other_content_is_refused(onprem: OnPrem) -> None:
    onprem.platform.write("1.1.0", replicas=3)  # 1.1.0 is published with 1 replica
    onprem.platform.commit("1.1.0 changed without a new version")
    try:
        with pytest.raises(store.ImmutableVersionError, match="already published"):
            onprem.publish()
    finally:
        onprem.platform.write("1.1.0")
        onprem.platform.commit("1.1.0 as published")


def test_a_notification_without_the_secret_or_oversized_is_refused_and_records_nothing(
    onprem: OnPrem,
) -> None:
    before = len(onprem.ledger.events(limit=1000))
    envelope = {"events": [{"id": "x", "action": "push", "target": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "charts/echo/web", "tag": "9.9.9", "digest": "sha256:" + "0" * 64}}]}  # fmt: skip
    for secret in ("wrong", ""):
        answer = onprem.notify(envelope, secret=secret)
        assert answer.status_code == 401 and "shared secret" in answer.json()["error"]
    # With the secret, but far larger than any envelope the registry sends.
    huge = onprem.notify({"events": [envelope["events"][0]] * 10_000})
    assert huge.status_code == 413 and "at most" in huge.json()["error"]
    assert len(onprem.ledger.events(limit=1000)) == before
    assert onprem.requests("9.9.9") == []


def test_pushes_that_are_no_release_are_recorded_and_ignored(onprem: OnPrem) -> None:
    digest = "sha256:" + "1" * 64
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest}
    answer = onprem.notify({"events": [
        {"id": "a", "action": "push", "target": {**target, "repository": "charts/nobody/api",
                                                 "tag": "1.0.0"}},
        {"id": "b", "action": "push", "target": {**target, "repository": "charts/echo/web",
                                                 "tag": "7.7.7"}},
        {"id": "c", "action": "push", "target": {**target, "repository": "images/echo/web",
                                                 "tag": "1.0.0"}},
        {"id": "d", "action": "pull", "target": {**target, "repository": "charts/echo/web",
                                                 "tag": "1.0.0"}},
    ]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    reasons = [h["reason"] for h in answer.json()["handled"]]
    assert [h["result"] for h in answer.json()["handled"]] == ["invalid"] * 3  # the pull: skipped
    assert "nobody/api is no service" in reasons[0]
    assert "without `tenantry publish`" in reasons[1]
    assert "not under charts/<tenant>/<service>" in reasons[2]
    assert onprem.requests("7.7.7") == []


def test_a_tag_moved_to_other_content_is_refused(onprem: OnPrem, tmp_path: Path) -> None:
    # A real `helm push` around `tenantry publish`: 1.0.0's tag now names other content.
    onprem.platform.write("1.0.0", replicas=2)
    onprem.platform.commit("1.0.0 changed, pushed by hand")
    try:
        repo = onprem.platform.load()
        pkg = package.package(repo.service("echo/web"), workdir=tmp_path,
                              provenance=publishing.provenance(repo.root))  # fmt: skip
    finally:
        onprem.platform.write("1.1.0")
        onprem.platform.commit("back to 1.1.0")
    found = registry.running()
    assert found is not None
    user, password = found.credentials_file.read_text().strip().split(":", 1)
    for args, stdin in (
        (["registry", "login", found.address, "--username", user, "--password-stdin"], password),
        (["push", str(pkg.path), f"oci://{found.address}/charts/echo"], None),
    ):
        done = helm_cli([*args, "--ca-file", str(found.ca_file)], tmp_path, stdin=stdin)
        assert done.returncode == 0, done.stderr
    # The registry's notification of that push: the worker fetches the tag, finds an archive
    # `tenantry publish` never recorded, and refuses it (and alerts the platform team).
    wait_for(lambda: [r for r in onprem.requests("1.0.0") if r.status == "failed"
                      and "never published" in r.last_error],
             "the moved tag's request to be refused", timeout_s=60)  # fmt: skip
    assert len(onprem.deployed("1.0.0")) == 1  # the first, genuine deploy only
