"""The deployer as people run it: `tenantry deployer` serves /metrics and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tenantry import aws, processes
from tenantry.aws import wiring
from tests.integration.test_delivery import Platform, ledger, onboarded, platform, publish
from tests.waiting import wait_for

__all__ = ["ledger", "onboarded", "platform"]  # fixtures shared with the delivery tests

SUCCEEDED_ONCE = re.compile(r'tenantry_deployer_deploys_total\{result="succeeded",[^}]*\} 1\.0')


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def start_deployer(platform: Platform, ledger, port: int) -> subprocess.Popen[str]:
    """A `tenantry deployer` process on the platform and ledger, serving /metrics."""
    return subprocess.Popen(
        [sys.executable, "-m", "tenantry", "deployer", "--repo", str(platform.root),
         "--worker", "e2e", "--wait", "1", "--metrics-port", str(port)],
        env={**os.environ, "TENANTRY_DATABASE_URL": str(ledger.engine.url)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_deployer_serves_metrics_and_stops_on_sigterm(
    platform: Platform, ledger, tmp_path: Path
) -> None:
    port = processes.free_port()
    proc = start_deployer(platform, ledger, port)
    try:
        wait_for(lambda: processes.answers(port), "the deployer's /metrics", timeout_s=30)
        publish(platform, ledger)
        wait_for(lambda: SUCCEEDED_ONCE.search(metrics(port)), "one successful deploy",
                 poll_s=0.2)  # fmt: skip
        text = metrics(port)
        assert SUCCEEDED_ONCE.search(text)
        assert 'tenantry_deployer_events_total{kind="chart"} 1.0' in text
        assert "tenantry_deployer_deploy_seconds_count 1.0" in text
        assert "tenantry_deployer_event_lag_seconds_count 1.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "finishing the work in hand, then exiting" in stderr
    clients = aws.clients(platform.load().platform)
    assert wiring.queue_url(clients, platform.queue)


def test_the_deployer_process_resyncs_a_release_whose_event_was_lost(
    platform: Platform, ledger, tmp_path: Path
) -> None:
    from tests.integration.test_resync import lose_events, resync_every

    resync_every(platform, 5)
    lose_events(platform)  # before the worker starts: its first resync finds nothing
    port = processes.free_port()
    proc = start_deployer(platform, ledger, port)
    try:
        wait_for(lambda: processes.answers(port), "the deployer's /metrics", timeout_s=30)
        publish(platform, ledger)  # no event: only the next resync can bring it
        wait_for(lambda: SUCCEEDED_ONCE.search(metrics(port)), "the resync's deploy",
                 timeout_s=90, poll_s=0.2)  # fmt: skip
        assert 'tenantry_deployer_events_total{kind="chart"}' not in metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    (request,) = ledger.deploy_requests(tenants=["echo"])
    assert (request.source, request.status, request.requested_by) == (
        "resync", "succeeded", "resync:e2e",
    )  # fmt: skip
    assert "deployed: first release" in stderr
