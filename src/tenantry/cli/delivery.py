"""`tenantry aws setup`, `publish`, `deployer`, `history`: continuous delivery to staging."""

from __future__ import annotations

import os
import signal
import socket
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
from tenantry.cli import output, services
from tenantry.cli.tenants import RepoOption
from tenantry.deploy import deployer as deploying
from tenantry.deploy import promotion
from tenantry.ledger import Ledger, now
from tenantry.spec import repository

aws_app = typer.Typer(help="The platform's S3 bucket and SQS queues.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the delivery commands to ``app``."""
    app.add_typer(aws_app, name="aws")
    app.command("publish")(publish_cmd)
    app.command("deployer")(deployer_cmd)
    app.command("history")(history_cmd)
    app.command("promote")(promote_cmd)
    app.command("approve")(approve_cmd)
    app.command("rollback")(rollback_cmd)


def _platform_aws(loaded: repository.Repository) -> aws.Clients:
    return aws.clients(loaded.platform)


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
    """Package changed services with their provenance and upload them to the chart bucket.

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
            clients=_platform_aws(loaded),
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
            elif event.result in ("dead-letter", "rejected", "invalid"):
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
        typer.Option("--lease-ttl", help="Seconds a release's lease lasts unless renewed."),
    ] = 60.0,
) -> None:
    """Run a deployer worker: S3 upload → SQS event → helm upgrade --install to staging.

    Runs until SIGTERM or Ctrl-C, finishing the message in hand. Several workers may
    share the queue and (with TENANTRY_DATABASE_URL) the ledger.

    Example: tenantry deployer --metrics-port 9464
    """
    loaded = repository.load(repo.resolve())
    assert loaded.platform.queue is not None
    clients = _platform_aws(loaded)
    ledger = Ledger.open()
    name = worker or f"{socket.gethostname()}-{os.getpid()}"
    metrics = deploying.Metrics()
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    worker_ = deploying.Deployer(
        loaded,
        clients=clients,
        queue_url=wiring.queue_url(clients, loaded.platform.queue.name),
        ledger=ledger,
        options=deploying.Options(
            worker=name,
            wait_s=wait,
            lease_ttl_s=lease_ttl,
            max_receive_count=loaded.platform.queue.max_receive_count,
            visibility_timeout_s=loaded.platform.queue.visibility_timeout_s,
        ),
        metrics=metrics,
        on_outcome=lambda o: output.err_console.print(f"{o.result}: {o.reason}", markup=False),
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        output.err_console.print(f"signal {signum}: finishing the message in hand, then exiting")
        worker_.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    output.err_console.print(f"deployer {name} consuming {loaded.platform.queue.name}")
    try:
        worker_.run()
    finally:
        ledger.close()


def history_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    limit: Annotated[int, typer.Option("--limit", help="How many deployments.")] = 20,
) -> None:
    """Show a service's deployments from the ledger, newest first.

    Example: tenantry history payments/api --output json
    """
    tenant, _, service = ref.partition("/")
    with Ledger.open() as ledger:
        rows = ledger.history(tenant=tenant, service=service, limit=limit)
    output.emit(
        [{"version": r.version, "environment": r.environment, "cluster": r.cluster,
          "result": r.result, "actor": r.actor, "started": r.started.isoformat(timespec="seconds"),
          "reason": r.reason} for r in rows],
        ctx.obj.output, title=f"history of {ref}",
    )  # fmt: skip


def promote_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    version: Annotated[str, typer.Argument(help="The version staging runs.")],
    to: Annotated[str, typer.Option("--to", help="The environment to promote to.")] = "production",
    repo: RepoOption = Path(),
) -> None:
    """Request promotion of a version to production; someone else must approve it.

    The version must be the one staging runs, healthy there now. The requester is
    $TENANTRY_ACTOR (else your login name).

    Example: tenantry promote payments/api 1.4.0 --to production
    """
    loaded = repository.load(repo.resolve())
    with Ledger.open() as ledger:
        row = promotion.request(
            loaded, ledger, ref=ref, version=version, environment=to, by=promotion.actor()
        )
    output.emit(
        {"request": row.id, "service": ref, "version": row.version, "environment": row.environment,
         "sha256": row.digest, "requestedBy": row.requested_by, "status": row.status},
        ctx.obj.output,
    )  # fmt: skip
    output.err_console.print(
        f"approve with: tenantry approve {row.id}  (by someone other than {row.requested_by})"
    )


def approve_cmd(
    ctx: typer.Context,
    request: Annotated[int, typer.Argument(help="The promotion request's number.")],
    repo: RepoOption = Path(),
) -> None:
    """Approve a promotion and deploy it: production canary cluster first, then primary.

    When platform.yaml has a traffic section, live traffic moves to the canary cluster
    step by step between the two deploys while its metrics are analysed; a failing
    canary is rolled back and the primary is never touched. Progress goes to stderr;
    `tenantry canary status TEAM/SERVICE` shows it from another shell.

    Example: TENANTRY_ACTOR=bob tenantry approve 7
    """
    loaded = repository.load(repo.resolve())
    with Ledger.open() as ledger:
        result = promotion.approve(
            loaded, ledger, _platform_aws(loaded), promotion_id=request, by=promotion.actor(),
            log=lambda line: output.err_console.print(f"canary: {line}", markup=False),
        )  # fmt: skip
    output.emit(
        {"request": request, "status": result.status, "reason": result.reason}, ctx.obj.output
    )
    if result.status != "deployed":
        raise typer.Exit(1)


def rollback_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    env: Annotated[str, typer.Option("--env", help="The environment to roll back.")],
    to: Annotated[
        str | None, typer.Option("--to", help="The version to go back to (default: the previous).")
    ] = None,
    repo: RepoOption = Path(),
) -> None:
    """Redeploy an earlier version that succeeded in an environment.

    Example: tenantry rollback payments/api --env production --to 1.3.2
    """
    loaded = repository.load(repo.resolve())
    with Ledger.open() as ledger:
        result = promotion.rollback(
            loaded, ledger, _platform_aws(loaded), ref=ref, environment=env, to_version=to,
            by=promotion.actor(),
        )  # fmt: skip
    output.emit({"service": ref, "status": result.status, "reason": result.reason}, ctx.obj.output)
    if result.status == "failed":
        raise typer.Exit(1)
