"""Faults in the infrastructure under a running `tenantry deployer`: the cluster's
kube-apiserver SIGKILLed and etcd SIGKILLed mid-helm and started again, the S3/SQS
server stopped during a publish and during deploys (and what its restart loses), and
PostgreSQL stopped and started under two deployer processes. Each test records its
outcome (`tests/faults/conftest.py`) before asserting that no release was lost,
doubled or left half-done and that the version runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tenantry import aws, errors, helm, processes
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tenantry.local import postgres
from tests.faults.conftest import Outcome, Record
from tests.integration.test_delivery import Platform, ledger, onboarded, platform, publish
from tests.integration.test_deployer_workers import slow_chart
from tests.waiting import wait_for

__all__ = ["ledger", "onboarded", "platform"]  # fixtures shared with the delivery tests

# How long the whole system may take to be whole again after a fault: a redelivery
# (the queue's 10 s visibility), a lapsed lease (5 s) and a helm run with slow pods.
CONVERGE_S = 150
LEASE_TTL_S = 5


# --- processes ---------------------------------------------------------------------


@dataclass
class Worker:
    """A `tenantry deployer` process, its log, stopped by its own pid."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM (the worker finishes the message in hand), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start `tenantry deployer` processes; every one is stopped after the test."""
    started: list[Worker] = []

    def start(p: Platform, database: str, name: str, **env: str) -> Worker:
        log = tmp_path / f"deployer-{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tenantry", "deployer", "--repo", str(p.root),
                 "--worker", name, "--wait", "1", "--lease-ttl", str(LEASE_TTL_S)],
                env={**os.environ, "TENANTRY_DATABASE_URL": database, **env},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        worker = Worker(name, proc, log)
        started.append(worker)
        wait_for(lambda: "consuming" in worker.text() or not worker.alive(),
                 f"deployer {name} to start consuming", timeout_s=60)  # fmt: skip
        assert worker.alive(), worker.text()
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- what the system looks like ------------------------------------------------------


def helm_releases(cluster: localcluster.LocalCluster) -> list[dict]:
    """Every release in the tenant's namespace, pending and failed ones too."""
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    return json.loads(
        helm.run(
            [
                "list",
                "--deployed",
                "--failed",
                "--pending",
                "--uninstalling",
                *target.flags(),
                "--output",
                "json",
            ]
        )
        or "[]"
    )


def web_release(cluster: localcluster.LocalCluster) -> dict | None:
    return next((r for r in helm_releases(cluster) if r.get("name") == "web"), None)


def helm_revisions(cluster: localcluster.LocalCluster) -> list[dict]:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    try:
        out = helm.run(["history", "web", *target.flags(), "--output", "json"])
    except errors.HelmError:
        return []
    return json.loads(out or "[]")


