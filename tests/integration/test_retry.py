"""Retry after a fix, as a new user meets it: charts published before the tenant is
onboarded fail (the ledger says why and how to fix it), land in the dead-letter queue and
are parked — the resync leaves them alone. Once onboarded, an owner's `tenantry retry`
and the platform team's redrive deploy them, each release once, through the Tenantry
server (TokenReview by the real API server) and a real `tenantry deployer` process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

from tenantry import aws, helm, processes
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tenantry.tenancy import reconcile
from tests.integration.test_delivery import (
    REGISTRY,
    Platform,
    descriptor,
    offboard,
    publish,
    wait_namespace_gone,
    worker,
)
from tests.integration.test_server import start, stop, tenantry_server
from tests.waiting import wait_for

TENANT = "late"
SERVICES = ("api", "web")


def late_platform(root: Path, cluster: str) -> Platform:
    """Tenant late (owner alice, member erin) with two services, not onboarded; the session
    cluster proves identities, dana administers; resync every 5 s."""
    p = Platform(root, cluster)
    shutil.rmtree(p.root / "services" / "echo")
    (p.root / "tenants" / "echo.yaml").unlink()
    (p.root / "tenants" / f"{TENANT}.yaml").write_text(yaml.safe_dump({
        "name": TENANT, "owners": {"users": ["alice"]}, "members": {"users": ["erin"]},
        "environments": ["staging"],
    }))  # fmt: skip
    for name in SERVICES:
        path = p.root / "services" / TENANT / name / "service.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({**descriptor("1.0.0"), "name": name,
                                        "image": f"{REGISTRY}/{TENANT}/{name}:1"}))  # fmt: skip
    data = yaml.safe_load((p.root / "platform.yaml").read_text())
    data["artifacts"]["resyncIntervalS"] = 5
    data["server"] = {"managementCluster": cluster, "admins": {"users": ["dana"]},
                      "reviewCacheS": 5}  # fmt: skip
    (p.root / "platform.yaml").write_text(yaml.safe_dump(data))
    p.commit("tenant late, not onboarded yet")
    return p


@dataclass(frozen=True)
class Running:
    url: str
    platform: Platform
    ledger: Ledger
    root: Path

    def as_(self, token: str) -> httpx2.Client:
        return httpx2.Client(base_url=f"{self.url}/api/v1", timeout=60, trust_env=False,
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip


@pytest.fixture(scope="module")
def running(
    cluster: localcluster.LocalCluster, aws_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("retry")
    p = late_platform(root / "platform", cluster.name)
    repo = p.load()
    wiring.setup(aws.clients(repo.platform), repo.platform)
    database = f"sqlite:///{root / 'ledger.sqlite'}"
    ledger = Ledger.open(database)  # migrated once, before the processes open it
    url, server = tenantry_server(p.root, database, root)
    metrics = processes.free_port()
    deployer = start("worker", [sys.executable, "-m", "tenantry", "deployer", "--repo",
                                str(p.root), "--worker", "w1", "--wait", "1", "--lease-ttl", "5",
                                "--metrics-port", str(metrics)],
                     port=metrics, env={"TENANTRY_DATABASE_URL": database}, logs=root)  # fmt: skip
    try:
        yield Running(url, p, ledger, root)
    finally:
        stop(deployer)
        stop(server)
        target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=TENANT)
        for name in SERVICES:
            subprocess.run(["helm", "uninstall", name, "-n", TENANT, "--kubeconfig",
                            str(cluster.kubeconfig)], capture_output=True, check=False)  # fmt: skip
        assert target
        ledger.close()
        offboard(root)
        wait_namespace_gone(TENANT)


def succeeded(ledger: Ledger, service: str) -> list[str]:
    return [d.version for d in ledger.deployments()
            if d.tenant == TENANT and d.service == service and d.result == "succeeded"]  # fmt: skip


def parked(ledger: Ledger, service: str) -> bool:
    found = ledger.open_request(TENANT, service, "1.0.0")
    return found is not None and found.status == "parked"


def test_published_before_onboarding_then_retried_and_redriven_deploys_each_release_once(
    running: Running, cluster: localcluster.LocalCluster, tokens: dict[str, str]
) -> None:
    ledger, p = running.ledger, running.platform
    publish(p, ledger)  # before `tenantry tenants apply`: a new user's first try

    for name in SERVICES:
        wait_for(lambda name=name: parked(ledger, name), f"late/{name} 1.0.0 to be parked",
                 timeout_s=120, poll_s=0.25)  # fmt: skip
    cause = (f"tenant {TENANT} is not onboarded in cluster {cluster.name}: run tenantry "
             "tenants apply (namespace late does not exist)")  # fmt: skip
    failed = [d for d in ledger.deployments() if d.tenant == TENANT]
    assert failed and all(d.result == "failed" and d.reason.startswith(cause) for d in failed)
    request = ledger.open_request(TENANT, "web", "1.0.0")
    assert request is not None and cause in request.last_error
    # Parked: the resync does not try again on its own (it would fail the same way).
    assert worker(p, ledger, "in-test").resync() == []

    with running.as_(tokens["dana"]) as dana:
        letters = wait_for(lambda: len(dana.get("/deadletters").json()) == 2 and
                           dana.get("/deadletters").json(), "both messages in the dead-letter "
                           "queue", timeout_s=60, poll_s=0.5)  # fmt: skip
        assert sorted(r for m in letters for r in m["releases"]) == [
            "late/api 1.0.0", "late/web 1.0.0",
        ]  # fmt: skip

    body = {"service": f"{TENANT}/web", "version": "1.0.0"}
    with running.as_(tokens["erin"]) as erin:  # a member, not an owner
        refused = erin.post("/retries", json=body)
        assert refused.status_code == 403
        assert refused.json()["right"] == "retry"
        assert "erin lacks the right 'retry' on tenant late" in refused.json()["error"]
        assert "owners of late (users alice)" in refused.json()["holders"]
        assert erin.get("/deadletters").status_code == 403  # the platform team's
    with running.as_(tokens["carol"]) as carol:  # another tenant's
        assert carol.post("/retries", json=body).status_code == 404
    with running.as_(tokens["alice"]) as alice:
        never = alice.post("/retries", json={**body, "version": "9.9.9"})
        assert never.status_code == 409 and "never published" in never.json()["error"]
        assert alice.post("/deadletters/redrive").status_code == 403

    reconcile.apply_all(p.load())  # the fix: `tenantry tenants apply`

    with running.as_(tokens["alice"]) as alice:
        answer = alice.post("/retries", json=body)
        assert answer.status_code == 202, answer.text
        retried = answer.json()
        assert retried["outcome"] == "unparked"
        assert (retried["request"]["source"], retried["request"]["requestedBy"]) == (
            "retry", "alice",
        )  # fmt: skip
    wait_for(lambda: succeeded(ledger, "web"), "the retry to deploy late/web 1.0.0",
             timeout_s=90, poll_s=0.25)  # fmt: skip

    with running.as_(tokens["dana"]) as dana:
        redriven = dana.post("/deadletters/redrive")
        assert redriven.status_code == 200, redriven.text
        made = {q["release"]: q["outcome"] for m in redriven.json()["redriven"]
                for q in m["requests"]}  # fmt: skip
        # web was deployed by the retry (its request closed): a new one, skipped below.
        assert made == {"late/api 1.0.0": "unparked", "late/web 1.0.0": "queued"}
        assert redriven.json()["kept"] == []
        assert dana.get("/deadletters").json() == []
    wait_for(lambda: succeeded(ledger, "api"), "the redrive to deploy late/api 1.0.0",
             timeout_s=90, poll_s=0.25)  # fmt: skip
    wait_for(lambda: ledger.deploy_requests(tenants=[TENANT], service="web", status="skipped"),
             "the redriven duplicate of late/web 1.0.0 to be skipped", timeout_s=60)  # fmt: skip

    # Each release deployed once, whatever asked for it (retry, redrive, the resync).
    assert (succeeded(ledger, "api"), succeeded(ledger, "web")) == (["1.0.0"], ["1.0.0"])
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=TENANT)
    assert sorted(r["chart"] for r in helm.list_releases(target)) == ["api-1.0.0", "web-1.0.0"]
    (skipped,) = ledger.deploy_requests(tenants=[TENANT], service="web", status="skipped")
    assert (skipped.source, skipped.requested_by) == ("redrive", "dana")
    assert skipped.last_error == "duplicate: 1.0.0 is already released"
    with running.as_(tokens["erin"]) as erin:  # readers follow the requests
        sources = {(r["service"], r["source"], r["status"]) for r in
                   erin.get("/requests", params={"tenant": TENANT}).json()}  # fmt: skip
    assert ("late/web", "retry", "succeeded") in sources
    assert ("late/api", "redrive", "succeeded") in sources
    # Both are in the ledger's events and the audit log, by the proven people.
    assert any(e.result == "redriven" and "by dana" in e.reason for e in ledger.events())
    audit = {(a.actor, a.action, a.status) for a in ledger.audit_log(tenants=None, limit=200)}
    assert ("alice", "POST /api/v1/retries", 202) in audit
    assert ("erin", "POST /api/v1/retries", 403) in audit
    assert ("dana", "POST /api/v1/deadletters/redrive", 200) in audit


def test_the_cli_retries_through_the_server(
    running: Running, tokens: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, "TENANTRY_SERVER": running.url, "XDG_CONFIG_HOME": str(tmp_path)}

    def tenantry(who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tenantry", *args], capture_output=True,
                              text=True, env={**env, "TENANTRY_TOKEN": tokens[who]},
                              timeout=120, check=False)  # fmt: skip

    done = tenantry("alice", "-o", "json", "retry", f"{TENANT}/api", "1.0.0")
    assert done.returncode == 0, done.stderr
    assert "deploy request" in done.stderr
    assert tenantry("erin", "retry", f"{TENANT}/api", "1.0.0").returncode != 0
    refused = tenantry("erin", "deadletters", "list")
    assert refused.returncode != 0 and "redrive" in refused.stderr
    listed = tenantry("erin", "-o", "json", "requests", f"{TENANT}/api")
    assert listed.returncode == 0, listed.stderr
    assert "retry" in listed.stdout
    # A parked release is named beside the history, with the command that retries it.
    parked = running.ledger.request_deploy(tenant=TENANT, service="api", version="0.9.0",
                                           digest="", source="s3-event", requested_by="test")  # fmt: skip
    assert running.ledger.park_request(parked.request.id, error="boom")
    history = tenantry("erin", "history", f"{TENANT}/api")
    assert history.returncode == 0, history.stderr
    assert "parked: late/api 0.9.0 in staging" in history.stderr
    assert "once fixed: tenantry retry late/api 0.9.0" in history.stderr
