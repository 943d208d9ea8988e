"""`tenantry aws setup`, `publish`, `deployer`: continuous delivery to staging (platform
commands); `history`, `promote`, `promotions`, `approve`, `reject`, `cancel`, `rollback`:
production through the Tenantry server, as its client; `retry`, `requests` and
`deadletters` (list, redrive): staging deploys again once their cause is fixed, through
the server too."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from prometheus_client import start_http_server

from tenantry import aws, errors
from tenantry.artifacts import publishing
from tenantry.aws import wiring
from tenantry.cli import client, output, services
from tenantry.cli import server as server_cli
from tenantry.cli.tenants import RepoOption
from tenantry.deploy import deployer as deploying
from tenantry.jobs import worker as jobs
from tenantry.ledger import Ledger, now
from tenantry.spec import repository

aws_app = typer.Typer(help="The platform's S3 bucket and SQS queues.", no_args_is_help=True)
deadletters_app = typer.Typer(
    help="The staging queue's dead-letter queue (platform admins, through the server).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the delivery commands to ``app``."""
    app.add_typer(aws_app, name="aws")
    app.command("publish")(publish_cmd)
    app.command("deployer")(deployer_cmd)
    app.command("history")(history_cmd)
    app.command("promote")(promote_cmd)
    app.command("promotions")(promotions_cmd)
    app.command("approve")(approve_cmd)
    app.command("reject")(reject_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("retry")(retry_cmd)
    app.command("requests")(requests_cmd)
    app.add_typer(deadletters_app, name="deadletters")


def _platform_aws(loaded: repository.Repository) -> aws.Clients:
    return aws.clients(loaded.platform)


def _store_clients(loaded: repository.Repository) -> aws.Clients | None:
    """S3 clients when the charts are in a bucket; None for an OCI registry."""
    return _platform_aws(loaded) if loaded.platform.bucket is not None else None


@aws_app.command("setup")
def setup_cmd(ctx: typer.Context, repo: RepoOption = Path()) -> None:
    """Create (or converge) the bucket, the queue, its dead-letter queue and the notification.

    Uses the artifacts and queue sections of platform.yaml; idempotent.

    Example: tenantry aws setup --repo examples/platform-repo
    """
    loaded = repository.load(repo.resolve())
    done = wiring.setup(_platform_aws(loaded), loaded.platform)
    output.emit(
        {"bucket": done.bucket, "queue": done.queue_url, "deadLetterQueue": done.dead_letter_url},
        ctx.obj.output,
    )


def publish_cmd(
    ctx: typer.Context,
    base: Annotated[
        str | None, typer.Option("--base", help="Git ref the change starts from.")
    ] = None,
    head: Annotated[str, typer.Option("--head", help="Git ref of the change.")] = "HEAD",
    all_services: Annotated[bool, typer.Option("--all", help="Publish every service.")] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for the deployer to release each to staging."),
    ] = 0.0,
    repo: RepoOption = Path(),
) -> None:
    """Package changed services with their provenance and upload them to the chart store
    (the S3 bucket, or the OCI registry of artifacts.kind: oci).

    Versions are immutable: the same version with the same content is a no-op, with
    different content an error. CI runs this on merge.

    Example: tenantry publish --base HEAD~1 --head HEAD
    """
    loaded = repository.load(repo.resolve())
    chosen = services.select(
        loaded, all_services=all_services, base=base, head=head, verb="publish"
    )
    with Ledger.open() as ledger:
        since = now()
        results = publishing.publish(
            loaded,
            chosen,
            clients=_store_clients(loaded),
            ledger=ledger,
            origin=publishing.provenance(loaded.root),
            on_done=lambda p: output.err_console.print(f"{p.ref} {p.version}: {p.result}"),
        )
        if wait > 0:
            _wait_for_staging(ledger, results, since=since, timeout_s=wait)
    output.emit(
        [{"service": r.ref, "version": r.version, "key": r.key, "result": r.result,
          "sha256": r.digest} for r in results],
        ctx.obj.output, title="published",
    )  # fmt: skip


