"""`approve` through the canary cluster on real clusters, real Helm, real HAProxy and
Prometheus: a good version goes canary → analysis → primary; a bad one is rolled back
on the canary cluster with `helm rollback` while the primary keeps the old version.

The production clusters' ingresses are demo apps (kwok runs no containers)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml

from tenantry import processes
from tenantry.deploy import promotion
from tenantry.ledger import Ledger, tables
from tenantry.local import traffic as local_traffic
from tenantry.traffic.load import Load
from tests.integration.test_delivery import Platform
from tests.integration.test_promotion import (
    approve_and_deploy,
    chart_in,
    ledger,
    onboarded,
    platform,
    production,
    ship_to_staging,
)  # fmt: skip
from tests.integration.test_traffic import admin, scraped
from tests.waiting import wait_for

__all__ = ["ledger", "onboarded", "platform", "production"]  # fixtures shared


@pytest.fixture
def live(platform: Platform, tmp_path: Path) -> Iterator[dict[str, object]]:
    """A traffic section, HAProxy and demo apps for the platform, and a Prometheus."""
    port = processes.free_port()
    data = yaml.safe_load((platform.root / "platform.yaml").read_text())
    data["traffic"] = {"scrapeIntervalS": 1, "prometheusUrl": f"http://127.0.0.1:{port}",
                       "canary": {"steps": [20, 50], "intervalS": 5, "minRequests": 10}}  # fmt: skip
    (platform.root / "platform.yaml").write_text(yaml.safe_dump(data))
    platform.commit("traffic")
    repo = platform.load()
    local_traffic.start(repo)
    targets = local_traffic.scrape_targets(repo)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "platform", "static_configs": [{"targets": targets}]}],
    }))  # fmt: skip
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: scraped(f"http://127.0.0.1:{port}", len(targets)),
                 "Prometheus to scrape HAProxy and every demo app")  # fmt: skip
        (route, front) = local_traffic.routes(repo)[0]
        yield {"route": route, "front": f"http://127.0.0.1:{front}/",
               "router": local_traffic.router(repo)}  # fmt: skip
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        local_traffic.stop()


def promote(p: Platform, ledger: Ledger, version: str) -> promotion.Result:
    repo = p.load()
    row = promotion.request(repo, ledger, ref="echo/web", version=version,
                            environment="production", by="alice")  # fmt: skip
    return approve_and_deploy(repo, ledger, promotion_id=row.id, by="bob")


def intervals(ledger: Ledger, version: str) -> list[tables.CanaryInterval]:
    """The analysed intervals of echo/web's rollout of ``version``, oldest first."""
    with ledger.session() as session:
        rollout = session.query(tables.Canary).filter_by(
            tenant="echo", service="web", version=version).one()  # fmt: skip
    return ledger.canary_intervals(rollout.id)


def demo_app(route_name: str, cluster: str) -> int:
    process = processes.running(f"demo-{route_name}-{cluster}")
    assert process is not None
    return process.port


def test_good_canary_reaches_the_primary_bad_one_is_rolled_back(
    platform: Platform, ledger: Ledger, production: tuple[str, str], live: dict
) -> None:
    primary, canary = production
    load = Load(str(live["front"]))
    try:
        ship_to_staging(platform, ledger, "1.0.0")
        good = promote(platform, ledger, "1.0.0")
        assert (good.status, good.reason) == ("deployed", "")
        assert chart_in(primary) == chart_in(canary) == "web-1.0.0"

        ship_to_staging(platform, ledger, "1.1.0")
        admin(demo_app(live["route"].name, canary), error_rate=0.2)
        bad = promote(platform, ledger, "1.1.0")
    finally:
        load.stop()
    assert bad.status == "failed"
    assert bad.reason.startswith("canary rolled-back: rolled back: success rate")
    assert chart_in(canary) == "web-1.0.0"  # helm rollback on the canary cluster
    assert chart_in(primary) == "web-1.0.0"  # never touched
    results = [
        (d.cluster, d.version, d.result) for d in ledger.history(tenant="echo", service="web")
    ]
    assert (canary, "1.1.0", "rolled-back") in results
    assert (primary, "1.1.0", "succeeded") not in results
    assert load.failed == 0
    answer = httpx2.get(str(live["front"]), timeout=5).text
    assert "1.0.0" in answer  # users are served the old version

    # Each analysed interval was kept with the figures Prometheus gave: one pass per step
    # for the good version, at the step's weight, all of its requests answered.
    passes = [i for i in intervals(ledger, "1.0.0") if i.verdict == "pass"]
    assert [(i.step, i.weight) for i in passes] == [(0, 20), (1, 50)]
    for interval in passes:
        assert interval.canary_success_rate == interval.primary_success_rate == 100.0
        assert interval.canary_requests is not None and interval.canary_requests >= 10
        assert interval.canary_p99_s is not None and interval.canary_p99_s > 0
        assert interval.primary_p99_s is not None and interval.primary_p99_s > 0
    # The bad one's last interval is the failing verdict it was rolled back on.
    failed = intervals(ledger, "1.1.0")[-1]
    assert (failed.verdict, failed.step, failed.weight) == ("fail", 0, 20)
    assert failed.canary_success_rate is not None and failed.canary_success_rate < 99
    assert failed.reason in bad.reason
