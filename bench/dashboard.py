"""Benchmark: the dashboard's service page with 1,000 history rows in Chromium — time to
first paint and to interactive — and a ledger write → visible on an open page.

Everything real: one local cluster (kwok) whose API server proves the example people's
static tokens by TokenReview and serves the clusters' Deployment reads of the service
page (every cluster of the example platform is this one cluster, as in the browser
tests); the ledger on a throwaway PostgreSQL server; a `tenantry server` process; Debian's
Chromium driven by Playwright, signed in as bob (an owner of payments) through the
sign-in form.

* Load: payments/api's page with 1,000 deployments in the ledger, loaded N times in one
  tab. Each load reads the browser's own timings: first-contentful-paint
  (``performance.getEntriesByType('paint')``) and ``domContentLoadedEventEnd`` of the
  navigation entry (the parsed document with its deferred dashboard.js run: the page
  answers clicks and its live stream starts) — both in ms from the navigation's start.
  Baseline in the same run, loads interleaved: payments/ledger's page, the same
  template, the same matrix (releases on the same three clusters), the same number of
  publications, but 10 history rows — so the difference is what the history costs.
  Also timed: the raw ``GET /api/v1/history`` JSON of the rows the page shows (bob's
  token, cached review), what the page costs over the data it shows.
* Update: with payments/api's page open and live (``#live`` says "live"), a new
  deployment row is written to the ledger; the page records ``Date.now()`` when a
  MutationObserver first sees the row's version in ``#history``, compared with
  ``time.time()`` taken just before the write (the same machine clock). N times.
* Live streams at rest: the server process's CPU time (``/proc/PID/stat``) over a 10 s
  window with 1, then 10, live service pages open (each its own context and session)
  and nothing changing — what keeping pages live costs.
* The live stream's ``_fingerprint`` (the digest the live streams read 4x/s), called in
  this process on the same ledger: median and p95 of 200 calls.

Prints the machine and versions and progress to stderr; the last line of stdout is one
JSON object with ``dashboard_load_ms`` (median time to interactive, i.e.
domContentLoadedEventEnd, of the 1,000-row page) and ``dashboard_update_ms`` (median
write → visible), p95s, the baseline's figures and the run counts.
Usage: python bench/dashboard.py [--loads 20] [--updates 20] [--rows 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx2
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from _common import EXAMPLE, machine, start, stop
from tenantry import processes
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, tables
from tenantry.local import plugin, postgres
from tenantry.server import identity
from tenantry.server.context import Server, cluster_connector
from tenantry.server.dashboard import views
from tenantry.spec import repository

CLUSTER = "bench-dash"
PEOPLE = ("alice", "bob", "erin", "carol", "dana")
CHROMIUM = "/usr/bin/chromium"
# As tests/browser/conftest.py's CHROMIUM_ARGS: the same browser the tests drive.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
CLUSTERS = (("staging", "staging"), ("production", "prod-canary"),
            ("production", "prod-primary"))  # fmt: skip
WAIT_MS = 30_000


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def platform_repo(root: Path) -> Path:
    """The example repository on the one local cluster; its people without the
    ``@acme.example`` (the cluster knows them by their short names)."""
    shutil.copytree(EXAMPLE, root)
    for path in root.rglob("*.yaml"):
        path.write_text(path.read_text().replace("@acme.example", ""))
    platform = yaml.safe_load((root / "platform.yaml").read_text())
    for environment in platform["environments"]:
        for entry in environment["clusters"]:
            entry["local"] = CLUSTER
    platform["server"] = {"managementCluster": "staging", "admins": {"users": ["dana"]},
                          "reviewCacheS": 10}  # fmt: skip
    # No live-traffic router or monitoring stack here: the page says so in one line.
    for key in ("traffic", "alerts"):
        platform.pop(key, None)
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    return root


def seed(ledger: Ledger, service: str, deployments: int, publications: int) -> None:
    """``deployments`` rows of payments/``service``: each version to staging, then the
    canary and the primary; 1 in 10 fails (and goes no further). ``publications``
    versions published, with provenance."""
    start_at = datetime.now(UTC) - timedelta(days=300)
    rows: list[tables.Base] = [
        tables.Publication(
            tenant="payments", service=service, version=f"1.{v}.0", digest=f"{v:064x}",
            git_commit=f"{v:040x}", author="Alice <alice@example.com>",
            key=f"payments/{service}-1.{v}.0.tgz", result="published",
            at=start_at + timedelta(hours=v),
        )
        for v in range(publications)
    ]  # fmt: skip
    version = 0
    while len(rows) - publications < deployments:
        for environment, cluster in CLUSTERS:
            if len(rows) - publications == deployments:
                break
            failed = version % 10 == 9 and environment == "staging"
            at = start_at + timedelta(hours=version * 6 + len(rows) % 6)
            rows.append(tables.Deployment(
                tenant="payments", service=service, version=f"1.{version}.0",
                digest=f"{version:064x}", environment=environment, cluster=cluster,
                actor="worker w1" if environment == "staging" else "bob",
                result="failed" if failed else "succeeded",
                reason="rollout timed out: 0/3 pods ready" if failed else "",
                started=at, finished=at + timedelta(seconds=20),
            ))  # fmt: skip
            if failed:
                break
        version += 1
    with ledger.session() as session:
        session.add_all(rows)


def version_of(program: str) -> str:
    done = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1),
            "min": round(ordered[0], 1), "max": round(ordered[-1], 1)}  # fmt: skip


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/signin")
    page.get_by_label("Your token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("signed in as").wait_for(timeout=WAIT_MS)


# The browser's own timings of the page just loaded, in ms from the navigation's start.
TIMINGS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByType("paint")
    .find(e => e.name === "first-contentful-paint");
  return {fcp: fcp ? fcp.startTime : null, interactive: nav.domInteractive,
          dcl: nav.domContentLoadedEventEnd, response: nav.responseEnd,
          bytes: nav.decodedBodySize, rows: document.querySelectorAll("#history tbody tr").length};
}"""