def _wait_for_staging(
    ledger: Ledger, results: list[publishing.Published], *, since: datetime, timeout_s: float
) -> None:
    """Wait until the deployer has handled each publication's event (from the ledger)."""
    deadline = time.monotonic() + timeout_s
    # An unchanged version was not uploaded again, so no event follows it.
    pending = {r.key: r for r in results if r.result == "published"}
    while pending and time.monotonic() < deadline:
        for event in ledger.events(limit=500):
            published = pending.get(event.key)
            at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
            if published is None or at < since:
                continue
            if event.result in ("deployed", "skipped"):
                output.err_console.print(f"{published.ref} {published.version} in staging: "
                                         f"{event.result} ({event.reason})")  # fmt: skip
                del pending[event.key]
            elif event.result in ("dead-letter", "parked", "rejected", "invalid"):
                raise errors.TenantryError(
                    f"{published.ref} {published.version} did not reach staging: {event.reason}"
                )
        time.sleep(0.5)
    if pending:
        raise errors.WaitTimeoutError(
            f"not handled by the deployer within {timeout_s:.0f}s: {', '.join(sorted(pending))}",
            fix="is a deployer running? (tenantry up starts one; see its log)",
        )


def deployer_cmd(
    repo: RepoOption = Path(),
    worker: Annotated[
        str | None, typer.Option("--worker", help="This worker's name in the ledger.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve /metrics on 127.0.0.1:PORT.")
    ] = None,
    wait: Annotated[int, typer.Option("--wait", help="Long-poll seconds per receive.")] = 20,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            help="Seconds a lease (on a staging release, or on a production operation) lasts "
            "unless renewed: how soon another worker takes over the work of one that died.",
        ),
    ] = 30.0,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            max=32,
            help="Staging releases carried out at once from the queue, and as many from deploy "
            "requests (each its own helm run; messages are received only for free slots). 4 was "
            "fastest on 2 cores (bench/RESULTS.md).",
        ),
    ] = 4,
    helm_runs: Annotated[
        deploying.HelmRuns,
        typer.Option(
            "--helm",
            help="sdk: Helm's Go SDK in one helper process for the worker (no helm process "
            "per release); cli: a helm process per release.",
        ),
    ] = "sdk",
) -> None:
    """Run a worker: S3 upload → SQS event → helm upgrade --install to staging, the
    staging deploy requests in the ledger (the resync, retries, redrives), and the
    production operations the server queues (approved promotions, rollbacks).

    On start and every artifacts.resyncIntervalS one worker compares the newest published
    version of every service with what staging runs and queues what is newer and not
    parked: a lost event costs at most one interval.

    Runs until SIGTERM or Ctrl-C, finishing the work in hand. Several workers may
    share the queue and (with TENANTRY_DATABASE_URL) the ledger.

    Example: tenantry deployer --metrics-port 9464
    """
    loaded = repository.load(repo.resolve())
    # Charts in an OCI registry come with no queue: its notifications reach the server,
    # which queues deploy requests in the ledger.
    queue = loaded.queue() if loaded.platform.bucket is not None else None
    clients = _store_clients(loaded)
    ledger = Ledger.open()
    name = worker or f"{socket.gethostname()}-{os.getpid()}"
    metrics = deploying.Metrics()
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    options = deploying.Options(
        worker=name, wait_s=wait, lease_ttl_s=lease_ttl, concurrency=concurrency, helm=helm_runs
    )
    if queue:
        options = dataclasses.replace(options, max_receive_count=queue.max_receive_count,
                                      visibility_timeout_s=queue.visibility_timeout_s)  # fmt: skip
    worker_ = deploying.Deployer(
        loaded,
        clients=clients,
        queue_url=wiring.queue_url(clients, queue.name) if clients and queue else None,
        ledger=ledger,
        options=options,
        metrics=metrics,
        on_outcome=lambda o: output.err_console.print(f"{o.result}: {o.reason}", markup=False),
    )

    stop = threading.Event()
    job_worker = jobs.Worker(
        loaded, ledger, clients, name=name, lease_ttl_s=lease_ttl,
        log=lambda line: output.err_console.print(line, markup=False),
    )  # fmt: skip
    job_thread = threading.Thread(target=job_worker.run, args=(stop,), name="jobs")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        output.err_console.print(f"signal {signum}: finishing the work in hand, then exiting")
        worker_.stop()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consuming = f"consuming {queue.name}" if queue else "taking registry notifications' requests"
    output.err_console.print(f"deployer {name} {consuming} "
                             "and carrying out production operations")  # fmt: skip
    job_thread.start()
    try:
        worker_.run()
    finally:
        stop.set()
        job_thread.join()
        ledger.close()


def _table(rows: list[dict[str, object]], *keys: str) -> list[dict[str, object]]:
    return [{k: r.get(k) for k in keys} for r in rows]


