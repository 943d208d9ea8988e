"""Benchmark: weight change, failover and canary rollback through a real HAProxy.

Everything real: HAProxy 2.6 (Debian) with the configuration Tenantry generates,
Prometheus 2.42 scraping it, demo apps as the clusters' ingresses (kwok runs no
containers), the canary controller with its state in a SQLite ledger.

* weight change: canary 0 % → 50 % through the Runtime API, until the first answer
  from the canary (median of N); baseline: the same change by rewriting the
  configuration and reloading HAProxy.
* failover: a load of GETs; the primary's ingress is killed (SIGKILL); time until the
  first answer from the standby after which every answer came from it (also: the last
  answer from the primary, and when HAProxy marked it down), and the requests that
  failed (median over N kills; the primary is restarted between runs).
* rollback: a canary answering 20 % errors; time from its first step until the
  controller rolled it back (median of N), against its real bound: one analysis
  interval plus one scrape interval.

Last line: one JSON object with ``weight_change_s``, ``failover_s``,
``failover_failed_requests``, ``rollback_s``.
Usage: python bench/traffic.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import yaml

from _common import machine
from tenantry import processes
from tenantry.ledger import Ledger
from tenantry.traffic import analysis, canary
from tenantry.traffic.haproxy import HAProxy
from tenantry.traffic.load import Load
from tenantry.traffic.router import Endpoint, Route


def start_app(name: str, port: int, cluster: str, version: str) -> None:
    processes.start(name, [sys.executable, "-m", "tenantry.local.demoapp", "--port", str(port),
                        "--service", "api", "--cluster", cluster, "--version", version],
                 port=port)  # fmt: skip


def first_canary_answer(url: str, started: float, timeout_s: float = 10) -> float:
    with httpx2.Client(timeout=5) as client:
        while time.monotonic() - started < timeout_s:
            if client.get(url).text.split()[1] == "canary":
                return time.monotonic() - started
    raise TimeoutError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for key, value in machine().items():
        print(f"{key:>20}: {value}")
    haproxy_version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True,
                                     check=False).stdout.splitlines()[0]  # fmt: skip
    print(f"{'haproxy':>20}: {haproxy_version}")
    work = Path(tempfile.mkdtemp(prefix="tenantry-bench-traffic-"))
    os.environ["TENANTRY_STATE_DIR"] = str(work)
    ports = {n: processes.free_port() for n in ("primary", "canary", "front", "stats", "prom")}
    start_app("app-primary", ports["primary"], "prod-primary", "primary")
    start_app("app-canary", ports["canary"], "prod-canary", "canary")
    route = Route("payments-api", (
        Endpoint("prod-primary", "primary", f"127.0.0.1:{ports['primary']}"),
        Endpoint("prod-canary", "canary", f"127.0.0.1:{ports['canary']}"),
    ))  # fmt: skip
    router = HAProxy.on_loopback(
        work / "haproxy", [(route, ports["front"])], stats_port=ports["stats"]
    )
    router.start()
    url = f"http://127.0.0.1:{ports['front']}/"
    prometheus = None
    try:
        # --- weight change: Runtime API, and a reload as the baseline ---------------
        runtime, reload = [], []
        for _ in range(args.runs):
            router.set_canary_weight(route, 0)
            started = time.monotonic()
            router.set_canary_weight(route, 50)
            runtime.append(first_canary_answer(url, started))
            router.set_canary_weight(route, 0)
            (work / "haproxy" / "canary-weights.json").write_text(json.dumps({route.name: 50}))
            started = time.monotonic()
            router.reload()
            reload.append(first_canary_answer(url, started))
        router.set_canary_weight(route, 0)
        weight_s, reload_s = statistics.median(runtime), statistics.median(reload)
        print(f"weight 0 -> 50 % until the first canary answer, median of {args.runs}: "
              f"Runtime API {weight_s * 1000:.1f} ms; baseline reload {reload_s * 1000:.1f} ms "
              f"({reload_s / weight_s:.1f}x slower)")  # fmt: skip

        # --- failover under load ----------------------------------------------------
        # The clock stops at the first answer from the standby after which every answer
        # came from it (not when HAProxy marks the primary down, which comes earlier).
        failover_times, failed, down_times, last_primary = [], [], [], []
        for _ in range(args.runs):
            load = Load(url, interval_s=0.005)
            time.sleep(1)
            primary = processes.running("app-primary")
            assert primary is not None
            killed = time.monotonic()
            os.kill(primary.pid, 9)
            while next(s for s in router.state(route) if s.role == "primary").healthy:
                time.sleep(0.01)
            down_times.append(time.monotonic() - killed)
            time.sleep(2)
            load.stop()
            after = [(t, a) for t, a in load.answers if t > killed]
            settled = max((t for t, a in after if a != "canary"), default=killed)
            standby = [t for t, a in after if t > settled and a == "canary"]
            if not standby:
                raise RuntimeError("no answer from the standby within 2 s of the down mark")
            failover_times.append(standby[0] - killed)
            last_primary.append(max((t for t, a in after if a == "primary"), default=killed)
                                - killed)  # fmt: skip
            failed.append(sum(1 for _, a in after if a not in ("primary", "canary")))
            processes.stop("app-primary", grace_s=0)
            start_app("app-primary", ports["primary"], "prod-primary", "primary")
            while not next(s for s in router.state(route) if s.role == "primary").healthy:
                time.sleep(0.05)
        failover_s = statistics.median(failover_times)
        print(
            f"primary killed under load, median of {args.runs}: last answer from the primary "
            f"{statistics.median(last_primary):.2f} s after the kill; HAProxy marked it down "
            f"at {statistics.median(down_times):.2f} s; from {failover_s:.2f} s every answer "
            f"came from the standby; failed requests per run: {failed}"
        )

        # --- canary rollback ------------------------------------------------------------
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
            "job_name": "platform", "static_configs": [{"targets": [
                f"127.0.0.1:{ports[n]}" for n in ("stats", "primary", "canary")]}]}]}  # fmt: skip
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports['prom']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(5)
        policy = analysis.Policy(steps=(20, 50), interval_s=3, min_requests=10)
        httpx2.post(
            f"http://127.0.0.1:{ports['canary']}/admin", json={"error_rate": 0.2}, timeout=5
        )
        rollbacks = []
        with Ledger.open(f"sqlite:///{work / 'ledger.sqlite'}") as ledger:
            for run in range(args.runs):
                load = Load(url, interval_s=0.005)
                target = canary.Target("payments", "api", f"9.9.{run}", route,
                                       analysis.Objectives(99.0, 0.5), policy)  # fmt: skip
                started = time.monotonic()
                rolled: list[float] = []

                def rolled_back(_: canary.Target, __: str, since: float = started,
                                into: list[float] = rolled) -> None:  # fmt: skip
                    into.append(time.monotonic() - since)

                canary.Controller(
                    target, router=router, ledger=ledger,
                    observe=lambda t: canary.observe(f"http://127.0.0.1:{ports['prom']}", t, 3),
                    on_rollback=rolled_back, on_promote=lambda t: None,
                ).run(max_intervals=5)  # fmt: skip
                load.stop()
                rollbacks.append(rolled[0] if rolled else float("inf"))
        rollback_s = statistics.median(rollbacks)
        # The first verdict comes at the end of the first interval, on data Prometheus
        # scraped up to one scrape interval (1 s) earlier: the bound is their sum.
        bound = policy.interval_s + 1
        print(f"canary with 20 % errors -> rolled back, median of {args.runs}: {rollback_s:.2f} s "
              f"({rollback_s / policy.interval_s:.2f} intervals of {policy.interval_s:g} s; "
              f"bound: one interval + one scrape interval = {bound:g} s: "
              f"{'within' if rollback_s <= bound else 'BEYOND'}); "
              f"runs: {[round(r, 2) for r in rollbacks]}")  # fmt: skip
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        router.stop()
        processes.stop("app-primary")
        processes.stop("app-canary")
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "weight_change_s": round(weight_s, 4),
                "weight_change_reload_s": round(reload_s, 4),
                "failover_s": round(failover_s, 3),
                "failover_marked_down_s": round(statistics.median(down_times), 3),
                "failover_failed_requests": max(failed),
                "rollback_s": round(rollback_s, 2),
                "rollback_interval_s": policy.interval_s,
            }
        )
    )


if __name__ == "__main__":
    main()