def queue_empty(p: Platform) -> bool:
    """No message waiting or in flight: every event was handled and deleted."""
    clients = aws.clients(p.load().platform)
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=wiring.queue_url(clients, p.queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


@dataclass(frozen=True)
class Count:
    """Releases lost, doubled and left half-done, from the ledger and from helm."""

    lost: int
    doubled: int
    half_done: int
    succeeded: int
    helm_status: str
    detail: str
    recovered: str  # what the successful deploy had to undo first (its ledger reason)


def count(ledger: Ledger, cluster: localcluster.LocalCluster, version: str) -> Count:
    rows = [d for d in ledger.deployments() if d.service == "web" and d.version == version]
    succeeded = sum(d.result == "succeeded" for d in rows)
    running = sum(d.result == "running" for d in rows)
    release = web_release(cluster)
    status = "absent" if release is None else f"{release['chart']} {release['status']}"
    runs = status == f"web-{version} deployed"
    pending = release is not None and str(release["status"]).startswith("pending")
    return Count(
        lost=0 if succeeded and runs else 1,
        doubled=max(0, succeeded - 1),
        half_done=running + int(pending),
        succeeded=succeeded,
        helm_status=status,
        detail=", ".join(f"{d.actor}: {d.result}" for d in rows),
        recovered="; ".join(d.reason for d in rows if d.result == "succeeded" and d.reason),
    )


def converged(ledger: Ledger, cluster: localcluster.LocalCluster, p: Platform,
              version: str) -> bool:  # fmt: skip
    c = count(ledger, cluster, version)
    return c.succeeded >= 1 and c.helm_status == f"web-{version} deployed" and queue_empty(p)


def settle(check: Callable[[], object], what: str, *, since: float) -> float | None:
    """Seconds from ``since`` until ``check`` holds, or None if it never did within
    `CONVERGE_S` — for the outcome to be recorded either way before asserting."""
    try:
        wait_for(check, what, timeout_s=CONVERGE_S, poll_s=0.5)
    except AssertionError:
        return None
    return time.monotonic() - since


def api_ready(cluster: localcluster.LocalCluster) -> bool:
    """The API server's /readyz, which includes its etcd check."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    return done.returncode == 0


def record_and_assert(
    reliability: Record, c: Count, *, fault: str, when: str, happened: str,
    recovery_s: float | None,
) -> None:  # fmt: skip
    if recovery_s is None:
        happened += f" — NOT whole after {CONVERGE_S} s: helm {c.helm_status}; {c.detail}"
    reliability(Outcome(fault=fault, when=when, happened=happened, lost=c.lost,
                        doubled=c.doubled, half_done=c.half_done,
                        recovery_s=None if recovery_s is None else round(recovery_s, 1)))  # fmt: skip
    assert recovery_s is not None, f"never whole again: {happened}"  # logs: see the test's tmp dir
    assert (c.lost, c.doubled, c.half_done) == (0, 0, 0), c


# --- 1, 2: a control-plane component SIGKILLed while helm runs ---------------------------


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_control_plane_component_killed_mid_helm_is_ridden_out(
    component: str, platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster,
    workers: Callable[..., Worker], reliability: Record,
) -> None:  # fmt: skip
    slow_chart(platform, "5.0.0")  # pods ready after 4 s: helm is surely mid-run
    worker = workers(platform, str(ledger.engine.url), "cp")
    publish(platform, ledger)

    def helm_installing() -> bool:
        release = web_release(cluster)
        return release is not None and str(release["status"]).startswith("pending")

    wait_for(helm_installing, "helm to be installing web 5.0.0", timeout_s=90, poll_s=0.2)
    started = time.monotonic()
    killed = localcluster.restart_component(cluster.name, component, signum=signal.SIGKILL)
    wait_for(lambda: api_ready(cluster), f"the API server to be ready after {component}",
             timeout_s=90, poll_s=0.5)  # fmt: skip
    fault_end = time.monotonic()

    recovered = settle(lambda: converged(ledger, cluster, platform, "5.0.0"),
                       "5.0.0 deployed in the ledger and by helm, its message deleted",
                       since=fault_end)  # fmt: skip
    c = count(ledger, cluster, "5.0.0")
    revisions = [f"{r['revision']}:{r['status']}" for r in helm_revisions(cluster)]
    record_and_assert(
        reliability, c, fault=f"{component} SIGKILLed (pid {killed}) and started again",
        when="a staging deploy's helm run (pods not yet ready)",
        happened=f"the API server was back {fault_end - started:.1f} s after the kill; the "
        f"deployer's attempts: {c.detail}; undone before the successful helm run: {c.recovered or 'nothing'}; "
        f"helm revisions {', '.join(revisions)}; the deployer process kept running",
        recovery_s=recovered,
    )  # fmt: skip
    assert worker.alive(), worker.text()


# --- 3: the S3/SQS server down -------------------------------------------------------


class OwnServer:
    """A moto S3/SQS server of this test's own on a fixed port, so it can be stopped and
    started again where the deployer expects it. Stopped by its own pid."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = processes.free_port()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        processes.start(self.name, argv, port=self.port)

    def stop(self) -> None:
        processes.stop(self.name)
        wait_for(lambda: not processes.answers(self.port), f"{self.name} to stop answering",
                 timeout_s=30)  # fmt: skip


@pytest.fixture
def own_aws(state_dir: Path) -> Iterator[OwnServer]:
    server = OwnServer("aws-faults")
    server.start()
    yield server
    processes.stop(server.name)


@pytest.fixture
def aws_platform(
    cluster: localcluster.LocalCluster, onboarded: Path, own_aws: OwnServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:  # fmt: skip
    """A platform whose bucket and queue are on this test's own S3/SQS server."""
    # A dead server should fail a call in seconds, not after the 25 s default timeout.
    monkeypatch.setenv("TENANTRY_AWS_TIMEOUT_S", "2")
    # An endpoint given by URL takes credentials from the environment; moto takes any.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    p = Platform(tmp_path / "platform", cluster.name)
    config = yaml.safe_load((p.root / "platform.yaml").read_text())
    config["artifacts"]["endpoint"] = own_aws.endpoint
    (p.root / "platform.yaml").write_text(yaml.safe_dump(config))
    p.commit("the test's own S3/SQS server")
    wire(p)
    yield p
    helm.uninstall(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"), release="web")


def wire(p: Platform) -> None:
    """Create the bucket, the queues and the notification (what `tenantry up` does)."""
    repo = p.load()
    wiring.setup(aws.clients(repo.platform), repo.platform)


def test_the_s3_sqs_server_down_during_publish_fails_it_cleanly(
    aws_platform: Platform, own_aws: OwnServer, ledger: Ledger,
    cluster: localcluster.LocalCluster, workers: Callable[..., Worker], reliability: Record,
) -> None:  # fmt: skip
    worker = workers(aws_platform, str(ledger.engine.url), "pub")
    own_aws.stop()
    started = time.monotonic()
    with pytest.raises(aws.AwsError) as failed:
        publish(aws_platform, ledger)
    failed_after = time.monotonic() - started
    rows = ledger.publications(tenant="echo", service="web")
    assert [r.result for r in rows] == ["failed"], "a publication left half-recorded"
    assert ledger.published_digests(tenant="echo", service="web", version="1.0.0") == set()

    own_aws.start()  # empty: moto keeps everything in memory
    fault_end = time.monotonic()
    wire(aws_platform)
    (again,) = publish(aws_platform, ledger)
    recovered = settle(
        lambda: converged(ledger, cluster, aws_platform, "1.0.0"),
        "1.0.0 deployed after publishing again",
        since=fault_end,
    )
    c = count(ledger, cluster, "1.0.0")
    record_and_assert(
        reliability, c, fault="S3/SQS server stopped (moto, SIGTERM)",
        when="`tenantry publish`",
        happened=f"publish failed after {failed_after:.1f} s with “{str(failed.value)[:90]}…”; "
        "the ledger kept one publication marked failed (none left publishing, none trusted "
        "by the deployer); the restarted server was empty, so the bucket and queue were "
        f"created again and publishing again gave {again.result} and one deploy",
        recovery_s=recovered,
    )  # fmt: skip
    assert "check that the S3/SQS endpoint is reachable" in str(failed.value)
    assert again.result == "published"
    assert worker.alive(), worker.text()


def test_the_s3_sqs_server_down_during_deploys_is_waited_out(
    aws_platform: Platform, own_aws: OwnServer, ledger: Ledger,
    cluster: localcluster.LocalCluster, workers: Callable[..., Worker], reliability: Record,
) -> None:  # fmt: skip
    worker = workers(aws_platform, str(ledger.engine.url), "outage", TENANTRY_AWS_TIMEOUT_S="2")
    publish(aws_platform, ledger)
    wait_for(lambda: converged(ledger, cluster, aws_platform, "1.0.0"), "1.0.0 deployed",
             timeout_s=CONVERGE_S, poll_s=0.5)  # fmt: skip
    before = {e.id for e in ledger.events()}

    own_aws.stop()
    down_at = time.monotonic()

    def outage_recorded() -> bool:
        return any(e.id not in before and "queue or store unavailable" in e.reason
                   for e in ledger.events())  # fmt: skip

    wait_for(outage_recorded, "the deployer to record the queue or store unavailable",
             timeout_s=60, poll_s=0.5)  # fmt: skip
    assert worker.alive(), worker.text()
    own_aws.start()  # empty: the bucket, its archives and index, the queues are gone
    fault_end = time.monotonic()
    clients = aws.clients(aws_platform.load().platform)
    with pytest.raises(aws.AwsError):
        wiring.queue_url(clients, aws_platform.queue)
    wire(aws_platform)
    aws_platform.write("1.1.0")
    aws_platform.commit("1.1.0")
    publish(aws_platform, ledger)
    recovered = settle(
        lambda: converged(ledger, cluster, aws_platform, "1.1.0"),
        "1.1.0 deployed by the same deployer process",
        since=fault_end,
    )
    outages = sum(e.id not in before and e.result == "error" for e in ledger.events())
    c = count(ledger, cluster, "1.1.0")
    earlier = count(ledger, cluster, "1.0.0")
    record_and_assert(
        reliability, c, fault="S3/SQS server stopped, started again empty",
        when="the deployer waiting for events",
        happened=f"the deployer stayed up and recorded {outages} “queue or store unavailable” "
        f"events over {fault_end - down_at:.1f} s down and until the queue was created again; "
        "the restart lost the bucket (every archive and index) and the queues; releases "
        "already running kept running; after re-creating them the next publish deployed",
        recovery_s=recovered,
    )  # fmt: skip
    assert worker.alive(), worker.text()
    assert earlier.succeeded == 1


def test_a_restart_of_the_s3_sqs_server_loses_a_queued_event_and_publishing_again_recovers(
    aws_platform: Platform, own_aws: OwnServer, ledger: Ledger,
    cluster: localcluster.LocalCluster, workers: Callable[..., Worker], reliability: Record,
) -> None:  # fmt: skip
    (first,) = publish(aws_platform, ledger)  # no worker yet: the event waits in the queue
    assert not queue_empty(aws_platform)
    own_aws.stop()
    own_aws.start()
    fault_end = time.monotonic()
    wire(aws_platform)
    clients = aws.clients(aws_platform.load().platform)
    # Only S3's own test event (sent when the notification is set up again) is queued.
    queued = clients.sqs.receive_message(
        QueueUrl=wiring.queue_url(clients, aws_platform.queue), MaxNumberOfMessages=10,
        VisibilityTimeout=0, WaitTimeSeconds=1,
    ).get("Messages", [])  # fmt: skip
    lost_event = not any(first.key in m["Body"] for m in queued)
    archives = clients.s3.list_objects_v2(Bucket=aws_platform.bucket).get("KeyCount", 0)
    assert ledger.published_digests(tenant="echo", service="web", version="1.0.0")

    worker = workers(aws_platform, str(ledger.engine.url), "late")
    (again,) = publish(aws_platform, ledger)
    recovered = settle(
        lambda: converged(ledger, cluster, aws_platform, "1.0.0"),
        "1.0.0 deployed after publishing again",
        since=fault_end,
    )
    c = count(ledger, cluster, "1.0.0")
    record_and_assert(
        reliability, c, fault="S3/SQS server restarted with an event queued",
        when="after `tenantry publish`, before any deployer took the event",
        happened=("the restart lost the queued event and the archive (moto keeps them in "
                  "memory) while the ledger still listed 1.0.0 as published — lost until "
                  f"someone publishes again; publishing again gave {again.result} and one "
                  "deploy"),
        recovery_s=recovered,
    )  # fmt: skip
    assert lost_event, "the event survived the restart: say so in docs/reliability.md"
    assert archives == 0, f"{first.key} survived the restart: say so in docs/reliability.md"
    assert again.result == "published"
    assert worker.alive(), worker.text()


# --- 4: PostgreSQL restarted under two deployer processes ------------------------------


@pytest.fixture
def pg() -> Iterator[postgres.Instance]:
    """A PostgreSQL server of this test's own, to stop and start again."""
    with postgres.instance() as running:
        yield running


def test_postgresql_stopped_mid_deploy_under_two_workers_is_waited_out(
    platform: Platform, pg: postgres.Instance, cluster: localcluster.LocalCluster,
    workers: Callable[..., Worker], reliability: Record,
) -> None:  # fmt: skip
    slow_chart(platform, "6.0.0")
    with Ledger.open(pg.url) as ledger:
        pair = [workers(platform, pg.url, name) for name in ("pg-a", "pg-b")]
        publish(platform, ledger)
        wait_for(lambda: any(d.result == "running" for d in ledger.deployments()),
                 "a worker to start deploying 6.0.0", timeout_s=90, poll_s=0.2)  # fmt: skip
        ledger.close()  # its pooled connections die with the server anyway

        pg.stop(mode="immediate")  # no clean shutdown: as if the database crashed
        started = time.monotonic()
        # helm finishes while the database is down, so its outcome cannot be written.
        wait_for(lambda: (web_release(cluster) or {}).get("status") == "deployed",
                 "helm to finish 6.0.0 while the ledger is down", timeout_s=90, poll_s=0.5)  # fmt: skip
        wait_for(lambda: any("ledger database is unavailable" in w.text() or not w.alive()
                             for w in pair),
                 "a worker to find the ledger unavailable", timeout_s=30, poll_s=0.5)  # fmt: skip
        pg.start()
        fault_end = time.monotonic()

        recovered = settle(lambda: converged(ledger, cluster, platform, "6.0.0"),
                           "6.0.0 recorded as deployed and its message deleted",
                           since=fault_end)  # fmt: skip
        c = count(ledger, cluster, "6.0.0")
        revisions = [f"{r['revision']}:{r['status']}" for r in helm_revisions(cluster)]
        waited = [e.reason for e in ledger.events() if "ledger unavailable" in e.reason]
        survived = [w.name for w in pair if w.alive()]
        record_and_assert(
            reliability, c, fault="PostgreSQL stopped (immediate) and started again",
            when="a staging deploy's helm run, two deployer processes on the ledger",
            happened=f"down {fault_end - started:.1f} s; helm finished meanwhile and its "
            f"outcome could not be written; workers alive after: {', '.join(survived)}; "
            f"the worker in hand kept its message hidden and handled it again "
            f"({c.detail}; helm revisions {', '.join(revisions)})",
            recovery_s=recovered,
        )  # fmt: skip
        assert survived == ["pg-a", "pg-b"], [w.text()[-2000:] for w in pair]
        assert waited, "the outage was not recorded in the ledger afterwards"
        for w in pair:
            assert "Exception in thread" not in w.text(), w.text()[-3000:]  # no thread died
            assert w.stop() == 0, w.text()[-2000:]