def history_cmd(
    ctx: typer.Context,
    ref: Annotated[
        str | None, typer.Argument(help="TEAM/SERVICE (default: all you may see).")
    ] = None,
    environment: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    result: Annotated[str | None, typer.Option("--result", help="Only this result.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many deployments.")] = 20,
    before: Annotated[int | None, typer.Option("--before", help="Page: ids below this.")] = None,
) -> None:
    """Show deployments from the ledger, newest first (through the server).

    Example: tenantry history payments/api --env production --output json
    """
    tenant, service = _split(ref) if ref else (None, None)
    api = client.Client.from_environment()
    page = api.call(
        "GET", "/history", tenant=tenant, service=service, environment=environment,
        result=result, limit=limit, before=before,
    )  # fmt: skip
    rows = page["items"]
    if ctx.obj.output == "table":
        rows = _table(rows, "id", "service", "version", "environment", "cluster", "result",
                      "actor", "started", "reason")  # fmt: skip
        if page["next"]:
            output.err_console.print(f"older: --before {page['next']}")
        # A parked release is retried by nobody until someone asks: say so beside its
        # failed deploys, with the command that asks.
        for parked in api.call("GET", "/requests", tenant=tenant, service=service,
                               status="parked"):  # fmt: skip
            output.err_console.print(
                f"parked: {parked['service']} {parked['version']} in staging after "
                f"{parked['attempts'] or 'its'} failed attempts ({parked['lastError']}); once "
                f"fixed: tenantry retry {parked['service']} {parked['version']}", markup=False,
            )  # fmt: skip
    output.emit(rows if ctx.obj.output == "table" else page, ctx.obj.output,
                title=f"history of {ref or 'your services'}")  # fmt: skip


def _split(ref: str) -> tuple[str, str]:
    tenant, _, service = ref.partition("/")
    if not tenant or not service:
        raise errors.UsageError(f"{ref!r} is not TEAM/SERVICE", fix="write it as payments/api")
    return tenant, service


def promote_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    version: Annotated[str, typer.Argument(help="The version staging runs.")],
    to: Annotated[str, typer.Option("--to", help="The environment to promote to.")] = "production",
) -> None:
    """Request promotion of a version to production; an owner other than you approves it.

    The version must be the one staging runs, healthy there now. You are who your
    token says (`tenantry whoami`).

    Example: tenantry promote payments/api 1.4.0 --to production
    """
    _split(ref)
    row = client.Client.from_environment().call(
        "POST", "/promotions", body={"service": ref, "version": version, "environment": to}
    )
    output.emit(row, ctx.obj.output)
    output.err_console.print(
        f"approve with: tenantry approve {row['id']}  (an owner other than {row['requestedBy']})"
    )


def promotions_cmd(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only these: pending, deployed, ...")
    ] = None,
) -> None:
    """List promotion requests of your tenants, newest first.

    Example: tenantry promotions --status pending
    """
    rows = client.Client.from_environment().call("GET", "/promotions", status=status)
    output.emit(
        _table(rows, "id", "service", "version", "environment", "status", "requestedBy",
               "approvedBy", "reason") if ctx.obj.output == "table" else rows,
        ctx.obj.output, title="promotions",
    )  # fmt: skip


def approve_cmd(
    ctx: typer.Context,
    request: Annotated[int, typer.Argument(help="The promotion request's number.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the deploy until it ends.")
    ] = True,
) -> None:
    """Approve a promotion (owners, not the requester). The platform's workers deploy it:
    production canary cluster first, then primary.

    When platform.yaml has a traffic section, live traffic moves to the canary cluster
    step by step between the two deploys while its metrics are analysed; a failing
    canary is rolled back and the primary is never touched. The rollout runs on the
    platform's side: --wait only follows it, and closing this terminal changes nothing
    (`tenantry operation N --wait` follows it again).

    Example: tenantry approve 7
    """
    api = client.Client.from_environment()
    answer = api.call("POST", f"/promotions/{request}/approve")
    operation = answer["operation"]
    output.err_console.print(f"approved; the workers carry it out as operation {operation['id']}")
    view = server_cli.follow(api, int(operation["id"])) if wait else operation
    server_cli.show_operation(ctx, view)


RequestArgument = Annotated[int, typer.Argument(help="The promotion request's number.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")]


def _decline(ctx: typer.Context, request: int, verb: str, reason: str) -> None:
    row = client.Client.from_environment().call(
        "POST", f"/promotions/{request}/{verb}", body={"reason": reason}
    )
    output.emit(row, ctx.obj.output)


