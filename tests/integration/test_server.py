"""The Tenantry server over HTTP: identities proven by the real API server's TokenReview,
rights from the tenant files, production work done by a real worker process — never by
the terminal that asked. Real clusters, Helm, S3/SQS, SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml
from sqlalchemy import select

from tenantry import aws, processes
from tenantry.aws import wiring
from tenantry.kube import localcluster
from tenantry.ledger import Ledger, now, tables
from tenantry.tenancy import reconcile
from tests.integration.test_delivery import Platform, offboard, publish
from tests.integration.test_promotion import chart_in, production
from tests.integration.test_promotion import production_platform as with_production
from tests.waiting import wait_for

__all__ = ["production"]  # the module's production clusters, shared with test_promotion

READY_S = 60


def server_platform(root: Path, staging: str, prod: tuple[str, str]) -> Platform:
    """echo (owners alice and bob, member erin and group echo-devs) and other (carol),
    staging and production; the session cluster proves identities; dana administers."""
    p = with_production(root, staging, prod)
    data = yaml.safe_load((p.root / "platform.yaml").read_text())
    data["server"] = {"managementCluster": staging, "admins": {"users": ["dana"]},
                      "reviewCacheS": 5}  # fmt: skip
    (p.root / "platform.yaml").write_text(yaml.safe_dump(data))
    echo = yaml.safe_load((p.root / "tenants" / "echo.yaml").read_text())
    echo["owners"] = {"users": ["alice", "bob"]}
    echo["members"] = {"users": ["erin"], "groups": ["echo-devs"]}
    (p.root / "tenants" / "echo.yaml").write_text(yaml.safe_dump(echo))
    (p.root / "tenants" / "other.yaml").write_text(yaml.safe_dump(
        {"name": "other", "owners": {"users": ["carol"]}, "environments": ["staging"]}
    ))  # fmt: skip
    p.commit("people")
    return p


def start(
    name: str, argv: list[str], *, port: int, env: dict[str, str], logs: Path
) -> subprocess.Popen[bytes]:
    """A process of its own session, ready when it answers on ``port``."""
    with (logs / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env}, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + READY_S
    while not processes.answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"{name} did not answer within {READY_S} s:\n"
                        + (logs / f"{name}.log").read_text()[-3000:])  # fmt: skip
        time.sleep(0.1)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a worker finishes what it holds), then wait for it."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Running:
    """The server (and a worker) on a platform repository."""

    url: str
    platform: Platform
    database: str
    logs: Path

    def as_(self, token: str | None) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx2.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=60,
                             trust_env=False)  # fmt: skip


def tenantry_server(root: Path, database: str, logs: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = processes.free_port()
    pid = start("server", [sys.executable, "-m", "tenantry", "server", "--repo", str(root),
                           "--port", str(port)],
                port=port, env={"TENANTRY_DATABASE_URL": database}, logs=logs)  # fmt: skip
    return f"http://127.0.0.1:{port}", pid


@pytest.fixture(scope="module")
def running(
    cluster: localcluster.LocalCluster, production: tuple[str, str], aws_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:  # fmt: skip
    root = tmp_path_factory.mktemp("server")
    p = server_platform(root / "platform", cluster.name, production)
    repo = p.load()
    reconcile.apply_all(repo)
    wiring.setup(aws.clients(repo.platform), repo.platform)
    database = f"sqlite:///{root / 'ledger.sqlite'}"
    Ledger.open(database).close()  # migrated once, before two processes open it
    url, server_pid = tenantry_server(p.root, database, root)
    metrics = processes.free_port()
    worker_pid = start("worker", [sys.executable, "-m", "tenantry", "deployer", "--repo",
                                  str(p.root), "--worker", "w1", "--wait", "1",
                                  "--metrics-port", str(metrics)],
                       port=metrics, env={"TENANTRY_DATABASE_URL": database}, logs=root)  # fmt: skip
    try:
        yield Running(url, p, database, root)
    finally:
        stop(worker_pid)
        stop(server_pid)
        for name in (cluster.name, *production):
            subprocess.run(["helm", "uninstall", "web", "-n", "echo", "--kubeconfig",
                            str(localcluster.get(name).kubeconfig)], capture_output=True,
                           check=False)  # fmt: skip
        offboard(root)


@pytest.fixture(scope="module")
def seeded(running: Running) -> dict[str, int]:
    """A promotion that is no longer pending and a finished canary: rights are checked
    before state, so an allowed caller gets 409 (state) where a refused one gets 403."""
    with Ledger.open(running.database) as ledger:
        promotion = ledger.add(tables.Promotion(
            tenant="echo", service="web", version="0.0.1", digest="0" * 64,
            environment="production", requested_by="erin", requested_at=now(),
            status="rejected", reason="seeded",
        ))  # fmt: skip
        ledger.add(tables.Canary(tenant="echo", service="web", version="0.0.1", step=3,
                                 weight=0, passes=3, failures=0, status="promoted",
                                 reason="seeded", updated=now()))  # fmt: skip
    return {"promotion": promotion.id}


# (method, path, body) per right, on tenant echo; {promotion} is the seeded one.
ACTIONS = {
    "read": ("GET", "/tenants/echo", None),
    "request": ("POST", "/promotions", {"service": "echo/web", "version": "9.9.9"}),
    "approve": ("POST", "/promotions/{promotion}/approve", None),
    "reject": ("POST", "/promotions/{promotion}/reject", None),
    "rollback": ("POST", "/rollbacks", {"service": "echo/web", "environment": "production"}),
    "pause": ("POST", "/canaries/echo/web/pause", None),
    "abort": ("POST", "/canaries/echo/web/abort", None),
    "audit": ("GET", "/audit", None),
    "secrets": ("PUT", "/tenants/echo/secrets/staging/matrix/key", {"value": "eA=="}),
}
# 409: allowed, but the state forbids it (not what staging runs, not pending, never
# deployed, canary finished); 404: another tenant's, as if it did not exist.
MATRIX = {
    "anonymous": dict.fromkeys(ACTIONS, 401),
    "bad-token": dict.fromkeys(ACTIONS, 401),
    "erin": {"read": 200, "request": 409, "approve": 403, "reject": 403, "rollback": 403,
             "pause": 403, "abort": 403, "audit": 403, "secrets": 403},
    "devs-member": {"read": 200, "request": 409, "approve": 403, "reject": 403,
                    "rollback": 403, "pause": 403, "abort": 403, "audit": 403, "secrets": 403},
    "alice": {"read": 200, "request": 409, "approve": 409, "reject": 409, "rollback": 409,
              "pause": 409, "abort": 409, "audit": 403, "secrets": 200},
    "carol": {"read": 404, "request": 404, "approve": 404, "reject": 404, "rollback": 404,
              "pause": 404, "abort": 404, "audit": 403, "secrets": 404},
    "dana": {"read": 200, "request": 409, "approve": 409, "reject": 409, "rollback": 409,
             "pause": 409, "abort": 409, "audit": 200, "secrets": 200},
}  # fmt: skip


def token_of(who: str, tokens: dict[str, str]) -> str | None:
    return {"anonymous": None, "bad-token": "not-a-token"}.get(who, tokens.get(who))


@pytest.mark.parametrize("who", list(MATRIX))
def test_every_right_for_every_kind_of_caller(
    running: Running, seeded: dict[str, int], tokens: dict[str, str], who: str
) -> None:
    got = {}
    with running.as_(token_of(who, tokens)) as api:
        for right, (method, path, body) in ACTIONS.items():
            answer = api.request(method, path.format(**seeded), json=body)
            got[right] = answer.status_code
            if answer.status_code == 403:
                refusal = answer.json()
                assert refusal["right"] == right and refusal["holders"], refusal
            if answer.status_code == 401:
                assert answer.headers["www-authenticate"] == "Bearer"
    assert got == MATRIX[who]


def test_the_token_not_a_header_says_who_you_are(running: Running, tokens: dict[str, str]) -> None:
    with running.as_(tokens["devs-member"]) as api:
        me = api.get("/whoami").json()
    assert me == {"username": "devs-member", "groups": ["echo-devs", "system:authenticated"],
                  "admin": False, "tenants": {"echo": "member"}}  # fmt: skip
    with running.as_(tokens["dana"]) as api:
        assert api.get("/whoami").json()["tenants"] == {"echo": "admin", "other": "admin"}
    with running.as_(tokens["carol"]) as api:
        assert [t["name"] for t in api.get("/tenants").json()] == ["other"]
        assert api.get("/history", params={"tenant": "echo"}).status_code == 404
        # TENANTRY_ACTOR is gone: nothing but the token decides.
        assert api.get("/whoami", headers={"X-Tenantry-Actor": "dana"}).json()["admin"] is False


def test_malformed_requests_name_the_field(running: Running, tokens: dict[str, str]) -> None:
    with running.as_(tokens["alice"]) as api:
        bad_version = api.post("/promotions", json={"service": "echo/web", "version": "latest"})
        extra = api.post("/promotions", json={"service": "echo/web", "version": "1.0.0",
                                              "approvedBy": "bob"})  # fmt: skip
        unknown = api.post("/promotions/999999/approve")
    assert bad_version.status_code == extra.status_code == 422
    assert [d["loc"] for d in bad_version.json()["detail"]] == [["body", "version"]]
    assert [d["loc"] for d in extra.json()["detail"]] == [["body", "approvedBy"]]
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "no promotion 999999 that you may see"


def ship(running: Running, tokens: dict[str, str], version: str) -> None:
    """Publish ``version``; the worker process brings it to staging."""
    running.platform.write(version)
    running.platform.commit(version)
    with Ledger.open(running.database) as ledger:
        publish(running.platform, ledger)

    def in_staging() -> bool:
        with running.as_(tokens["alice"]) as api:
            items = api.get("/history", params={"environment": "staging"}).json()["items"]
        return any(i["version"] == version and i["result"] == "succeeded" for i in items)

    wait_for(in_staging, f"echo/web {version} in staging", timeout_s=120, poll_s=0.25)


def operation(running: Running, token: str, number: int) -> dict:
    with running.as_(token) as api:
        answer = api.get(f"/operations/{number}")
        assert answer.status_code == 200, answer.text
        return answer.json()


def test_an_owner_approves_anothers_request_and_the_workers_deploy_it_after_the_cli_dies(
    running: Running, tokens: dict[str, str], production: tuple[str, str]
) -> None:
    ship(running, tokens, "1.0.0")
    with running.as_(tokens["alice"]) as api:
        requested = api.post("/promotions", json={"service": "echo/web", "version": "1.0.0"})
        assert requested.status_code == 201, requested.text
        number = requested.json()["id"]
        own = api.post(f"/promotions/{number}/approve")
    assert own.status_code == 403
    assert "alice requested this promotion and cannot also approve it" in own.json()["error"]

    cli = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "approve", str(number)],
        env={**os.environ, "TENANTRY_SERVER": running.url, "TENANTRY_TOKEN": tokens["bob"]},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    stderr = cli.stderr
    assert stderr is not None
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(iter(stderr.readline, "")))
    reader.start()
    # The CLI has its answer once it says so; the promotion's new status alone may reach
    # the ledger before the CLI has read the server's reply.
    wait_for(lambda: any("approved; the workers carry it out as operation" in line
                         for line in list(said)), "the CLI's approval line", timeout_s=120,
             poll_s=0.25)  # fmt: skip
    cli.kill()  # the approver's terminal goes away mid-rollout
    cli.communicate()
    reader.join()
    (queued,) = [
        o
        for o in _operations(running)
        if o.kind == "approve" and f'"promotion": {number}' in o.params
    ]

    wait_for(lambda: operation(running, tokens["alice"], queued.id)["status"]
             in ("succeeded", "failed"), f"operation {queued.id}", timeout_s=120, poll_s=0.25)  # fmt: skip
    done = operation(running, tokens["alice"], queued.id)
    assert (done["status"], done["requestedBy"], done["worker"]) == ("succeeded", "bob", "w1")
    primary, canary = production
    assert chart_in(canary) == chart_in(primary) == "web-1.0.0"
    with running.as_(tokens["erin"]) as api:
        history = api.get("/history", params={"environment": "production"}).json()["items"]
        promotion = api.get(f"/promotions/{number}").json()
    assert {(h["cluster"], h["actor"]) for h in history} == {
        (canary, f"bob (approved #{number})"), (primary, f"bob (approved #{number})"),
    }  # fmt: skip
    assert (promotion["status"], promotion["approvedBy"]) == ("deployed", "bob")


def test_a_tenant_and_a_service_as_their_people_see_them(
    running: Running, tokens: dict[str, str], cluster: localcluster.LocalCluster,
    production: tuple[str, str],
) -> None:  # fmt: skip
    with running.as_(tokens["erin"]) as api:
        tenant = api.get("/tenants/echo").json()
        service = api.get("/services/echo/web").json()
    primary, canary = production
    assert {(q["environment"], q["cluster"]) for q in tenant["quota"]} == {
        ("staging", cluster.name), ("production", primary), ("production", canary),
    }  # fmt: skip
    for quota in tenant["quota"]:  # the ResourceQuota's own status, from each cluster
        assert quota["hard"]["limits.cpu"] == "4", quota

    def pods_counted() -> bool:
        # The quota controller recounts usage on its own schedule after a pod starts.
        with running.as_(tokens["erin"]) as api:
            quotas = api.get("/tenants/echo").json()["quota"]
        return all(q["used"]["pods"] == "1" for q in quotas)

    wait_for(pods_counted, "one pod counted in every cluster's quota", timeout_s=60, poll_s=0.5)
    assert (tenant["owners"]["users"], tenant["members"]["groups"]) == (["alice", "bob"],
                                                                        ["echo-devs"])  # fmt: skip
    (published,) = [p for p in service["published"] if p["version"] == "1.0.0"]
    assert published["author"] == "Dev <dev@example.com>" and len(published["commit"]) == 40
    assert {(r["cluster"], r["version"], r["ready"], r["desired"]) for r in service["running"]} == {
        (cluster.name, "1.0.0", 1, 1), (primary, "1.0.0", 1, 1), (canary, "1.0.0", 1, 1),
    }  # fmt: skip


def _operations(running: Running) -> list[tables.Operation]:
    with Ledger.open(running.database) as ledger, ledger.session() as session:
        return list(session.query(tables.Operation).order_by(tables.Operation.id))


def test_two_concurrent_approvals_deploy_once(running: Running, tokens: dict[str, str]) -> None:
    with running.as_(tokens["erin"]) as api:
        requested = api.post("/promotions", json={"service": "echo/web", "version": "1.0.0"})
    assert requested.status_code == 201, requested.text
    number = requested.json()["id"]
    before = len(_operations(running))
    statuses: list[int] = []
    go = threading.Barrier(2)

    def approve(who: str) -> None:
        with running.as_(tokens[who]) as api:
            go.wait()
            statuses.append(api.post(f"/promotions/{number}/approve").status_code)

    threads = [threading.Thread(target=approve, args=(who,)) for who in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202, 409]
    (only,) = _operations(running)[before:]
    wait_for(lambda: operation(running, tokens["erin"], only.id)["status"] == "succeeded",
             f"operation {only.id}", timeout_s=120, poll_s=0.25)  # fmt: skip


def test_a_rollback_is_carried_out_by_the_workers_and_followed_as_events(
    running: Running, tokens: dict[str, str], production: tuple[str, str]
) -> None:
    ship(running, tokens, "1.1.0")
    with running.as_(tokens["erin"]) as api:
        number = api.post("/promotions", json={"service": "echo/web", "version": "1.1.0"}).json()[
            "id"
        ]
    with running.as_(tokens["bob"]) as api:
        queued = api.post(f"/promotions/{number}/approve").json()["operation"]["id"]
    wait_for(lambda: operation(running, tokens["bob"], queued)["status"] == "succeeded",
             f"operation {queued}", timeout_s=120, poll_s=0.25)  # fmt: skip
    primary, _ = production
    assert chart_in(primary) == "web-1.1.0"

    with running.as_(tokens["erin"]) as api:
        assert api.post("/rollbacks", json={"service": "echo/web",
                                            "environment": "production"}).status_code == 403  # fmt: skip
    with running.as_(tokens["alice"]) as api:
        answer = api.post("/rollbacks", json={"service": "echo/web", "environment": "production"})
        assert answer.status_code == 202, answer.text
        assert (answer.json()["rollback"]["current"], answer.json()["rollback"]["target"]) == (
            "1.1.0", "1.0.0",
        )  # fmt: skip
        number = answer.json()["operation"]["id"]
        events = []
        with api.stream("GET", f"/operations/{number}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
    assert events[0] == "progress" and events[-1] == "end"
    done = operation(running, tokens["alice"], number)
    assert done["status"] == "succeeded", done
    assert done["progress"][0] == "rolling echo/web back in production: 1.1.0 → 1.0.0"
    assert chart_in(primary) == "web-1.0.0"


def test_every_call_is_audited_with_the_proven_identity_and_no_token(
    running: Running, tokens: dict[str, str]
) -> None:
    with running.as_(tokens["dana"]) as api:
        items = api.get("/audit", params={"limit": 1000}).json()["items"]
    refused = [i for i in items if i["actor"] == "alice" and i["status"] == 403]
    assert any(i["action"] == "POST /api/v1/promotions/{promotion_id}/approve"
               and i["tenant"] == "echo" for i in refused)  # fmt: skip
    assert any(i["actor"] == "anonymous" and i["status"] == 401 for i in items)
    with Ledger.open(running.database) as ledger:
        everything = repr([vars(r) for r in ledger.audit_log(tenants=None, limit=10_000)])
    logs = (running.logs / "server.log").read_text() + (running.logs / "worker.log").read_text()
    for token in tokens.values():
        assert token not in everything and token not in logs


def test_the_database_down_is_503_and_nothing_written(
    running: Running, tokens: dict[str, str], tmp_path: Path
) -> None:
    from tenantry.local import postgres

    with postgres.server() as database:
        Ledger.open(database).close()
        url, pid = tenantry_server(running.platform.root, database, tmp_path)
        try:
            with running.as_(tokens["alice"]) as api:
                up = api.get(f"{url}/api/v1/history")
        except BaseException:
            stop(pid)
            raise
    try:  # PostgreSQL is stopped now
        with running.as_(tokens["alice"]) as api:
            down = api.post(f"{url}/api/v1/promotions",
                            json={"service": "echo/web", "version": "1.0.0"})  # fmt: skip
    finally:
        stop(pid)
    assert up.status_code == 200
    assert down.status_code == 503
    assert down.json()["error"] == "the ledger database is unreachable; nothing was changed"
    assert "postgres" not in down.text


def test_an_unreachable_management_cluster_is_503(
    running: Running, tokens: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "platform"
    subprocess.run(["git", "clone", "-q", str(running.platform.root), str(root)], check=True)
    closed = processes.free_port()
    (root / "nowhere.kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{closed}",
                                                     "insecure-skip-tls-verify": True}}],
        "users": [{"name": "nowhere", "user": {"token": "unused"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nowhere"}}],
    }))  # fmt: skip
    data = yaml.safe_load((root / "platform.yaml").read_text())
    data["environments"].append({"name": "management", "clusters": [
        {"name": "nowhere", "kubeconfig": "nowhere.kubeconfig"}]})  # fmt: skip
    data["server"]["managementCluster"] = "nowhere"
    (root / "platform.yaml").write_text(yaml.safe_dump(data))
    url, pid = tenantry_server(root, f"sqlite:///{tmp_path / 'ledger.sqlite'}", tmp_path)
    try:
        with running.as_(tokens["alice"]) as api:
            answer = api.get(f"{url}/api/v1/whoami")
    finally:
        stop(pid)
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("the management cluster could not review the token")


def test_a_serviceaccount_token_works_until_it_is_revoked(
    running: Running, cluster: localcluster.LocalCluster, namespace: str
) -> None:
    """Whatever the management cluster accepts works — here a bound ServiceAccount token —
    and a revoked one stops working once the short review cache lapses."""
    kubectl = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    subprocess.run([*kubectl, "create", "serviceaccount", "ci"], check=True, capture_output=True)
    subprocess.run([*kubectl, "create", "secret", "generic", "anchor"], check=True,
                   capture_output=True)  # fmt: skip
    token = subprocess.run(
        [*kubectl, "create", "token", "ci", "--bound-object-kind", "Secret",
         "--bound-object-name", "anchor"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with running.as_(token) as api:
        me = api.get("/whoami")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == f"system:serviceaccount:{namespace}:ci"
    assert me.json()["tenants"] == {}  # a proven identity with no rights sees nothing

    subprocess.run([*kubectl, "delete", "secret", "anchor"], check=True, capture_output=True)

    def refused() -> bool:
        with running.as_(token) as api:
            return api.get("/whoami").status_code == 401

    # reviewCacheS is 5 in this platform: a revoked token is refused soon after.
    wait_for(refused, "the revoked token to be refused", timeout_s=30)


def cli(*args: str, stdin: str = "", env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantry", *args], input=stdin, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=120,
                          check=False)  # fmt: skip


def test_login_keeps_the_token_private_and_refuses_a_bad_one(
    running: Running, seeded: dict[str, int], tokens: dict[str, str], tmp_path: Path
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    bad = cli("login", "--server", running.url, stdin="not-a-token\n", env=env)
    assert bad.returncode == 1
    assert "the token is unknown, expired or revoked (HTTP 401)" in bad.stderr
    assert not (tmp_path / "config" / "tenantry" / "client.yaml").exists()

    good = cli("login", "--server", running.url, stdin=tokens["erin"] + "\n", env=env)
    assert good.returncode == 0, good.stderr
    config = tmp_path / "config" / "tenantry" / "client.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
    me = cli("-o", "json", "whoami", env=env)
    assert json.loads(me.stdout)["username"] == "erin"
    refused = cli("approve", str(seeded["promotion"]), env=env)  # erin requested it
    assert refused.returncode == 1
    assert "erin requested this promotion and cannot also approve it" in refused.stderr
    assert "fix: ask one of: owners of echo" in refused.stderr
    for result in (good, me, refused):
        assert tokens["erin"] not in result.stdout + result.stderr

    assert cli("logout", env=env).returncode == 0
    assert not config.exists()
    gone = cli("whoami", env={**env, "TENANTRY_SERVER": running.url})
    assert gone.returncode == 1 and f"no token for {running.url}" in gone.stderr


class ArgvWatch:
    """Every process's argument list on the machine, read while a command runs: a value
    must never be one (any process, not only Tenantry's: helm, kubectl, a shell)."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    self.seen.add(cmdline.read_bytes())
                except OSError:
                    continue

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _secret_in(cluster: str, name: str) -> dict[str, bytes] | None:
    from lightkube.resources.core_v1 import Secret

    from tenantry import errors
    from tenantry.kube.client import Kube

    with Kube.connect(localcluster.get(cluster).kubeconfig) as admin:
        try:
            found = admin.get(Secret, name, namespace="echo")
        except errors.NotFoundError:
            return None
    assert found.metadata is not None and found.metadata.labels is not None
    assert found.metadata.labels["tenantry.dev/secret"] == "true"
    return {k: base64.b64decode(v) for k, v in (found.data or {}).items()}


def test_an_owner_sets_a_secret_key_in_every_cluster_and_the_value_is_nowhere_else(
    running: Running, tokens: dict[str, str], production: tuple[str, str], tmp_path: Path
) -> None:
    value = f"pw-{secrets.token_hex(16)}"
    as_ = {who: {"XDG_CONFIG_HOME": str(tmp_path / who), "TENANTRY_SERVER": running.url,
                 "TENANTRY_TOKEN": tokens[who]} for who in ("alice", "erin", "carol")}  # fmt: skip
    outputs = []
    with ArgvWatch() as argv:
        done = cli("-o", "json", "secrets", "set", "echo/db", "password", "--env", "production",
                   stdin=value + "\n", env=as_["alice"])  # fmt: skip
    outputs.append(done)
    assert done.returncode == 0, done.stderr
    change = json.loads(done.stdout)
    assert (change["version"], change["changedBy"], change["result"]) == (1, "alice", "done")
    for name in production:  # the primary and the canary, each as the tenant's deployer
        assert _secret_in(name, "db") == {"password": value.encode()}  # newline dropped
    assert not any(value.encode() in seen for seen in argv.seen)

    # A member lists names, keys, versions and who; never a value. Nobody else sees it.
    listed = cli("-o", "json", "secrets", "list", "echo", env=as_["erin"])
    outputs.append(listed)
    assert [(i["environment"], i["name"], i["key"], i["version"], i["changedBy"])
            for i in json.loads(listed.stdout) if i["name"] == "db"] == [
        ("production", "db", "password", 1, "alice")]  # fmt: skip
    member = cli("secrets", "set", "echo/db", "password", "--env", "production",
                 stdin="by-erin", env=as_["erin"])  # fmt: skip
    outputs.append(member)
    assert member.returncode == 1
    assert "erin lacks the right 'secrets' on tenant echo (HTTP 403)" in member.stderr
    assert "fix: ask one of: owners of echo" in member.stderr
    for args in (("secrets", "list", "echo"),
                 ("secrets", "set", "echo/db", "password", "--env", "production")):  # fmt: skip
        other = cli(*args, stdin="by-carol", env=as_["carol"])
        outputs.append(other)
        assert other.returncode == 1 and "no tenant 'echo' that you may see" in other.stderr

    # Bad input: refused with the reason, nothing written anywhere.
    argument = cli("secrets", "set", "echo/db", "password", value, "--env", "production",
                   env=as_["alice"])  # fmt: skip
    assert argument.returncode == 2 and "never given as an argument" in argument.stderr
    empty = cli("secrets", "set", "echo/db", "password", "--env", "production", stdin="",
                env=as_["alice"])  # fmt: skip
    assert empty.returncode == 2 and "the value is empty" in empty.stderr
    bad_env = cli("secrets", "set", "echo/db", "password", "--env", "qa", stdin="x",
                  env=as_["alice"])  # fmt: skip
    assert bad_env.returncode == 1
    assert "tenant echo does not deploy to environment 'qa'" in bad_env.stderr
    label = cli("secrets", "set", "echo/Db_1", "password", "--env", "production", stdin="x",
                env=as_["alice"])  # fmt: skip
    assert label.returncode == 2 and "secret name 'Db_1'" in label.stderr
    with running.as_(tokens["alice"]) as api:  # the server refuses it too, without echoing
        raw = api.put("/tenants/echo/secrets/production/Db_1/password",
                      json={"value": base64.b64encode(value.encode()).decode()})  # fmt: skip
        not_base64 = api.put("/tenants/echo/secrets/production/db/password",
                             json={"value": value + "!"})  # fmt: skip
    assert raw.status_code == 422 and "path.name" in raw.text
    assert not_base64.status_code == 422 and "value is not base64" in not_base64.text
    assert value not in raw.text + not_base64.text
    outputs += [argument, empty, bad_env, label]

    # Rotation: a new version in every cluster; deleting the last key deletes the Secret.
    rotated = f"pw-{secrets.token_hex(16)}"
    again = cli("-o", "json", "secrets", "set", "echo/db", "password", "--env", "production",
                stdin=rotated, env=as_["alice"])  # fmt: skip
    outputs.append(again)
    assert json.loads(again.stdout)["version"] == 2
    assert all(_secret_in(name, "db") == {"password": rotated.encode()} for name in production)
    gone = cli("secrets", "delete", "echo/db", "password", "--env", "production",
               env=as_["alice"])  # fmt: skip
    outputs.append(gone)
    assert gone.returncode == 0, gone.stderr
    assert all(_secret_in(name, "db") is None for name in production)

    # Not in any response, log line or ledger row (the audit log included).
    with Ledger.open(running.database) as ledger, ledger.session() as session:
        rows = repr([vars(row) for table in (tables.SecretChange, tables.Audit)
                     for row in session.scalars(select(table))])  # fmt: skip
    assert "echo" in rows and "password" in rows
    logs = (running.logs / "server.log").read_text() + (running.logs / "worker.log").read_text()
    for secret in (value, rotated):
        assert secret not in rows and secret not in logs
        assert all(secret not in o.stdout + o.stderr for o in outputs)
