"""`tenantry monitoring`: the generated Prometheus, Alertmanager and log-shipper
configuration, and the local monitoring stack."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx2
import typer

from tenantry import errors, processes
from tenantry.cli import output
from tenantry.cli.tenants import RepoOption
from tenantry.local import monitoring as stack
from tenantry.local import platform as local_platform
from tenantry.local.receivers import KINDS
from tenantry.monitoring import files
from tenantry.observability import config, logs
from tenantry.observability.problems import Problem
from tenantry.spec import repository

app = typer.Typer(
    help="Monitoring, alerting and logging generated for every tenant.", no_args_is_help=True
)


def _report_problems(problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        output.err_console.print(f"skipped: {problem}", markup=False)


def _summary(rendered: files.Rendered) -> dict[str, object]:
    return {
        "directory": str(rendered.directory),
        "skipped": [str(p) for p in rendered.problems],
        "alertingSkipped": list(rendered.alerting_skipped),
    }


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the configuration to.")],
    hec_endpoint: Annotated[
        str, typer.Option(help="Splunk HEC URL the log shipper sends to.")
    ] = "https://splunk.example:8088/services/collector",
    repo: RepoOption = Path(),
) -> None:
    """Write prometheus.yml, rules/, targets/, alertmanager.yml and collector.yaml to OUT.

    Everything is checked with promtool and amtool before OUT is replaced. A tenant
    fragment that is invalid (a bad email, a rule selecting another tenant, a rule
    promtool rejects) is reported and skipped; every other tenant is still configured.
    Receiver secrets are referenced as files under OUT/secrets and never written here:
    `tenantry monitoring apply` resolves them.

    Example: tenantry monitoring render --out mon && promtool check config mon/prometheus.yml
    """
    loaded = repository.load(repo.resolve())
    out = out.resolve()
    shipper = logs.Shipper(hec_endpoint, str(out.parent / f"{out.name}-collector-state"), 13133)
    rendered = files.write(loaded, out, config.Settings(shipper=shipper))
    _report_problems(rendered.problems)
    output.emit(_summary(rendered), ctx.obj.output)


@app.command("apply")
def apply_cmd(ctx: typer.Context, repo: RepoOption = Path()) -> None:
    """Regenerate the running local stack's configuration and reload it.

    Reads the receivers' secrets (Slack webhook URLs, PagerDuty routing keys) from the
    platform's monitoring namespace on its first cluster into files only Alertmanager
    reads; a missing secret skips that tenant's alerting and says which Secret to create.
    Prometheus and Alertmanager reload over HTTP, the log shipper on SIGHUP.

    Example: tenantry monitoring apply --repo examples/platform-repo
    """
    loaded = repository.load(repo.resolve())
    values, problems = local_platform.receiver_secrets(loaded, seed_local=False)
    rendered = stack.apply(loaded, secret_values=values, secret_problems=problems,
                           platform_targets=local_platform.platform_targets(loaded))  # fmt: skip
    _report_problems(rendered.problems)
    output.emit(_summary(rendered), ctx.obj.output)


@app.command("status")
def status_cmd(ctx: typer.Context) -> None:
    """Show the local monitoring processes and where each answers.

    Example: tenantry monitoring status --output json
    """
    ports = stack.saved_ports()
    rows = []
    for name in stack.NAMES:
        process = processes.running(name)
        rows.append({"process": name, "running": process is not None,
                     "pid": process.pid if process else None,
                     "address": process.endpoint if process else "",
                     "log": str(processes.log_file(name))})  # fmt: skip
    output.emit(rows, ctx.obj.output, title="local monitoring")
    if ports is not None and ctx.obj.output == "table":
        output.err_console.print(
            f"Prometheus http://127.0.0.1:{ports.prometheus} · Alertmanager "
            f"http://127.0.0.1:{ports.alertmanager} · received: `tenantry monitoring received`"
        )


def _running() -> stack.Stack:
    found = stack.running()
    if found is None:
        raise errors.TenantryError(
            "the local monitoring stack is not running", fix="start it with `tenantry up`"
        )
    return found


@app.command("received")
def received_cmd(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of {', '.join(KINDS)}.")],
) -> None:
    """Show what the local stand-in receivers got (Slack, PagerDuty, email, Splunk HEC).

    Example: tenantry monitoring received slack --output json
    """
    if kind not in KINDS:
        raise errors.UsageError(f"unknown receiver {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    records = httpx2.get(f"{_running().receivers}/received/{kind}", timeout=10).json()
    if ctx.obj.output != "table":
        output.emit(records, ctx.obj.output)
        return
    rows = []
    for r in records:
        when = time.strftime("%H:%M:%S", time.localtime(r["received"]))
        if kind == "slack":
            titles = [a.get("title", "") for a in r["message"].get("attachments", [])]
            rows.append({"at": when, "webhook": r["path"], "alerts": "; ".join(titles)})
        elif kind == "pagerduty":
            event = r["event"]
            rows.append({"at": when, "action": event["event_action"],
                         "summary": event.get("payload", {}).get("summary", "")})  # fmt: skip
        elif kind == "email":
            rows.append({"at": when, "to": ", ".join(r["to"]), "subject": r["subject"]})
        else:
            rows.append({"at": when, "index": r.get("index", ""), "line": str(r["event"])[:80]})
    output.emit(rows, "table", title=f"received by the local {kind} receiver")


@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant to send a demo alert and log line.")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for both to arrive (0: do not wait).")
    ] = 60,
    repo: RepoOption = Path(),
) -> None:
    """Send one alert and one log line for TENANT through the local stack, to watch them
    arrive at its receivers.

    The alert is posted to Alertmanager's API as Prometheus would post it (alertname
    TenantryDemo, severity critical), so it takes the tenant's real route. The log line
    is written as a container log of a pod in the tenant's namespace (kwok runs no
    containers), so the log shipper routes it to the tenant's index.

    Example: tenantry monitoring demo payments && tenantry monitoring received slack
    """
    loaded = repository.load(repo.resolve())
    found = loaded.tenant(tenant)  # a clear error for an unknown tenant
    index = logs.index(found, loaded.platform)
    running = _running()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    directory = (
        Path(running.pod_logs) / f"{tenant}_demo-0_d3e00000-0000-4000-8000-000000000000" / "demo"
    )
    directory.mkdir(parents=True, exist_ok=True)
    line = f"demo log line for {tenant} at {now}"
    with (directory / "0.log").open("a") as log:
        log.write(f"{now} stdout F {line}\n")
    stack.post_alert(
        {"alertname": "TenantryDemo", "tenant": tenant, "service": "demo", "severity": "critical"},
        f"a demo alert for {tenant} (tenantry monitoring demo)",
    )
    started = time.monotonic()
    arrived = {"alert": False, "log": False}
    while wait and not all(arrived.values()) and time.monotonic() - started < wait:
        time.sleep(0.5)
        arrived["alert"] = (
            any(
                f"/slack/{tenant}" == r["path"] and "TenantryDemo" in str(r["message"])
                for r in httpx2.get(f"{running.receivers}/received/slack", timeout=10).json()
            )
            or not found.alerts.slack
        )
        arrived["log"] = any(
            r["event"] == line and r.get("index") == index
            for r in httpx2.get(f"{running.receivers}/received/hec", timeout=10).json()
        )
    if wait and not all(arrived.values()):
        missing = " and ".join(k for k, v in arrived.items() if not v)
        raise errors.TenantryError(
            f"the demo {missing} did not arrive within {wait:g} s",
            fix="see `tenantry monitoring status` and the logs it lists",
        )
    output.emit({"tenant": tenant, "alert": "TenantryDemo", "logLine": line,
                 "arrivedAfterSeconds": round(time.monotonic() - started, 2) if wait else None,
                 "see": "tenantry monitoring received slack|pagerduty|email|hec"},
                ctx.obj.output)  # fmt: skip
