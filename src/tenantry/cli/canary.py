"""`tenantry canary status|pause|resume|abort`: a canary rollout, through the server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tenantry import errors
from tenantry.cli import client, output

app = typer.Typer(help="Canary rollouts: status, pause, resume, abort.", no_args_is_help=True)

RefArgument = Annotated[str, typer.Argument(help="TEAM/SERVICE.")]


def _path(ref: str) -> str:
    tenant, _, service = ref.partition("/")
    if not tenant or not service:
        raise errors.UsageError(f"{ref!r} is not TEAM/SERVICE", fix="write it as payments/api")
    return f"/canaries/{tenant}/{service}"


@app.command("status")
def status_cmd(ctx: typer.Context, ref: RefArgument) -> None:
    """Show the newest canary rollout of a service: step, weight, passes, failures, why,
    and its last analysed intervals (verdict, canary vs primary success rate and p99).

    Example: tenantry canary status payments/api
    """
    rollout = client.Client.from_environment().call("GET", _path(ref))
    if ctx.obj.output != "table":
        output.emit(rollout, ctx.obj.output)
        return
    intervals = rollout.pop("intervals", [])
    output.emit(rollout, "table")
    output.emit([_interval_row(i) for i in intervals], "table",
                title="last intervals, oldest first (canary vs primary)")  # fmt: skip


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _requests(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _interval_row(interval: dict[str, Any]) -> dict[str, Any]:
    """One interval for people: units written out, "-" where Prometheus had no figure."""
    return {
        "at": interval["at"],
        "step": interval["step"],
        "weight": f"{interval['weight']} %",
        "verdict": interval["verdict"],
        "successRate": f"{_percent(interval['canarySuccessRate'])} vs "
        f"{_percent(interval['primarySuccessRate'])}",
        "p99": f"{_ms(interval['canaryP99Seconds'])} vs {_ms(interval['primaryP99Seconds'])}",
        "requests": f"{_requests(interval['canaryRequests'])} vs "
        f"{_requests(interval['primaryRequests'])}",
        "reason": interval["reason"],
    }


@app.command("pause")
def pause_cmd(ctx: typer.Context, ref: RefArgument) -> None:
    """Hold the rollout at its current weight (owners; the controller keeps it there).

    Example: tenantry canary pause payments/api
    """
    output.emit(client.Client.from_environment().call("POST", _path(ref) + "/pause"),
                ctx.obj.output)  # fmt: skip


@app.command("resume")
def resume_cmd(ctx: typer.Context, ref: RefArgument) -> None:
    """Let a paused rollout continue from where it stopped (owners).

    Example: tenantry canary resume payments/api
    """
    output.emit(client.Client.from_environment().call("POST", _path(ref) + "/resume"),
                ctx.obj.output)  # fmt: skip


@app.command("abort")
def abort_cmd(ctx: typer.Context, ref: RefArgument) -> None:
    """Stop the rollout (owners): the controller takes the canary out of traffic and
    rolls it back.

    Example: tenantry canary abort payments/api
    """
    output.emit(client.Client.from_environment().call("POST", _path(ref) + "/abort"),
                ctx.obj.output)  # fmt: skip
