"""The floors a deployer's throughput is judged against, on the same cluster and the same
chart archives: N bare `helm upgrade --install --wait` in parallel (the best any system
that runs the helm CLI per release can do), and a server-side apply of the same rendered
objects without helm (what the API server itself can take). Each floor has namespaces of
its own; what is timed starts after the archives are rendered and the namespaces exist,
and ends when every Deployment has all its replicas available."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tenantry.tools import install


@dataclass(frozen=True)
class Release:
    """One chart archive to install as ``name`` in ``namespace``."""

    namespace: str
    name: str
    archive: Path


def _run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def create_namespaces(kubeconfig: Path, names: Sequence[str]) -> None:
    """The namespaces, in one server-side apply (not timed)."""
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    _run([str(install.binary("kubectl")), "--kubeconfig", str(kubeconfig), "apply",
          "--server-side", "-f", "-"],
         stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))  # fmt: skip


def helm_floor(kubeconfig: Path, releases: Sequence[Release], *, parallel: int) -> float:
    """Seconds for ``parallel`` bare helm processes to install every release and wait."""
    helm = str(install.binary("helm"))
    create_namespaces(kubeconfig, sorted({r.namespace for r in releases}))

    def one(r: Release) -> None:
        _run([helm, "upgrade", "--install", r.name, str(r.archive), "--kubeconfig",
              str(kubeconfig), "--namespace", r.namespace, "--wait", "--timeout",
              "600s"])  # fmt: skip

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, releases))
    return time.monotonic() - started


def apply_floor(kubeconfig: Path, releases: Sequence[Release], *, parallel: int) -> float:
    """Seconds to server-side apply every release's rendered objects (``parallel`` kubectl
    processes, one per namespace) until every Deployment there is available."""
    helm, kubectl = str(install.binary("helm")), str(install.binary("kubectl"))
    by_namespace: dict[str, list[str]] = {}
    for r in releases:  # rendered before the clock starts
        by_namespace.setdefault(r.namespace, []).append(
            _run([helm, "template", r.name, str(r.archive), "--namespace", r.namespace])
        )
    create_namespaces(kubeconfig, sorted(by_namespace))

    def one(item: tuple[str, list[str]]) -> None:
        namespace, documents = item
        _run([kubectl, "--kubeconfig", str(kubeconfig), "apply", "--server-side",
              "--field-manager", "bench-floor", "--namespace", namespace, "-f", "-"],
             stdin="\n---\n".join(documents))  # fmt: skip

    deployments = sum(d.count("\nkind: Deployment\n") for ds in by_namespace.values() for d in ds)
    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, by_namespace.items()))
    while available(kubeconfig, set(by_namespace)) < deployments:
        time.sleep(0.5)
    return time.monotonic() - started


def available(kubeconfig: Path, namespaces: set[str]) -> int:
    """How many Deployments in ``namespaces`` have all their replicas available."""
    out = _run([str(install.binary("kubectl")), "--kubeconfig", str(kubeconfig), "get",
                "deployments", "--all-namespaces", "-o", "json"])  # fmt: skip
    return sum(
        1 for item in json.loads(out)["items"]
        if item["metadata"]["namespace"] in namespaces
        and item.get("status", {}).get("availableReplicas", 0) >= item["spec"].get("replicas", 1)
    )  # fmt: skip
