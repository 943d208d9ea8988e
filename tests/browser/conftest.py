"""The dashboard against a real `tenantry server` process: the example platform on the
session cluster, whose API server proves alice's, bob's and carol's real tokens.

Pages are driven by Playwright in Debian's chromium (``./run`` installs it); without it
the browser tests fail naming ``./run`` rather than skipping. Screenshots of each step
are test artifacts: they go to ``$TENANTRY_TEST_ARTIFACTS/dashboard-screenshots`` (default
``build/test-artifacts/``, ignored by git), emptied when a run starts, so they outlive
pytest's rotating temporary directories and CI can collect them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube.resources.core_v1 import Namespace, ResourceQuota

from tenantry import processes
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.ledger import Ledger, now, tables
from tests.browser.platform import example_platform
from tests.conftest import SESSION_ID, TEST_LABEL
from tests.integration.test_server import start, stop
from tests.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.cluster)


@dataclass(frozen=True)
class Dashboard:
    """A running server (no worker: approvals stay queued) and its ledger."""

    url: str
    database: str
    alertmanager: str

    def fire(self, tenant: str, alertname: str, severity: str) -> None:
        """An alert of ``tenant``, posted to Alertmanager as Prometheus posts it."""
        alert = {"labels": {"alertname": alertname, "tenant": tenant, "service": "api",
                            "severity": severity},
                 "annotations": {"summary": f"{alertname} of {tenant}"}}  # fmt: skip
        httpx2.post(f"{self.alertmanager}/api/v2/alerts", json=[alert], timeout=10,
                    trust_env=False).raise_for_status()  # fmt: skip

    def http(self) -> httpx2.Client:
        """A cookie-keeping client that does not follow redirects (tests look at them)."""
        return httpx2.Client(base_url=self.url, timeout=60, trust_env=False,
                             follow_redirects=False)  # fmt: skip

    def promotion(self, requested_by: str, version: str = "1.4.0") -> int:
        """A pending request of payments/api to production."""
        with Ledger.open(self.database) as ledger:
            row = ledger.add(tables.Promotion(
                tenant="payments", service="api", version=version, digest="a" * 64,
                environment="production", requested_by=requested_by, requested_at=now(),
                status="pending", reason="",
            ))  # fmt: skip
        return int(row.id)

    def status_of(self, promotion_id: int) -> str:
        with Ledger.open(self.database) as ledger:
            row = ledger.promotion(promotion_id)
        assert row is not None
        return row.status

    def canary(self, *, step: int, weight: int, status: str = "running",
               interval: dict[str, Any] | None = None) -> None:  # fmt: skip
        """payments/api's canary rollout at ``step``, as a worker records it: first the
        analysed ``interval`` (`Ledger.add_canary_interval`'s arguments) at the step and
        weight it was measured at, then the rollout's new state."""
        with Ledger.open(self.database) as ledger:
            row = ledger.canary("payments", "api")
            if interval is not None:
                assert row is not None, "a rollout exists before its first interval"
                ledger.add_canary_interval(row.id, step=row.step, weight=row.weight,
                                           **interval)  # fmt: skip
            if row is None:
                ledger.add(tables.Canary(
                    tenant="payments", service="api", version="1.4.0", step=step,
                    weight=weight, passes=step, failures=0, status=status, reason="",
                    updated=now(),
                ))  # fmt: skip
            else:
                ledger.set_canary(row.id, step=step, weight=weight, passes=step,
                                  status=status, updated=now())  # fmt: skip

    def canary_status(self) -> str:
        with Ledger.open(self.database) as ledger:
            row = ledger.canary("payments", "api")
        assert row is not None
        return row.status

    def operations(self, kind: str) -> list[tables.Operation]:
        """The operations of ``kind`` queued so far for the workers."""
        with Ledger.open(self.database) as ledger, ledger.session() as session:
            return list(session.query(tables.Operation).filter_by(kind=kind))

    def deployment(self, version: str, *, result: str = "succeeded") -> int:
        """A finished staging deploy of payments/api, as a worker writes it."""
        with Ledger.open(self.database) as ledger:
            row = ledger.add(tables.Deployment(
                tenant="payments", service="api", version=version, digest="a" * 64,
                environment="staging", cluster="staging", actor="worker w1", result=result,
                reason="", started=now(), finished=now(),
            ))  # fmt: skip
        return int(row.id)


@pytest.fixture(scope="module")
def dashboard(
    cluster: localcluster.LocalCluster, admin: Kube, tokens: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Dashboard]:  # fmt: skip
    root = tmp_path_factory.mktemp("dashboard")
    # payments' namespace with a real ResourceQuota: the quota controller fills in its
    # status, which the overview shows (onboarding itself is tested elsewhere).
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": {TEST_LABEL: SESSION_ID}},
        }
    )
    admin.apply({"apiVersion": "v1", "kind": "ResourceQuota",
                 "metadata": {"name": "tenant-quota", "namespace": "payments"},
                 "spec": {"hard": {"pods": "30", "services": "20"}}})  # fmt: skip

    def counted() -> bool:
        status = admin.get(ResourceQuota, "tenant-quota", namespace="payments").status
        return status is not None and bool(status.used)

    # Pages are not refreshed by the cluster, only by the ledger: wait for the count.
    wait_for(counted, "the quota controller to count payments' usage", timeout_s=60)
    alertmanager_port = processes.free_port()
    (root / "alertmanager.yml").write_text(
        "route: {receiver: nobody}\nreceivers: [{name: nobody}]\n"
    )
    alertmanager = start("alertmanager", [
        "prometheus-alertmanager", f"--config.file={root / 'alertmanager.yml'}",
        f"--storage.path={root / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{alertmanager_port}", "--cluster.listen-address=",
    ], port=alertmanager_port, env={}, logs=root)  # fmt: skip
    alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
    repo = example_platform(root / "platform", cluster.name, alertmanager=alertmanager_url)
    database = f"sqlite:///{root / 'ledger.sqlite'}"
    with Ledger.open(database) as ledger:
        ledger.add(tables.Publication(
            tenant="payments", service="api", version="1.4.0", digest="a" * 64,
            git_commit="c" * 40, author="Alice <alice@example.com>", key="payments/api-1.4.0.tgz",
            result="published", at=now(),
        ))  # fmt: skip
    port = processes.free_port()
    server = start("server", [sys.executable, "-m", "tenantry", "server", "--repo", str(repo),
                              "--port", str(port)],
                   port=port, env={"TENANTRY_DATABASE_URL": database}, logs=root)  # fmt: skip
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", database, alertmanager_url)
    finally:
        stop(server)
        stop(alertmanager)
        admin.delete(Namespace, "payments")
    log = (root / "server.log").read_text()
    assert not [who for who, token in tokens.items() if token in log], "a token was logged"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    artifacts = (
        os.environ.get("TENANTRY_TEST_ARTIFACTS")
        or Path(__file__).parents[2] / "build" / "test-artifacts"
    )
    path = Path(artifacts) / "dashboard-screenshots"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    print(f"\ndashboard screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run ./run (it installs Debian's chromium and "
                    "Playwright) before the browser tests")  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
