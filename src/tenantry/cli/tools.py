"""`tenantry tools`: build and list the pinned non-Python tools."""

from __future__ import annotations

import time

import typer

from tenantry import paths
from tenantry.cli import output
from tenantry.tools import catalog, install

app = typer.Typer(
    help="Build the pinned Kubernetes, etcd, kwok and helm binaries into the tool cache.",
    no_args_is_help=True,
)

_PROGRESS_EVERY_S = 15.0


@app.command("install")
def install_cmd(ctx: typer.Context) -> None:
    """Build every pinned tool that is not in the cache yet, then check each version.

    The cache is $TENANTRY_TOOLS_DIR, else $XDG_CACHE_HOME/tenantry/tools. The first
    build of the Kubernetes binaries takes 15-25 minutes on two cores; later runs
    only check versions (seconds).

    Example: tenantry tools install && export PATH="$(tenantry tools bin-dir):$PATH"
    """
    last = [0.0]

    def on_start(tool: catalog.GoTool) -> None:
        names = ", ".join(b.name for b in tool.binaries)
        output.err_console.print(f"building {tool.name} {tool.version} ({names}) ...")

    def on_progress(p: install.BuildProgress) -> None:
        if p.elapsed_s - last[0] >= _PROGRESS_EVERY_S:
            last[0] = p.elapsed_s
            output.err_console.print(
                f"  {p.tool}: {p.packages} packages compiled, {p.elapsed_s:.0f}s ({p.current})"
            )

    started = time.monotonic()
    results = install.install(on_start=on_start, on_progress=on_progress)
    rows = [
        {
            "tool": r.tool,
            "version": r.version,
            "action": r.action,
            "seconds": round(r.seconds, 1),
            "binaries": " ".join(p.name for p in r.binaries),
        }
        for r in results
    ]
    output.emit(rows, ctx.obj.output, title=f"tools in {paths.tools_dir()}")
    output.err_console.print(f"done in {time.monotonic() - started:.0f}s")


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Show every pinned binary: version, absolute path, and whether it is installed.

    Example: tenantry tools list --output json
    """
    states = install.list_tools()
    rows = [
        {"name": s.name, "version": s.version, "status": s.status, "path": str(s.path)}
        for s in states
    ]
    output.emit(rows, ctx.obj.output, title="pinned tools")
    if any(s.status != "installed" for s in states):
        output.err_console.print("some tools are not installed: run `tenantry tools install`")


@app.command("bin-dir")
def bin_dir_cmd() -> None:
    """Print the directory that links every installed binary, for PATH.

    Example: export PATH="$(tenantry tools bin-dir):$PATH"
    """
    typer.echo(str(install.bin_dir()))
