"""Real local Kubernetes clusters, run by kwokctl's binary runtime with our pinned binaries.

Each cluster is etcd + kube-apiserver (RBAC, admission plugins on) +
kube-controller-manager + kube-scheduler + the kwok controller, all processes on
loopback, started and stopped by kwokctl through their own pid files. State lives
under ``<state dir>/kwok/clusters/<name>/`` (kwokctl's ``KWOK_WORKDIR``), so
clusters survive the command that made them and `tenantry cluster delete` or
`tenantry down` can find them again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube.resources.core_v1 import Node, ServiceAccount

from tenantry import errors, paths, processes
from tenantry.kube import kwokconfig
from tenantry.kube.client import Kube
from tenantry.tools import catalog, install

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")

# kwokctl's own wait for the control plane; a cold start here takes ~10 s.
_KWOKCTL_WAIT = "120s"
_READY_TIMEOUT_S = 90.0
# How long a stopped component may take to exit before it is killed.
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class LocalCluster:
    """A local cluster that exists on this machine (running or not)."""

    name: str
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig kwokctl wrote (client certificate in group system:masters)."""
        return self.workdir / "kubeconfig.yaml"

    @property
    def server(self) -> str:
        """The API server URL from the kubeconfig, or "" if it is not readable."""
        try:
            config = yaml.safe_load(self.kubeconfig.read_text())
            return str(config["clusters"][0]["cluster"]["server"])
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
            return ""

    def connect(self, *, timeout_s: float = 30.0) -> Kube:
        """An admin connection to the cluster."""
        return Kube.connect(self.kubeconfig, timeout_s=timeout_s)

    def reachable(self) -> bool:
        """Whether the API server answers right now."""
        if not self.kubeconfig.exists():
            return False
        try:
            with self.connect(timeout_s=2.0) as kube:
                kube.get(ServiceAccount, "default", namespace="default")
        except errors.TenantryError:
            return False
        return True


def workdir() -> Path:
    """kwokctl's working directory for every local cluster."""
    return paths.state_dir() / "kwok"


def _cluster_dir(name: str) -> Path:
    return workdir() / "clusters" / name


def validate_name(name: str) -> str:
    """Return ``name`` if it can name a local cluster, else raise `UsageError`."""
    if not _NAME.match(name):
        raise errors.UsageError(
            f"invalid cluster name {name!r}",
            fix="use 1-40 lowercase letters, digits and '-', starting with a letter",
        )
    return name


def get(name: str) -> LocalCluster:
    """The existing local cluster ``name``, or `ClusterNotFoundError`."""
    validate_name(name)
    cluster = LocalCluster(name=name, workdir=_cluster_dir(name))
    if not cluster.workdir.exists():
        raise errors.ClusterNotFoundError(
            f"no local cluster named {name!r}",
            fix=f"create it with `tenantry cluster create {name}` or see `tenantry cluster list`",
        )
    return cluster


def list_clusters() -> list[LocalCluster]:
    """Every local cluster on this machine, by name."""
    root = workdir() / "clusters"
    if not root.exists():
        return []
    return [LocalCluster(name=d.name, workdir=d) for d in sorted(root.iterdir()) if d.is_dir()]


def _binaries() -> kwokconfig.Binaries:
    return kwokconfig.Binaries(
        kube_apiserver=install.binary("kube-apiserver"),
        kube_controller_manager=install.binary("kube-controller-manager"),
        kube_scheduler=install.binary("kube-scheduler"),
        kubectl=install.binary("kubectl"),
        etcd=install.binary("etcd"),
        kwok=install.binary("kwok"),
    )


def _versions() -> kwokconfig.Versions:
    return kwokconfig.Versions(
        kubernetes=catalog.KUBERNETES.version,
        etcd=catalog.ETCD.version,
        kwok=catalog.KWOK.version,
    )


def _default_stages() -> list[dict[str, Any]]:
    stages = []
    for path in catalog.KWOK_DEFAULT_STAGES:
        stage = yaml.safe_load(install.data_file(catalog.KWOK, path).read_text())
        stages.append(stage)
    return stages


def _kwokctl(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KWOK_WORKDIR=str(workdir()))
    argv = [str(install.binary("kwokctl")), *args]
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise errors.ClusterError(
            f"`kwokctl {' '.join(args)}` did not finish in {timeout_s:.0f}s"
        ) from e


