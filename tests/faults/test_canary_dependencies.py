"""The canary's dependencies fail mid-rollout, for real: Prometheus stopped (by its pid)
and started again; HAProxy stopped and started again. The rollout must pause where it
is, say why, never be promoted on missing data — and carry on when the dependency is
back. Real HAProxy, Prometheus and demo apps (the fixture of tests/integration/test_traffic).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantry import processes
from tenantry.traffic import analysis, canary
from tenantry.traffic.load import Load
from tests.faults.conftest import Outcome, Record
from tests.integration.test_traffic import OBJECTIVES, admin, platform, scraped
from tests.waiting import wait_for

__all__ = ["platform"]  # the traffic fixture, shared

POLICY = analysis.Policy(steps=(20, 50), interval_s=2, min_requests=5, max_failed_intervals=1)


class Prometheus:
    """A Prometheus of this test's own, scraping HAProxy and both demo apps, that the
    test stops and starts (same port, same storage)."""

    def __init__(self, workdir: Path, ports: dict[str, int]) -> None:
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
            {"job_name": "haproxy", "static_configs": [{"targets": [f"127.0.0.1:{ports['stats']}"]}]},
            {"job_name": "apps", "honor_labels": True, "static_configs": [{"targets": [
                f"127.0.0.1:{ports['primary']}", f"127.0.0.1:{ports['canary']}"]}]},
        ]}  # fmt: skip
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: scraped(self.url), "the test's Prometheus to scrape its targets")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def prometheus(platform: dict[str, Any], tmp_path: Path) -> Iterator[Prometheus]:
    own = Prometheus(tmp_path, platform["ports"])
    own.start()
    yield own
    own.kill()


class Rollout:
    """A controller walking a rollout in a thread, as a worker does."""

    def __init__(self, p: dict[str, Any], version: str, prometheus: str) -> None:
        self.log: list[str] = []
        target = canary.Target("payments", "api", version, p["route"], OBJECTIVES, POLICY)
        self.controller = canary.Controller(
            target, router=p["router"], ledger=p["ledger"],
            observe=lambda t: canary.observe(prometheus, t, POLICY.interval_s),
            on_rollback=lambda t, reason: self.log.append(f"ROLLBACK {reason}"),
            on_promote=lambda t: self.log.append("PROMOTE"),
            log=self.log.append,
        )  # fmt: skip
        self.result: list[analysis.Rollout] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(self.controller.run(max_intervals=40)), daemon=True
        )
        self.thread.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.log))

    def finish(self) -> analysis.Rollout:
        self.thread.join(timeout=POLICY.interval_s * 45)
        assert self.result, "the rollout did not end within its bounded intervals"
        return self.result[0]


def canary_weight(p: dict[str, Any]) -> int:
    return {s.role: s.weight for s in p["router"].state(p["route"])}["canary"]


def test_prometheus_down_pauses_the_canary_as_no_data_and_it_resumes(
    platform: dict[str, Any], prometheus: Prometheus, reliability: Record
) -> None:
    admin(platform["ports"]["canary"], version="2.1.0", error_rate=0.0)
    load = Load(platform["front"])
    try:
        prometheus.kill()  # before the first interval: the canary is at 20 % with no figures
        rollout = Rollout(platform, "2.1.0", prometheus.url)
        wait_for(lambda: rollout.said("paused, no data: Prometheus unreachable"),
                 "the rollout to pause for lack of data", timeout_s=30)  # fmt: skip
        weight_while_down = canary_weight(platform)
        promoted_while_down = rollout.said("PROMOTE")
        back = time.monotonic()
        prometheus.start()
        final = rollout.finish()
        recovery = time.monotonic() - back
    finally:
        load.stop()
    row = platform["ledger"].canary("payments", "api")
    reliability(Outcome(
        fault="Prometheus killed", when="mid-canary (20 % of traffic on the canary)",
        happened=f"paused as no data at {weight_while_down} %, never promoted while down; "
        f"after the restart {final.status} with {final.passes} passes",
        lost=0 if final.status == "promoted" else 1, doubled=0,
        half_done=0 if canary_weight(platform) == 0 else 1, recovery_s=recovery,
    ))  # fmt: skip
    assert weight_while_down == 20 and not promoted_while_down
    assert final.status == "promoted" and final.passes == 2, final.reason
    assert row is not None and (row.version, row.status) == ("2.1.0", "promoted")
    assert canary_weight(platform) == 0 and load.failed == 0
    # The intervals while it was down are kept as no data, without a single figure.
    kept = platform["ledger"].canary_intervals(row.id)
    down = [i for i in kept if i.reason.startswith("Prometheus unreachable")]
    assert down and {i.verdict for i in down} == {"no-data"}
    assert all(i.canary_requests is None and i.canary_success_rate is None
               and i.primary_p99_s is None for i in down)  # fmt: skip
    assert [i.verdict for i in kept].count("pass") == 2


def test_the_router_unreachable_keeps_the_rollout_where_it_was_until_it_returns(
    platform: dict[str, Any], prometheus: Prometheus, reliability: Record
) -> None:
    admin(platform["ports"]["canary"], version="2.2.0", error_rate=0.0)
    sock = platform["router"].runtime.path
    away = sock.with_name("admin.sock.away")
    load = Load(platform["front"])
    try:
        rollout = Rollout(platform, "2.2.0", prometheus.url)
        wait_for(lambda: canary_weight(platform) == 20, "the first step's weight", timeout_s=30)
        # The router's control plane goes away while HAProxy keeps serving, well within
        # the first interval: the figures say pass, and the next weight cannot be set.
        sock.rename(away)
        try:
            wait_for(lambda: rollout.said("router unreachable"),
                     "the rollout to record the router failing", timeout_s=60)  # fmt: skip
            stuck = platform["ledger"].canary("payments", "api")
            promoted_while_down = rollout.said("PROMOTE")
        finally:
            away.rename(sock)
        back = time.monotonic()
        final = rollout.finish()
        recovery = time.monotonic() - back
    finally:
        load.stop()
    assert stuck is not None
    reliability(Outcome(
        fault="the router's runtime API unreachable (HAProxy admin socket gone)",
        when="mid-canary, between two steps",
        happened=f"the step was not taken; the rollout stayed at {stuck.weight} % and said "
        f"so; once the router answered: {final.status}",
        lost=0 if final.status == "promoted" else 1, doubled=0,
        half_done=0 if canary_weight(platform) == 0 else 1, recovery_s=recovery,
    ))  # fmt: skip
    assert (stuck.status, stuck.step, stuck.weight) == ("running", 0, 20)
    assert "router unreachable" in stuck.reason and not promoted_while_down
    assert final.status == "promoted", final.reason
    assert canary_weight(platform) == 0 and load.failed == 0