def reject_cmd(ctx: typer.Context, request: RequestArgument, reason: ReasonOption = "") -> None:
    """Reject a pending promotion request (owners).

    Example: tenantry reject 7 --reason "needs the migration first"
    """
    _decline(ctx, request, "reject", reason)


def cancel_cmd(ctx: typer.Context, request: RequestArgument, reason: ReasonOption = "") -> None:
    """Withdraw a pending promotion request (its requester, or owners).

    Example: tenantry cancel 7
    """
    _decline(ctx, request, "cancel", reason)


def rollback_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    env: Annotated[str, typer.Option("--env", help="The environment to roll back.")],
    to: Annotated[
        str | None, typer.Option("--to", help="The version to go back to (default: the previous).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the rollback until it ends.")
    ] = True,
) -> None:
    """Redeploy an earlier version that succeeded in an environment (owners). The
    platform's workers carry it out; --wait only follows.

    Example: tenantry rollback payments/api --env production --to 1.3.2
    """
    _split(ref)
    api = client.Client.from_environment()
    answer = api.call("POST", "/rollbacks",
                      body={"service": ref, "environment": env, "to": to})  # fmt: skip
    plan, operation = answer["rollback"], answer["operation"]
    output.err_console.print(f"rolling back {ref} in {env}: {plan['current']} → {plan['target']} "
                             f"(operation {operation['id']})")  # fmt: skip
    view = server_cli.follow(api, int(operation["id"])) if wait else operation
    server_cli.show_operation(ctx, view)


def retry_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    version: Annotated[str, typer.Argument(help="A published version.")],
) -> None:
    """Deploy a published version to staging again once the cause of its failure is fixed
    (owners): the workers deploy it; a parked release is unparked.

    A release that failed every attempt — its tenant not yet onboarded, a chart fixed in
    the cluster meanwhile — is parked and never retried on its own. Never a downgrade:
    a version older than what staging runs is skipped. `tenantry requests` follows it.

    Example: tenantry retry payments/api 1.4.0
    """
    _split(ref)
    answer = client.Client.from_environment().call(
        "POST", "/retries", body={"service": ref, "version": version}
    )
    row = answer["request"]
    output.err_console.print(f"{ref} {version}: deploy request {row['id']} {answer['outcome']}; "
                             "the workers deploy it to staging")  # fmt: skip
    output.emit(row, ctx.obj.output)


def requests_cmd(
    ctx: typer.Context,
    ref: Annotated[
        str | None, typer.Argument(help="TEAM/SERVICE (default: all you may see).")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only these: queued, parked, failed, ...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many requests.")] = 20,
) -> None:
    """Staging deploy requests (from the resync, retries, redrives), newest first.

    Example: tenantry requests payments/api --status parked
    """
    tenant, service = _split(ref) if ref else (None, None)
    rows = client.Client.from_environment().call(
        "GET", "/requests", tenant=tenant, service=service, status=status, limit=limit
    )
    output.emit(
        _table(rows, "id", "service", "version", "source", "requestedBy", "status", "attempts",
               "lastError") if ctx.obj.output == "table" else rows,
        ctx.obj.output, title="deploy requests",
    )  # fmt: skip


@deadletters_app.command("list")
def deadletters_list_cmd(ctx: typer.Context) -> None:
    """The messages in the dead-letter queue and the releases they name (admins).

    Example: tenantry deadletters list
    """
    rows = client.Client.from_environment().call("GET", "/deadletters")
    output.emit(
        [{"messageId": r["messageId"], "receives": r["receives"],
          "releases": ", ".join(r["releases"]), "problem": r["problem"] or ""} for r in rows]
        if ctx.obj.output == "table" else rows,
        ctx.obj.output, title="dead letters",
    )  # fmt: skip


@deadletters_app.command("redrive")
def deadletters_redrive_cmd(ctx: typer.Context) -> None:
    """Turn every dead letter into a staging deploy request (admins), once the cause is
    fixed; the workers deploy them. Messages that name no known chart are kept.

    Example: tenantry deadletters redrive
    """
    answer = client.Client.from_environment().call("POST", "/deadletters/redrive")
    rows = [{"messageId": r["messageId"], "release": q["release"], "request": q["request"],
             "outcome": q["outcome"], "kept": ""}
            for r in answer["redriven"] for q in r["requests"]]  # fmt: skip
    rows += [{"messageId": k["messageId"], "release": "", "request": None, "outcome": "kept",
              "kept": k["reason"]} for k in answer["kept"]]  # fmt: skip
    output.emit(rows if ctx.obj.output == "table" else answer, ctx.obj.output,
                title="redriven")  # fmt: skip
