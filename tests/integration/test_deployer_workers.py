"""Deployer replicas: never two deploys of one release at once, and a worker killed mid-deploy
(SIGKILL) loses nothing — its message comes back and the release converges. One worker
carries out several releases at once, each once."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import yaml

from tenantry import aws, helm
from tenantry.aws import wiring
from tenantry.deploy import deployer as deploying
from tenantry.kube import localcluster
from tenantry.ledger import Ledger
from tests.conftest import CHARTS
from tests.integration.test_delivery import (
    Platform,
    descriptor,
    drain,
    ledger,
    onboarded,
    platform,
    publish,
    worker,
)
from tests.waiting import wait_for

__all__ = ["ledger", "onboarded", "platform"]  # fixtures shared with test_delivery


def slow_chart(p: Platform, version: str) -> None:
    """Switch echo/web to a chart whose pods take a few seconds to become ready."""
    service = p.root / "services" / "echo" / "web"
    (service / "service.yaml").unlink(missing_ok=True)
    chart = service / "chart"
    if not chart.exists():
        import shutil

        shutil.copytree(CHARTS / "good", chart)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values.update(tenant="echo", image="registry.acme.example/echo/web:1",
                  podLabels={"tenantry.dev/simulate": "slow-ready"})  # fmt: skip
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta.update(name="web", version=version)
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    p.commit(f"slow {version}")


def test_two_workers_never_deploy_the_same_release_at_once(
    platform: Platform, ledger: Ledger
) -> None:
    slow_chart(platform, "3.0.0")
    publish(platform, ledger)
    clients = aws.clients(platform.load().platform)
    queue = wiring.queue_url(clients, platform.queue)
    body = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                         "s3": {"bucket": {"name": platform.bucket}, "object": {"key": "echo/web-3.0.0.tgz"}}}]}  # fmt: skip
    clients.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))  # a duplicate delivery
    workers = [worker(platform, ledger, name) for name in ("w1", "w2")]
    results: list[list[deploying.Outcome]] = [[], []]
    threads = [
        threading.Thread(
            target=lambda i=i: results[i].extend(drain(workers[i], until=1, attempts=15))
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    extra = drain(workers[0], until=1, attempts=10)  # whatever was handed back as busy
    outcomes = sorted(o.result for o in [*results[0], *results[1], *extra])
    assert outcomes == ["deployed", "skipped"], outcomes
    deploys = [d for d in ledger.deployments() if d.version == "3.0.0"]
    assert [d.result for d in deploys] == ["succeeded"]


def test_a_worker_killed_mid_deploy_loses_nothing(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    slow_chart(platform, "4.0.0")
    database = str(ledger.engine.url)
    killed = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "deployer", "--repo", str(platform.root),
         "--worker", "doomed", "--wait", "1", "--lease-ttl", "3"],
        env={**os.environ, "TENANTRY_DATABASE_URL": database},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        publish(platform, ledger)
        wait_for(lambda: any(d.result == "running" and d.actor == "deployer:doomed"
                             for d in ledger.deployments()), "the doomed worker's deploy")  # fmt: skip
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # mid-deploy: no chance to finish or hand back
        killed.wait()

    # The message was never deleted: once its visibility lapses another worker gets it.
    outcomes = drain(worker(platform, ledger, "survivor"), until=1, attempts=40)

    assert [o.result for o in outcomes] == ["deployed"]
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    (release,) = helm.list_releases(target)
    assert (release["chart"], release["status"]) == ("web-4.0.0", "deployed")
    by_actor = {d.actor: d.result for d in ledger.deployments() if d.version == "4.0.0"}
    # The survivor, holding the lease, marked what the dead worker left running.
    assert by_actor == {"deployer:doomed": "interrupted", "deployer:survivor": "succeeded"}


def test_the_worker_rides_out_an_outage_of_the_s3_sqs_server(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster, monkeypatch
) -> None:
    from tenantry.local import awsserver

    monkeypatch.setenv("TENANTRY_AWS_TIMEOUT_S", "1")
    publish(platform, ledger)
    d = worker(platform, ledger, "patient")
    server = awsserver.running()
    assert server is not None
    outcomes: list[deploying.Outcome] = []
    d.on_outcome = lambda o: outcomes.append(o) if o.result == "deployed" else None
    runner = threading.Thread(target=d.run)
    os.kill(server.pid, signal.SIGSTOP)  # the server stops answering: a real outage
    try:
        runner.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(e.result == "error" for e in ledger.events()):
            time.sleep(0.2)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not outcomes:
        time.sleep(0.2)
    d.stop()
    runner.join(timeout=60)
    errors = [e for e in ledger.events() if e.result == "error"]
    assert errors and "queue or store unavailable" in errors[0].reason
    assert [o.result for o in outcomes] == ["deployed"]
    (release,) = helm.list_releases(helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo"))
    assert release["chart"] == "web-1.0.0"


def test_one_worker_carries_out_several_releases_at_once_each_once(
    platform: Platform, ledger: Ledger, cluster: localcluster.LocalCluster
) -> None:
    names = [f"extra{i}" for i in range(4)]
    for name in names:
        path = platform.root / "services" / "echo" / name / "service.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({**descriptor("1.0.0"), "name": name}))
    platform.commit("four more services")
    d = worker(platform, ledger, "wide")
    d.options = dataclasses.replace(d.options, concurrency=3)
    outcomes: list[deploying.Outcome] = []
    d.on_outcome = outcomes.append
    runner = threading.Thread(target=d.run)
    runner.start()
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace="echo")
    try:
        publish(platform, ledger)  # web and the four: five messages at once
        # A duplicate delivery of one of them, while it may be in flight in this worker.
        clients = aws.clients(platform.load().platform)
        body = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                             "s3": {"bucket": {"name": platform.bucket},
                                    "object": {"key": "echo/extra0-1.0.0.tgz"}}}]}  # fmt: skip
        clients.sqs.send_message(QueueUrl=wiring.queue_url(clients, platform.queue),
                                 MessageBody=json.dumps(body))  # fmt: skip
        wait_for(lambda: len([o for o in outcomes if o.result in ("deployed", "skipped")]) >= 6,
                 "six outcomes", timeout_s=180)  # fmt: skip
    finally:
        d.stop()
        runner.join()
        for name in names:
            helm.uninstall(target, release=name)
    assert sorted(o.result for o in outcomes if o.result != "ignored") == ["deployed"] * 5 + [
        "skipped"
    ]
    deploys = [x for x in ledger.deployments() if x.service in {"web", *names}]
    assert sorted(x.service for x in deploys if x.result == "succeeded") == sorted(["web", *names])
    assert len(deploys) == 5  # the duplicate deployed nothing a second time
    # Several in flight at once: some two deploys' [started, finished] overlap.
    assert any(a.started < b.finished and b.started < a.finished  # type: ignore[operator]
               for a, b in itertools.combinations(deploys, 2))  # fmt: skip