def _log_tail(cluster_dir: Path, lines: int = 15) -> str:
    tails = []
    for log in sorted((cluster_dir / "logs").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        if text:
            tails.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(tails)


def create(name: str, *, nodes: int = kwokconfig.DEFAULT_NODES) -> LocalCluster:
    """Start a new local cluster with ``nodes`` simulated nodes and wait until it is usable.

    On any failure the half-made cluster is deleted, so a retry starts clean.
    """
    validate_name(name)
    if nodes < 1:
        raise errors.UsageError(f"--nodes must be at least 1, got {nodes}")
    if _cluster_dir(name).exists():
        raise errors.ClusterError(
            f"local cluster {name!r} already exists",
            fix=f"use it, or run `tenantry cluster delete {name}` first",
        )
    binaries, versions = _binaries(), _versions()
    config_dir = workdir() / "configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    config_path = config_dir / f"{name}.yaml"
    documents = [
        kwokconfig.kwokctl_configuration(binaries, versions),
        *_default_stages(),
        kwokconfig.never_ready_stage(),
        kwokconfig.slow_ready_stage(),
        kwokconfig.helm_test_stage(),
    ]
    config_path.write_text(yaml.safe_dump_all(documents))
    try:
        done = _kwokctl(
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            str(config_path),
            "--wait",
            _KWOKCTL_WAIT,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-3000:]
            logs = _log_tail(_cluster_dir(name))
            raise errors.ClusterError(
                f"kwokctl could not create cluster {name!r}:\n{detail}\n{logs}",
                fix="read the component logs above; `tenantry tools install` rebuilds the binaries",
            )
        cluster = LocalCluster(name=name, workdir=_cluster_dir(name))
        _add_nodes(cluster, nodes)
    except BaseException:
        delete(name)
        raise
    return cluster


def _add_nodes(cluster: LocalCluster, count: int) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    names = kwokconfig.node_names(cluster.name, count)
    with cluster.connect() as kube:
        for node in names:
            kube.apply(kwokconfig.node_manifest(node))
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                status = kube.get(Node, node).status
                conditions = (status.conditions or []) if status else []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    pending.discard(node)
            if pending:
                time.sleep(0.2)
        # Pods need the namespace's default ServiceAccount, which a controller creates.
        while time.monotonic() < deadline:
            try:
                kube.get(ServiceAccount, "default", namespace="default")
                break
            except errors.NotFoundError:
                time.sleep(0.2)
    if pending:
        raise errors.ClusterError(
            f"nodes {sorted(pending)} of cluster {cluster.name!r} never became Ready",
            fix="check the kwok controller log in " + str(cluster.workdir / "logs"),
        )


def delete(name: str) -> bool:
    """Stop every process of cluster ``name`` and remove its state; False if it did not exist."""
    validate_name(name)
    cluster_dir = _cluster_dir(name)
    if not cluster_dir.exists():
        return False
    pids = _pids(cluster_dir)
    done = _kwokctl("delete", "cluster", "--name", name)
    if done.returncode != 0 and cluster_dir.exists():
        raise errors.ClusterError(
            f"kwokctl could not delete cluster {name!r}: {(done.stderr or done.stdout).strip()}",
            fix=f"stop the processes listed in {cluster_dir / 'pids'} and remove {cluster_dir}",
        )
    _reap(pids)
    shutil.rmtree(cluster_dir, ignore_errors=True)
    (workdir() / "configs" / f"{name}.yaml").unlink(missing_ok=True)
    return True


def _pids(cluster_dir: Path) -> list[int]:
    pids = []
    for pid_file in (cluster_dir / "pids").glob("*.pid"):
        try:
            pids.append(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def _reap(pids: list[int], *, grace_s: float = _STOP_GRACE_S) -> None:
    # kwokctl signals its processes and returns; wait for them so a deleted cluster's
    # ports are free, and kill by pid any that outlive the grace period.
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not any(processes.alive(pid) for pid in pids):
            return
        time.sleep(0.1)
    for pid in pids:
        if processes.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start(name: str) -> LocalCluster:
    """Start the processes of an existing, stopped cluster (after a reboot, say)."""
    cluster = get(name)
    done = _kwokctl("start", "cluster", "--name", name, "--wait", _KWOKCTL_WAIT)
    if done.returncode != 0:
        raise errors.ClusterError(
            f"kwokctl could not start cluster {name!r}: {(done.stderr or done.stdout).strip()}",
            fix=f"delete and recreate it: `tenantry cluster delete {name}`",
        )
    return cluster
