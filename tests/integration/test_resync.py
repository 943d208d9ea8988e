"""The resync catches what no event announced: a chart published while the bucket's
notification was gone reaches staging within one resync interval, once, however many
workers run; a parked or older release is left alone. Real S3/SQS server, real cluster,
real Helm, the ledger."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import yaml

from tenantry import aws, helm
from tenantry.deploy import deployer as deploying
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tests.integration.test_delivery import (
    Platform,
    drain,
    ledger,
    onboarded,
    platform,
    publish,
    released,
    worker,
)
from tests.waiting import wait_for

__all__ = ["ledger", "onboarded", "platform"]  # fixtures shared with test_delivery

INTERVAL_S = 5  # the shortest resyncIntervalS platform.yaml allows


def resync_every(p: Platform, seconds: float) -> None:
    """Set artifacts.resyncIntervalS in the platform repository."""
    path = p.root / "platform.yaml"
    data = yaml.safe_load(path.read_text())
    data["artifacts"]["resyncIntervalS"] = seconds
    path.write_text(yaml.safe_dump(data))
    p.commit(f"resync every {seconds} s")


def lose_events(p: Platform) -> None:
    """Remove the bucket's notification: uploads from now on announce nothing."""
    clients = aws.clients(p.load().platform)
    clients.s3.put_bucket_notification_configuration(Bucket=p.bucket, NotificationConfiguration={})


@pytest.fixture
def running(platform: Platform, ledger: Ledger) -> Iterator[list[deploying.Deployer]]:
    """Two workers running (SQS and deploy requests, as `tenantry deployer` runs them)."""
    resync_every(platform, INTERVAL_S)
    workers = [worker(platform, ledger, name) for name in ("w1", "w2")]
    threads = [threading.Thread(target=w.run, name=w.options.worker) for w in workers]
    for thread in threads:
        thread.start()
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()
        for thread in threads:
            thread.join()


def succeeded(ledger: Ledger, version: str) -> list[str]:
    return [d.actor for d in ledger.deployments()
            if d.version == version and d.result == "succeeded"]  # fmt: skip


def test_a_lost_event_is_deployed_by_the_resync_once_whatever_the_number_of_workers(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster,
    running: list[deploying.Deployer],
) -> None:  # fmt: skip
    # Both workers resynced on start (nothing published yet); from now on one interval's
    # resync is the only way the release can reach staging.
    wait_for(lambda: all(w._resynced for w in running), "both workers' first resync")
    lose_events(platform)
    (published,) = publish(platform, ledger)
    assert published.result == "published"

    wait_for(lambda: succeeded(ledger, "1.0.0"), "the resync to deploy 1.0.0",
             timeout_s=INTERVAL_S + 60, poll_s=0.2)  # fmt: skip

    assert released(cluster)["chart"] == "web-1.0.0"
    (request,) = ledger.deploy_requests(tenants=["echo"])
    assert (request.source, request.version, request.status) == ("resync", "1.0.0", "succeeded")
    assert request.digest == published.digest
    queued = [e for e in ledger.events() if e.message_id == "resync"]
    assert [e.key for e in queued] == ["echo/web-1.0.0.tgz"]  # queued once, by one worker
    assert "no event brought it" in queued[0].reason
    # Later resyncs find staging up to date: one deploy, nothing queued again.
    for w in running:
        assert w.resync() == []
    assert len(succeeded(ledger, "1.0.0")) == 1


def test_the_resync_leaves_a_parked_release_and_never_queues_an_older_one(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    publish(platform, ledger)
    d = worker(platform, ledger)
    assert [o.result for o in drain(d, until=1)] == ["deployed"]
    # 1.1.0 is published with its event lost, and parked (say it failed every attempt).
    lose_events(platform)
    platform.write("1.1.0")
    platform.commit("1.1.0")
    publish(platform, ledger)
    parked = ledger.request_deploy(tenant="echo", service="web", version="1.1.0", digest="",
                                   source="s3-event", requested_by="test")  # fmt: skip
    assert ledger.park_request(parked.request.id, error="failed every attempt")
    assert d.resync() == []  # parked: left for someone to retry
    # Staging runs 1.1.0 (the retry deployed it); 1.0.0 is older: never queued.
    retried = ledger.request_deploy(tenant="echo", service="web", version="1.1.0", digest="",
                                    source="retry", requested_by="alice", unpark=True)  # fmt: skip
    assert retried.outcome == "unparked"
    assert d.request_once()
    assert released(cluster)["chart"] == "web-1.1.0"
    assert d.resync() == []
    # A request for the older version (a retry, a redrive) is skipped: never a downgrade.
    ledger.request_deploy(tenant="echo", service="web", version="1.0.0", digest="",
                          source="retry", requested_by="alice")  # fmt: skip
    assert d.request_once()
    (older,) = ledger.deploy_requests(tenants=["echo"], status="skipped")
    assert older.version == "1.0.0"
    assert older.last_error == "out of order: 1.0.0 is older than the released 1.1.0"
    assert released(cluster)["chart"] == "web-1.1.0"
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    assert [r["chart"] for r in helm.list_releases(target)] == ["web-1.1.0"]


def test_an_unreadable_index_is_recorded_and_the_resync_goes_on(
    platform: Platform, ledger: Ledger
) -> None:
    clients = aws.clients(platform.load().platform)
    clients.s3.put_object(Bucket=platform.bucket, Key="echo/index.yaml", Body=b"garbage: [")
    d = worker(platform, ledger)
    assert d.resync() == []
    (error,) = [e for e in ledger.events() if e.result == "error"]
    assert error.reason.startswith("resync: cannot read echo's published versions")
    assert "restore index.yaml" in error.reason