LIVE = "() => document.getElementById('live').textContent === 'live'"
PAINTED = """() => performance.getEntriesByType("paint")
  .some(e => e.name === "first-contentful-paint")"""


def load(page: Page, url: str) -> dict[str, Any]:
    page.goto(url, wait_until="load")
    # A first paint can come after "load"; the entry is there once it happened. (Every
    # predicate is a function: the page's CSP forbids evaluating a string.)
    page.wait_for_function(PAINTED, timeout=WAIT_MS)
    found: dict[str, Any] = page.evaluate(TIMINGS)
    return found


# Installed on the open page: the first time a version appears in #history, when.
WATCH = """() => {
  window.seenAt = {};
  const look = () => {
    const table = document.getElementById("history");
    if (!table) { return; }
    const now = Date.now();
    for (const cell of table.querySelectorAll("tbody tr td:nth-child(2)")) {
      if (!(cell.textContent in window.seenAt)) { window.seenAt[cell.textContent] = now; }
    }
  };
  look();
  new MutationObserver(look).observe(document.getElementById("main"),
                                     {childList: true, subtree: true});
}"""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(browser: Browser, url: str, token: str, pid: int, pages: int,
             seconds: float) -> float:  # fmt: skip
    """The server's CPU use, in % of one core, while ``pages`` live service pages are open
    (each its own context: its own session and connection, as separate people) and
    nothing changes: the cost of their streams' polling."""
    contexts = [browser.new_context() for _ in range(pages)]
    try:
        for context in contexts:
            page = context.new_page()
            sign_in(page, url, token)
            page.goto(f"{url}/services/payments/api")
            page.wait_for_function(LIVE, timeout=WAIT_MS)
        begun, used = time.monotonic(), cpu_s(pid)
        time.sleep(seconds)  # the measuring window itself, not a wait for anything
        percent = 100 * (cpu_s(pid) - used) / (time.monotonic() - begun)
    finally:
        for context in contexts:
            context.close()
    say(f"server CPU with {pages} live page(s) open, idle for {seconds:g} s: {percent:.1f} %")
    return percent


