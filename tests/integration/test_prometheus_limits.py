"""A real Prometheus with the generated configuration: a noisy tenant's scrape is refused
while the other keeps flowing, and a tenant cannot forge another tenant's label.

The scrape targets are small local HTTP servers that expose /metrics (demo apps:
pods in kwok clusters run no containers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tenantry import processes
from tenantry.observability import prometheus
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


def exporter(body: str) -> ThreadingHTTPServer:
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def running(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install prometheus"
    repo = repository.load(EXAMPLE)
    # checkout (noisy) may expose at most 50 samples; payments (the forger) keeps the default.
    checkout = repo.tenant("checkout").model_copy(
        update={"monitoring": models.MonitoringQuota(sample_limit=50)}
    )
    repo = repository.Repository(
        repo.root, repo.platform, (checkout, repo.tenant("payments")), repo.services
    )
    noisy = exporter("".join(f'noise{{i="{i}"}} 1\n' for i in range(200)))
    forger = exporter('orders_total{tenant="checkout",service="web"} 7\n')
    targets = tmp_path / "targets"
    targets.mkdir()
    endpoints = {"checkout": (noisy, "web"), "payments": (forger, "api")}
    for tenant, (server, service) in endpoints.items():
        doc = prometheus.targets(
            tenant, [(f"127.0.0.1:{server.server_port}", service, f"{service}-0")]
        )
        (targets / f"{tenant}.json").write_text(json.dumps(doc))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            prometheus.config(repo, rule_files=[], targets_dir=str(targets), interval="1s")
        )
    )
    port = processes.free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for server in (noisy, forger):
            server.shutdown()
            server.server_close()


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return list(json.load(response)["data"]["result"])


def eventually(base: str, expr: str, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = query(base, expr)
        except OSError:
            result = []
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no result for {expr}")


def test_a_noisy_tenant_is_refused_and_the_other_keeps_flowing(running: str) -> None:
    (checkout,) = eventually(running, 'up{tenant="checkout"}')
    (payments,) = eventually(running, 'up{tenant="payments"}')
    assert checkout["value"][1] == "0"  # 200 samples > sample_limit 50: the whole scrape is refused
    assert payments["value"][1] == "1"
    assert query(running, 'noise{tenant="checkout"}') == []


def test_a_tenant_cannot_forge_another_tenants_label(running: str) -> None:
    (series,) = eventually(running, "orders_total")
    assert series["metric"]["tenant"] == "payments"  # set by payments' scrape job, last
    assert series["metric"]["exported_tenant"] == "checkout"  # what payments' target claimed
    assert query(running, 'orders_total{tenant="checkout"}') == []
