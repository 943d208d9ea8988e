"""`tenantry secrets list|set|delete`: a tenant's secret keys, through the server.

A value is read from stdin (a prompt that does not echo on a terminal) or from a file,
never from an argument: arguments end up in shell histories, CI logs and every process
listing on the machine.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from tenantry import errors
from tenantry.cli import client, output
from tenantry.spec import models
from tenantry.spec.services import SECRET_KEY_PATTERN

app = typer.Typer(
    help="A tenant's secrets: keys set by its owners, read by its pods, never shown.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    """Add `tenantry secrets` to ``root``."""
    root.add_typer(app, name="secrets")


EnvOption = Annotated[str, typer.Option("--env", help="The environment, e.g. production.")]
RefArgument = Annotated[str, typer.Argument(help="TENANT/SECRET, e.g. payments/db.")]
KeyArgument = Annotated[str, typer.Argument(help="The key, e.g. password.")]


def _split(ref: str, key: str) -> tuple[str, str]:
    """TENANT/SECRET and the key, checked before anything is sent."""
    tenant, slash, name = ref.partition("/")
    if not slash or not tenant or not name or "/" in name:
        raise errors.UsageError(f"{ref!r} is not TENANT/SECRET", fix="e.g. payments/db")
    if (problem := models.dns_label_problem(name)) is not None:
        raise errors.UsageError(f"secret name {name!r}: {problem}", fix="e.g. payments/db")
    if not re.fullmatch(SECRET_KEY_PATTERN, key):
        raise errors.UsageError(
            f"{key!r} is not a Secret key", fix="letters, digits, '-', '_' and '.' (password)"
        )
    return tenant, name


def _no_value_arguments(extra: list[str] | None) -> None:
    if extra:
        # Not repeated here: it may be the value itself.
        raise errors.UsageError(
            f"{len(extra)} argument(s) too many: a value is never given as an argument "
            "(shell histories, CI logs and process listings would keep it)",
            fix='pipe it on stdin (printf %s "$VALUE" | tenantry secrets set ...) or '
            "pass --from-file PATH",
        )


def _read_value(from_file: Path | None) -> bytes:
    if from_file is not None:
        try:
            return from_file.read_bytes()
        except OSError as e:
            raise errors.UsageError(f"cannot read {from_file}: {e.strerror}",
                                    fix="pass a readable file") from None  # fmt: skip
    if sys.stdin.isatty():
        typed: str = typer.prompt("value", hide_input=True, confirmation_prompt=True)
        return typed.encode()
    value = sys.stdin.buffer.read()
    # `echo value | ...` adds a newline the value does not have.
    return value.removesuffix(b"\n").removesuffix(b"\r")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
) -> None:
    """The tenant's secret keys: environment, name, key, version, who changed it when, and
    whether every cluster has it. Never a value. Members and owners may list.

    Example: tenantry secrets list payments --env production
    """
    api = client.Client.from_environment()
    found = api.call("GET", f"/tenants/{tenant}/secrets", environment=env)
    output.emit(found["items"], ctx.obj.output, title="secret keys")


@app.command("set")
def set_cmd(
    ctx: typer.Context,
    ref: RefArgument,
    key: KeyArgument,
    env: EnvOption,
    extra: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Read the value from this file, byte for byte."),
    ] = None,
) -> None:
    """Set one key of a tenant's secret in every cluster of an environment (owners).

    The value comes from stdin (one trailing newline dropped; a hidden prompt on a
    terminal) or --from-file, never from an argument. The platform writes it into the
    tenant's namespace as the tenant's deployer; the ledger records who set which key
    and its version, never the value. In staging, what runs there is deployed again so
    its pods roll; elsewhere pods read the new value from the next deploy on.

    Example: printf %s "$DB_PASSWORD" | tenantry secrets set payments/db password --env production
    """
    _no_value_arguments(extra)
    tenant, name = _split(ref, key)
    value = _read_value(from_file)
    if not value:
        raise errors.UsageError("the value is empty", fix="give the value on stdin or in a file")
    api = client.Client.from_environment()
    change = api.call("PUT", f"/tenants/{tenant}/secrets/{env}/{name}/{key}",
                      body={"value": base64.b64encode(value).decode()})  # fmt: skip
    output.err_console.print(f"{ref} {key}: version {change['version']} in {env}")
    for redeploy in change["redeploys"]:
        output.err_console.print(f"deploying again so its pods roll: {redeploy}")
    output.emit(change, ctx.obj.output, title="secret key")


@app.command("delete")
def delete_cmd(
    ctx: typer.Context,
    ref: RefArgument,
    key: KeyArgument,
    env: EnvOption,
) -> None:
    """Delete one key of a tenant's secret in every cluster of an environment (owners); the
    Secret goes with its last key. Pods that use it fail to start until it is set again.

    Example: tenantry secrets delete payments/db password --env staging
    """
    tenant, name = _split(ref, key)
    api = client.Client.from_environment()
    change = api.call("DELETE", f"/tenants/{tenant}/secrets/{env}/{name}/{key}")
    output.emit(change, ctx.obj.output, title="secret key")


@app.command("sync")
def sync_cmd(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    env: EnvOption,
) -> None:
    """Copy the tenant's secrets of an environment that keeps them in AWS Secrets Manager
    (platform.yaml: secrets: {store: aws-secrets-manager}) into its clusters (owners):
    every key that changed there — AWS's rotation, a person with access to it — is written
    and recorded; one that is gone is removed.

    Example: tenantry secrets sync payments --env production
    """
    api = client.Client.from_environment()
    found = api.call("POST", f"/tenants/{tenant}/secrets/{env}/sync")
    output.err_console.print(f"{len(found['items'])} key(s) changed in {env}")
    output.emit(found["items"], ctx.obj.output, title="synced keys")