def timed(call: Callable[[], object], count: int) -> list[float]:
    ms = []
    for _ in range(count):
        begun = time.perf_counter()
        call()
        ms.append((time.perf_counter() - begun) * 1000)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--baseline-rows", type=int, default=10)
    parser.add_argument("--publications", type=int, default=50)
    parser.add_argument("--pages", type=int, default=10, help="live pages open at once")
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="tenantry-bench-"))
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-bench-dashboard-"))
    versions = {
        **machine(),
        "chromium": version_of(CHROMIUM),
        "playwright": metadata.version("playwright"),
        "postgresql": version_of(str(postgres.bin_dir() / "postgres")),
    }
    for key, value in versions.items():
        say(f"{key:>12}: {value}")

    plugin.install()  # as the tenantry command does
    tokens = {who: secrets.token_urlsafe(24) for who in PEOPLE}
    token_file = workdir / "people-tokens.csv"
    token_file.write_text("".join(f'{tokens[who]},{who},{who},""\n' for who in PEOPLE))
    token_file.chmod(0o600)
    procs: list[subprocess.Popen[bytes]] = []
    created = False
    try:
        created = True
        cluster = localcluster.create(CLUSTER, nodes=1, token_file=token_file)
        say("cluster ready")
        with postgres.server() as database, Ledger.open(database) as ledger:
            seed(ledger, "api", args.rows, args.publications)
            seed(ledger, "ledger", args.baseline_rows, args.publications)
            say(f"ledger seeded: payments/api {args.rows} deployments, payments/ledger "
                f"{args.baseline_rows}; {args.publications} publications each")  # fmt: skip
            repo_root = platform_repo(workdir / "repo")
            port = processes.free_port()
            start("server", [sys.executable, "-m", "tenantry", "server", "--repo",
                             str(repo_root), "--port", str(port)], port=port,
                  env={"TENANTRY_DATABASE_URL": database}, logs=workdir, procs=procs)  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            figures = measure(args, url, tokens, ledger, cluster, repo_root, procs[0].pid)
        for process in procs:
            stop(process)
        log = (workdir / "server.log").read_text()
        assert not [who for who, token in tokens.items() if token in log], "a token was logged"
    finally:
        for process in reversed(procs):
            stop(process)
        if created:
            localcluster.delete(CLUSTER)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    sys.stdout.write(json.dumps(figures) + "\n")


