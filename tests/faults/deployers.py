"""`tenantry deployer` processes for the fault tests, and what the ledger, the queue and
helm say afterwards. Shared by the kill tests and the no-fault baseline so both measure
the same deploy on the same parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tenantry import aws, faults, helm, processes
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tenantry.tenancy import reconcile
from tests.integration.test_delivery import Platform
from tests.waiting import wait_for

KEY = "echo/web-1.0.0.tgz"
VERSION = "1.0.0"
# Short enough that a take-over happens in seconds: a dead worker's lease lapses after
# LEASE_TTL_S, its message is visible again VISIBILITY_S after it last hid it (5 s is
# the least platform.yaml accepts).
LEASE_TTL_S = 3.0
VISIBILITY_S = 5


@pytest.fixture
def fast_platform(
    cluster: localcluster.LocalCluster, onboarded: Path, tmp_path: Path
) -> Iterator[Platform]:
    """`test_delivery`'s platform with the queue's visibility timeout at its minimum, a
    fresh bucket and queue; the release is removed after the test."""
    p = Platform(tmp_path / "platform", cluster.name)
    config = yaml.safe_load((p.root / "platform.yaml").read_text())
    config["queue"]["visibilityTimeoutS"] = VISIBILITY_S
    (p.root / "platform.yaml").write_text(yaml.safe_dump(config))
    p.commit("a short visibility timeout, for quick take-overs")
    repo = p.load()
    wiring.setup(aws.clients(repo.platform), repo.platform)
    yield p
    helm.uninstall(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"), release="web")


@dataclass
class Deployer:
    """One `tenantry deployer` process, stopped by its own pid."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (it finishes the message in hand), SIGKILL if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start(p: Platform, ledger: Ledger, name: str, log_dir: Path,
          kill_at: str | None = None) -> Deployer:  # fmt: skip
    """Start a deployer on ``p``'s queue and ``ledger``; return once it serves /metrics
    (it has loaded the repository and opened the ledger)."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env["TENANTRY_DATABASE_URL"] = str(ledger.engine.url)
    if kill_at is not None:
        env[faults.ENV] = kill_at
    port = processes.free_port()
    log = log_dir / f"deployer-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "deployer", "--repo", str(p.root),
             "--worker", name, "--wait", "1", "--lease-ttl", str(LEASE_TTL_S),
             "--metrics-port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    started = Deployer(proc, log)
    try:
        wait_for(lambda: processes.answers(port) or proc.poll() is not None,
                 f"deployer {name} to serve /metrics", timeout_s=60)  # fmt: skip
    except BaseException:
        started.stop()
        raise
    assert proc.poll() is None, f"deployer {name} exited early:\n{started.output()}"
    return started


def succeeded(ledger: Ledger) -> list[int]:
    """Ids of the successful staging deployments of echo/web 1.0.0."""
    return [
        d.id for d in ledger.deployments()
        if (d.service, d.version, d.environment, d.result) == ("web", VERSION, "staging", "succeeded")
    ]  # fmt: skip


def queued(p: Platform, queue: str) -> int:
    """Messages in ``queue``, visible or hidden (moto counts both exactly)."""
    clients = aws.clients(p.load().platform)
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=wiring.queue_url(clients, queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def whole(p: Platform, ledger: Ledger) -> bool:
    """The version recorded as succeeded and its message gone from the queue."""
    return bool(succeeded(ledger)) and queued(p, p.queue) == 0


def running_versions(p: Platform) -> dict[str, tuple[str, str] | None]:
    """Per staging cluster: (chart, status) of release web as helm reports it."""
    repo = p.load()
    found: dict[str, tuple[str, str] | None] = {}
    for ref in repo.platform.environment("staging").clusters:
        target = reconcile.resolve(ref, "staging", repo.root)
        releases = helm.list_releases(
            helm.Target(kubeconfig=target.kubeconfig, context=target.context, namespace="echo")
        )
        web = next((r for r in releases if r.get("name") == "web"), None)
        found[ref.name] = (str(web["chart"]), str(web["status"])) if web else None
    return found
