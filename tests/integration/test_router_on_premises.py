"""The platform team's own HAProxy on premises, run by `tenantry router run` from
platform.yaml's ``traffic.haproxy``: every service by Host on one listener, the weights
the workers set through the same configuration (kept over a restart), new services
picked up on SIGHUP, a broken repository leaving the last routes serving, and a soft stop.

The production clusters are named by kubeconfig (the router never reaches them); their
ingresses are demo apps (`tenantry.local.demoapp`) that answer with their cluster's name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tenantry import processes
from tenantry.spec import repository
from tenantry.traffic import haproxy, wiring
from tests.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
DOMAIN = "apps.acme.example"


def answer(listen: int, host: str, client: httpx2.Client | None = None) -> tuple[int, str]:
    """Status and the answering cluster of one GET with ``Host: host``."""
    url, headers = f"http://127.0.0.1:{listen}/", {"Host": host}
    if client is None:
        response = httpx2.get(url, headers=headers, timeout=5)
    else:
        response = client.get(url, headers=headers)
    words = response.text.split()
    return response.status_code, words[-1] if response.status_code == 200 else response.text


def clusters(listen: int, host: str, count: int) -> Counter[str]:
    """Which cluster answered each of ``count`` GETs."""
    with httpx2.Client(timeout=5) as client:
        return Counter(answer(listen, host, client)[1] for _ in range(count))


@pytest.fixture(scope="module")
def on_premises(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("router-on-premises")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(work / "state")
    ports = {n: processes.free_port() for n in ("eu-1", "eu-2", "listen", "stats")}
    root = work / "repo"
    shutil.copytree(EXAMPLE, root)
    data = yaml.safe_load((root / "platform.yaml").read_text())
    production = next(e for e in data["environments"] if e["name"] == "production")
    production["clusters"] = [
        {"name": name, "role": role, "kubeconfig": str(work / "kubeconfig"),
         "ingress": f"127.0.0.1:{ports[name]}"}
        for name, role in (("eu-1", "primary"), ("eu-2", "canary"))
    ]  # fmt: skip
    data["traffic"]["haproxy"] = {
        "directory": str(work / "router"), "listen": f"127.0.0.1:{ports['listen']}",
        "domain": DOMAIN, "stats": f"127.0.0.1:{ports['stats']}",
    }  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(data))
    # payments/ledger is onboarded later, while the router runs.
    shutil.move(root / "services" / "payments" / "ledger", work / "ledger")
    try:
        for name in ("eu-1", "eu-2"):
            processes.start(f"ingress-{name}", [
                sys.executable, "-m", "tenantry.local.demoapp", "--port", str(ports[name]),
                "--service", "any", "--cluster", name, "--version", "1.0.0",
            ], port=ports[name])  # fmt: skip
        yield {"root": root, "work": work, "ports": ports}
    finally:
        processes.stop("router")
        for name in ("eu-1", "eu-2"):
            processes.stop(f"ingress-{name}")
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def run_router(p: dict[str, Any]) -> processes.Process:
    """`tenantry router run`, as a supervisor would start it; ready when /metrics answers."""
    return processes.start("router", [
        sys.executable, "-m", "tenantry", "router", "run", "--repo", str(p["root"]),
        "--refresh-s", "3600",  # only SIGHUP refreshes here: each test says when
    ], port=p["ports"]["stats"])  # fmt: skip


def tenantry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantry", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def router_log() -> str:
    return processes.log_file("router").read_text()


def test_every_service_is_served_by_host_and_other_hosts_get_404(on_premises) -> None:
    run_router(on_premises)
    listen = on_premises["ports"]["listen"]
    assert clusters(listen, f"payments-api.{DOMAIN}", 20) == {"eu-1": 20}
    assert clusters(listen, f"PAYMENTS-API.{DOMAIN}:{listen}", 5) == {"eu-1": 5}
    assert answer(listen, f"payments-ledger.{DOMAIN}") == (404, "no service at this host")
    assert answer(listen, "payments-api.elsewhere.example")[0] == 404
    shown = tenantry("--output", "json", "router", "routes", "--repo", str(on_premises["root"]))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [{
        "route": "payments-api", "url": f"http://payments-api.{DOMAIN}:{listen}/",
        "primary": f"127.0.0.1:{on_premises['ports']['eu-1']}",
        "canary": f"127.0.0.1:{on_premises['ports']['eu-2']}", "canary_weight": 0,
    }]  # fmt: skip


def test_the_workers_weights_reach_the_router_and_survive_its_restart(on_premises) -> None:
    run_router(on_premises)
    repo = repository.load(on_premises["root"])
    provider = wiring.provider(repo)
    router = provider.router(repo)  # what the canary controller and failover watcher drive
    assert isinstance(router, haproxy.HAProxy)
    route = provider.route(repo, repo.service("payments/api"))
    listen, host = on_premises["ports"]["listen"], f"payments-api.{DOMAIN}"
    try:
        router.set_canary_weight(route, 50)
        # At 50 % both answer: 100 GETs all from one cluster has a chance of 2^-99.
        assert set(clusters(listen, host, 100)) == {"eu-1", "eu-2"}
        processes.stop("router")
        with pytest.raises(httpx2.ConnectError):
            answer(listen, host)
        run_router(on_premises)
        assert {s.role: s.weight for s in router.state(route)} == {"primary": 50, "canary": 50}
        assert set(clusters(listen, host, 100)) == {"eu-1", "eu-2"}
        router.set_canary_weight(route, 100)
        assert clusters(listen, host, 20) == {"eu-2": 20}
    finally:
        router.set_canary_weight(route, 0)
    assert clusters(listen, host, 20) == {"eu-1": 20}


def test_a_new_service_is_routed_on_sighup_and_a_broken_repo_keeps_the_last_routes(
    on_premises,
) -> None:
    process = run_router(on_premises)
    listen, root = on_premises["ports"]["listen"], on_premises["root"]
    ledger = f"payments-ledger.{DOMAIN}"
    shutil.move(on_premises["work"] / "ledger", root / "services" / "payments" / "ledger")
    os.kill(process.pid, signal.SIGHUP)
    wait_for(lambda: "reloaded: 2 route(s)" in router_log(), "the router to reload")
    assert clusters(listen, ledger, 5) == {"eu-1": 5}
    platform_yaml = root / "platform.yaml"
    good = platform_yaml.read_text()
    platform_yaml.write_text(good.replace("kind: Platform", "kind: Platfrom"))
    try:
        os.kill(process.pid, signal.SIGHUP)
        wait_for(lambda: "does not load" in router_log(), "the router to report the bad repo")
        assert clusters(listen, ledger, 5) == {"eu-1": 5}
        assert clusters(listen, f"payments-api.{DOMAIN}", 5) == {"eu-1": 5}
    finally:
        platform_yaml.write_text(good)


def test_it_stops_on_sigterm_and_takes_haproxy_with_it(on_premises) -> None:
    process = run_router(on_premises)
    assert processes.stop("router")
    assert not processes.alive(process.pid)
    for port in (on_premises["ports"]["listen"], on_premises["ports"]["stats"]):
        assert not processes.answers(port)


def test_router_is_refused_for_a_platform_on_local_clusters() -> None:
    refused = tenantry("router", "routes", "--repo", str(EXAMPLE))
    assert refused.returncode != 0
    assert "tenantry up" in refused.stderr
