"""`tenantry cluster`: create, delete, list real local clusters."""

from __future__ import annotations

import time

import typer

from tenantry.cli import output
from tenantry.kube import kwokconfig, localcluster

app = typer.Typer(
    help=(
        "Real local Kubernetes clusters: kube-apiserver, controller-manager, scheduler and etcd "
        "from the pinned build; nodes and pod status simulated by kwok (no container runs), "
        "plus optional real nodes (kubelet, containerd, runc) that run containers."
    ),
    no_args_is_help=True,
)


@app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Cluster name: lowercase letters, digits and '-'."),
    nodes: int = typer.Option(
        kwokconfig.DEFAULT_NODES,
        "--nodes",
        "-n",
        help="Simulated nodes (8 CPU, 32Gi, 110 pods each).",
    ),
    real_nodes: int = typer.Option(
        0,
        "--real-nodes",
        help="Real nodes beside them: a kubelet with containerd and runc each, running real "
        "containers (needs root, cgroups and Debian's runc and CNI plugins).",
    ),
) -> None:
    """Start a new local cluster and wait until its nodes are Ready.

    Example: tenantry cluster create dev --nodes 5 --real-nodes 1
    """
    real = f" and {real_nodes} real node(s)" if real_nodes else ""
    output.err_console.print(f"creating cluster {name} with {nodes} node(s){real} ...")
    started = time.monotonic()
    cluster = localcluster.create(
        name, nodes=nodes, real_nodes=real_nodes, on_progress=output.err_console.print
    )
    seconds = round(time.monotonic() - started, 1)
    output.emit(
        {
            "name": cluster.name,
            "server": cluster.server,
            "kubeconfig": str(cluster.kubeconfig),
            "nodes": nodes,
            "real_nodes": localcluster.real_node_names(cluster),
            "seconds": seconds,
        },
        ctx.obj.output,
    )
    output.err_console.print(f"cluster {name} ready in {seconds}s")


@app.command("delete")
def delete_cmd(
    ctx: typer.Context, name: str = typer.Argument(..., help="The cluster to delete.")
) -> None:
    """Stop every process of a local cluster and remove its state. Safe to call twice.

    Example: tenantry cluster delete dev
    """
    removed = localcluster.delete(name)
    output.emit({"name": name, "deleted": removed}, ctx.obj.output)


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Show every local cluster and whether its API server answers.

    Example: tenantry cluster list --output json
    """
    rows = [
        {
            "name": c.name,
            "reachable": c.reachable(),
            "server": c.server,
            "kubeconfig": str(c.kubeconfig),
        }
        for c in localcluster.list_clusters()
    ]
    output.emit(rows, ctx.obj.output, title="local clusters")


@app.command("kubeconfig")
def kubeconfig_cmd(name: str = typer.Argument(..., help="The cluster.")) -> None:
    """Print the path of the cluster's admin kubeconfig.

    Example: kubectl --kubeconfig "$(tenantry cluster kubeconfig dev)" get nodes
    """
    typer.echo(str(localcluster.get(name).kubeconfig))