def measure(
    args: argparse.Namespace, url: str, tokens: dict[str, str], ledger: Ledger,
    cluster: localcluster.LocalCluster, repo_root: Path, server_pid: int,
) -> dict[str, Any]:  # fmt: skip
    big, small = f"{url}/services/payments/api", f"{url}/services/payments/ledger"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sign_in(page, url, tokens["bob"])
            for target in (big, small, big, small):  # warm-up: templates, pools, caches
                load(page, target)
            loads: dict[str, list[dict[str, Any]]] = {big: [], small: []}
            for i in range(args.loads):
                for target in (big, small) if i % 2 == 0 else (small, big):
                    loads[target].append(load(page, target))
                say(
                    f"load {i + 1}/{args.loads}: 1,000 rows interactive "
                    f"{loads[big][-1]['dcl']:.0f} ms, baseline {loads[small][-1]['dcl']:.0f} ms"
                )
            shown = loads[big][-1]["rows"]
            say(f"rows in #history: {shown} (payments/api), {loads[small][-1]['rows']} "
                f"(baseline); HTML {loads[big][-1]['bytes']} and {loads[small][-1]['bytes']} "
                "bytes")  # fmt: skip

            page.goto(big)
            page.wait_for_function(LIVE, timeout=WAIT_MS)
            page.evaluate(WATCH)
            updates = []
            for i in range(args.updates):
                version = f"9.{i}.0"
                written = time.time()
                ledger.add(tables.Deployment(
                    tenant="payments", service="api", version=version, digest="f" * 64,
                    environment="staging", cluster="staging", actor="worker w1",
                    result="succeeded", reason="", started=datetime.now(UTC),
                    finished=datetime.now(UTC),
                ))  # fmt: skip
                page.wait_for_function(f"() => '{version}' in window.seenAt", timeout=WAIT_MS)
                seen = page.evaluate(f"window.seenAt['{version}']")
                updates.append(seen - written * 1000)
                say(f"update {i + 1}/{args.updates}: visible after {updates[-1]:.0f} ms")
            assert page.evaluate("window.performance.getEntriesByType('navigation').length") == 1
            page.context.close()
            idle = {n: idle_cpu(browser, url, tokens["bob"], server_pid, n, args.idle_s)
                    for n in (1, args.pages)}  # fmt: skip
        finally:
            browser.close()

    # The raw JSON of the rows the page shows, over HTTP with bob's token.
    with httpx2.Client(base_url=f"{url}/api/v1", timeout=60, trust_env=False,
                       headers={"Authorization": f"Bearer {tokens['bob']}"}) as api:  # fmt: skip
        query = {"tenant": "payments", "service": "api", "limit": shown}
        assert api.get("/history", params=query).status_code == 200  # warm-up

        def history() -> None:
            answer = api.get("/history", params=query)
            assert answer.status_code == 200 and len(answer.json()["items"]) == shown

        raw = timed(history, args.loads)

    # The live stream's digest, as each open page's stream computes it 4x/s.
    repo = repository.load(repo_root)
    srv = Server(
        repo, ledger, identity.Reviewer(cluster.connect, cache_s=10), cluster_connector(repo)
    )
    views._fingerprint(srv, ["payments"])
    fingerprint = timed(lambda: views._fingerprint(srv, ["payments"]), 200)

    big_dcl = stats([x["dcl"] for x in loads[big]])
    big_fcp = stats([x["fcp"] for x in loads[big]])
    small_dcl = stats([x["dcl"] for x in loads[small]])
    small_fcp = stats([x["fcp"] for x in loads[small]])
    update = stats(updates)
    raw_ms = stats(raw)
    fp = stats(fingerprint)
    big_response = stats([x["response"] for x in loads[big]])
    small_response = stats([x["response"] for x in loads[small]])
    say(
        f"1,000 rows: response end {big_response}, first paint {big_fcp}, "
        f"interactive (DCL end) {big_dcl}"
    )
    say(f"baseline: response end {small_response}")
    say(f"baseline, {args.baseline_rows} rows: first paint {small_fcp}, interactive {small_dcl}")
    say(f"GET /api/v1/history of the {shown} rows shown: {raw_ms}")
    say(f"write -> visible on the open page: {update}")
    say(f"_fingerprint: {fp}")
    return {
        "dashboard_load_ms": big_dcl["median"],
        "dashboard_load_p95_ms": big_dcl["p95"],
        "dashboard_first_paint_ms": big_fcp["median"],
        "dashboard_first_paint_p95_ms": big_fcp["p95"],
        "dashboard_update_ms": update["median"],
        "dashboard_update_p95_ms": update["p95"],
        "baseline_load_ms": small_dcl["median"],
        "baseline_load_p95_ms": small_dcl["p95"],
        "baseline_first_paint_ms": small_fcp["median"],
        "dashboard_response_ms": big_response["median"],
        "baseline_response_ms": small_response["median"],
        "history_api_ms": raw_ms["median"],
        "fingerprint_ms": fp["median"],
        "fingerprint_p95_ms": fp["p95"],
        "history_rows_in_ledger": args.rows,
        "history_rows_shown": shown,
        "page_bytes": loads[big][-1]["bytes"],
        "baseline_page_bytes": loads[small][-1]["bytes"],
        "loads": args.loads,
        "updates": args.updates,
        "fingerprint_calls": 200,
        "idle_cpu_1_page_percent": round(idle[1], 1),
        f"idle_cpu_{args.pages}_pages_percent": round(idle[args.pages], 1),
    }


if __name__ == "__main__":
    main()
