"""Benchmark: alert latency, metric ingestion with per-tenant limits, log shipping rate.

Everything real: Prometheus and Alertmanager (Debian), otelcol-tenantry, the stand-in
receivers, with the configuration Tenantry generates.

* alert latency: a metric changes on a scraped target → the alert's notification
  arrives at the tenant's PagerDuty receiver (median of N); baseline: an alert posted
  straight to Alertmanager's API → the same receiver (Alertmanager alone).
  Scrape and evaluation every 1 s; group_wait 100 ms, group_interval 1 s.
* ingestion: 100 tenants, each one target of S series scraped every second through
  the generated per-tenant jobs (limits, relabeling); 10 of them over their sample
  limit (refused). Samples appended per minute and Prometheus' CPU; baseline: the same
  targets in one plain job without limits or relabeling.
* logs: L container-log lines over 10 tenants, written in the Kubernetes layout →
  all at the HEC receiver (lines/s); baseline: the same lines posted straight to the
  receiver over HEC (its own capacity).

Last line: one JSON object with ``alert_latency_s``, ``samples_per_min``,
``log_lines_per_s`` and the baselines.
Usage: python bench/observability.py [--alerts 10] [--series 220] [--lines 50000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import yaml

from _common import machine
from tenantry import processes
from tenantry.local import monitoring
from tenantry.observability import prometheus, secrets
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "platform-repo"
TENANTS = 100
REFUSED = 10
PD_KEY = "0123456789abcdef0123456789abcdef"


class Targets:
    """One HTTP server exposing /t/<name>/metrics bodies that can change."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.bodies.get(self.path.split("/")[2] if self.path.startswith("/t/")
                                        else "", b"")  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def target(self, name: str) -> dict[str, Any]:
        return {"targets": [f"127.0.0.1:{self.server.server_port}"],
                "labels": {"__metrics_path__": f"/t/{name}/metrics", "service": "app"}}  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(check: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("timed out")
        time.sleep(poll_s)
    return time.monotonic() - started


def pagerduty_summaries(receivers: str) -> list[str]:
    events = httpx2.get(f"{receivers}/received/pagerduty", timeout=10).json()
    return [e["event"].get("payload", {}).get("summary", "") for e in events]


def arrived(stack: monitoring.Stack, marker: str) -> bool:
    return any(s.startswith(marker) for s in pagerduty_summaries(stack.receivers))


def alert_latency(
    runs: int, targets: Targets, stack: monitoring.Stack
) -> tuple[list[float], list[float]]:
    measured = []
    lines: list[str] = []
    for i in range(runs):
        lines.append(f'demo_failing{{run="{i}"}} 1\n')
        targets.bodies["payments"] = "".join(lines).encode()
        marker = f"[FIRING:{i + 1}] DemoFailing"
        measured.append(wait_until(lambda m=marker: arrived(stack, m), timeout_s=60))
        time.sleep(1.5)
    baseline = []
    posted: list[dict[str, Any]] = []
    for i in range(runs):
        labels = {"alertname": "BenchDirect", "tenant": "payments", "service": "api",
                  "severity": "critical", "run": str(i)}  # fmt: skip
        posted.append({"labels": labels})
        started = time.monotonic()
        httpx2.post(f"{stack.alertmanager}/api/v2/alerts", json=posted, timeout=10)
        marker = f"[FIRING:{i + 1}] BenchDirect"
        wait_until(lambda m=marker: arrived(stack, m), timeout_s=60)
        baseline.append(time.monotonic() - started)
        time.sleep(1.5)
    return measured, baseline


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def appended(port: int) -> float:
    text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("prometheus_tsdb_head_samples_appended_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ingestion(
    config: dict[str, Any], workdir: Path, warm_s: float, window_s: float
) -> dict[str, float]:
    workdir.mkdir(parents=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = processes.free_port()
    proc = subprocess.Popen(
        [shutil.which("prometheus") or "prometheus", f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--enable-feature=extra-scrape-metrics"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: processes.answers(port), 30, 0.1)
        time.sleep(warm_s)
        samples0, cpu0, t0 = appended(port), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window_s)
        samples1, cpu1, t1 = appended(port), cpu_seconds(proc.pid), time.monotonic()
        up = httpx2.get(f"http://127.0.0.1:{port}/api/v1/query",
                        params={"query": "count(up == 0)"}, timeout=10).json()  # fmt: skip
        refused = int(float(up["data"]["result"][0]["value"][1])) if up["data"]["result"] else 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    minutes = (t1 - t0) / 60
    return {"samples_per_min": (samples1 - samples0) / minutes,
            "cpu_cores": (cpu1 - cpu0) / (t1 - t0), "refused_targets": refused}  # fmt: skip


def synthetic_repo(root: Path) -> repository.Repository:
    base = repository.load(EXAMPLE)
    owner = base.tenant("payments")
    tenants = tuple(
        owner.model_copy(update={
            "name": f"t{i:03d}",
            "monitoring": models.MonitoringQuota(sample_limit=100) if i < REFUSED else None,
        })
        for i in range(TENANTS)
    )  # fmt: skip
    return repository.Repository(root, base.platform, tenants, ())


def write_pod_lines(pod_logs: Path, lines: int, tenants: int) -> None:
    per = lines // tenants
    for t in range(tenants):
        directory = pod_logs / f"t{t:03d}_app-0_0a1b2c3d-0000-4000-8000-00000000000{t % 10}" / "app"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = "2026-11-22T06:00:00.000000000Z stdout F"
        with (directory / "0.log").open("a") as out:
            out.write("".join(f"{stamp} bench line {t}-{n} {'x' * 80}\n" for n in range(per)))


def count(receivers: str) -> int:
    return int(httpx2.get(f"{receivers}/count/hec", timeout=10).json()["count"])


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=10)
    parser.add_argument("--series", type=int, default=220)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    for key, value in machine().items():
        print(f"{key:>20}: {value}")
    print(f"{'prometheus':>20}: {version('prometheus')}")
    work = Path(tempfile.mkdtemp(prefix="tenantry-bench-obs-"))
    os.environ["TENANTRY_STATE_DIR"] = str(work / "state")
    targets = Targets()
    try:
        # --- alert latency, through the stack `tenantry up` runs -------------------
        repo_root = work / "repo"
        shutil.copytree(EXAMPLE, repo_root)
        rule = {"alert": "DemoFailing", "expr": "demo_failing > 0", "for": "0s",
                "labels": {"severity": "critical"}}  # fmt: skip
        (repo_root / "services/payments/api/alerts.yaml").write_text(
            yaml.safe_dump({"groups": [{"name": "bench", "rules": [rule]}]})
        )
        repo = repository.load(repo_root)
        ports = monitoring.ensure_ports()
        slack = f"http://127.0.0.1:{ports.receivers}/slack"
        stored = {("payments-pagerduty", "routing-key"): PD_KEY,
                  ("payments-alerts", "webhook-url"): f"{slack}/payments",
                  ("checkout-alerts", "webhook-url"): f"{slack}/checkout"}  # fmt: skip
        values, problems = secrets.resolve(
            secrets.needs(repo), lambda r: stored.get((r.name, r.key))
        )
        config_dir = monitoring.root() / "config"
        (config_dir / "targets").mkdir(parents=True)
        (config_dir / "targets" / "payments.json").write_text(
            json.dumps([targets.target("payments")])
        )
        tuned = dataclasses.replace(monitoring.settings(ports, hold="0s", interval="1s"),
                                    group_wait="100ms", group_interval="1s")  # fmt: skip
        stack, _ = monitoring.start(repo, secret_values=values, secret_problems=problems,
                                    tuned=tuned)  # fmt: skip
        measured, baseline = alert_latency(args.alerts, targets, stack)
        alert_s, direct_s = statistics.median(measured), statistics.median(baseline)
        print(
            f"metric change -> PagerDuty receiver, median of {args.alerts}: {alert_s:.2f}s "
            f"(min {min(measured):.2f}, max {max(measured):.2f})"
        )
        print(
            f"baseline: alert posted to Alertmanager -> receiver: {direct_s:.2f}s "
            f"(the scrape + rule evaluation path adds {alert_s - direct_s:.2f}s)"
        )

        # --- logs through otelcol-tenantry -----------------------------------------
        before = count(stack.receivers)
        started = time.monotonic()
        write_pod_lines(Path(stack.pod_logs), args.lines, 10)
        wait_until(lambda: count(stack.receivers) - before >= args.lines, 600, 0.2)
        shipped_s = time.monotonic() - started
        log_rate = args.lines / shipped_s
        token = (monitoring.root() / "hec-token").read_text().strip()
        event = json.dumps({"event": "bench direct line " + "x" * 80, "index": "payments"})
        batch = ("\n".join([event] * 1000)).encode()
        before = count(stack.receivers)
        started = time.monotonic()
        headers = {"Authorization": f"Splunk {token}"}
        with httpx2.Client(timeout=30) as client:
            for _ in range(args.lines // 1000):
                client.post(f"{stack.receivers}/services/collector", content=batch,
                            headers=headers).raise_for_status()  # fmt: skip
        direct_rate = (count(stack.receivers) - before) / (time.monotonic() - started)
        print(
            f"{args.lines} log lines, 10 tenants -> HEC receiver: {shipped_s:.1f}s = "
            f"{log_rate:,.0f} lines/s"
        )
        print(
            f"baseline: the receiver's own capacity (direct HEC posts): {direct_rate:,.0f} lines/s "
            f"(shipper at {log_rate / direct_rate:.0%} of it)"
        )
        monitoring.stop()

        # --- ingestion of 100 tenants with limits ------------------------------------
        series = "".join(f'bench_series{{i="{i}"}} {i}\n' for i in range(args.series)).encode()
        synthetic = synthetic_repo(work / "synthetic")
        tdir = work / "ingest-targets"
        tdir.mkdir()
        for tenant in synthetic.tenants:
            targets.bodies[tenant.name] = series
            (tdir / f"{tenant.name}.json").write_text(json.dumps([targets.target(tenant.name)]))
        generated = prometheus.config(
            synthetic, rule_files=[], targets_dir=str(tdir), interval="1s"
        )
        ours = ingestion(generated, work / "ingest-ours", 15, args.window)
        plain = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
            "job_name": "plain", "static_configs": [
                {"targets": t["targets"], "labels": {"__metrics_path__": path}}
                for t in (targets.target(x.name) for x in synthetic.tenants)
                for path in [t["labels"]["__metrics_path__"]]]}]}  # fmt: skip
        base = ingestion(plain, work / "ingest-plain", 15, args.window)
        per_sample = (ours["cpu_cores"] / ours["samples_per_min"]) / (
            base["cpu_cores"] / base["samples_per_min"]
        )
        print(
            f"{TENANTS} tenants x {args.series} series every 1 s, generated jobs: "
            f"{ours['samples_per_min']:,.0f} samples/min, Prometheus CPU "
            f"{ours['cpu_cores']:.2f} cores, {ours['refused_targets']} targets refused"
        )
        print(f"baseline: one plain job, no limits or relabeling: "
              f"{base['samples_per_min']:,.0f} samples/min, CPU {base['cpu_cores']:.2f} cores; "
              f"CPU per sample, generated/plain: {per_sample:.2f}x")  # fmt: skip
    finally:
        monitoring.stop()
        targets.close()
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "alert_latency_s": round(alert_s, 3),
                "alert_direct_s": round(direct_s, 3),
                "samples_per_min": round(ours["samples_per_min"]),
                "samples_per_min_plain": round(base["samples_per_min"]),
                "prometheus_cpu_cores": round(ours["cpu_cores"], 2),
                "prometheus_cpu_cores_plain": round(base["cpu_cores"], 2),
                "refused_targets": ours["refused_targets"],
                "log_lines_per_s": round(log_rate),
                "hec_direct_lines_per_s": round(direct_rate),
            }
        )
    )


if __name__ == "__main__":
    main()
