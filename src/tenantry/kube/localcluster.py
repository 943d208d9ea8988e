"""Real local Kubernetes clusters, run by kwokctl's binary runtime with our pinned binaries.

Each cluster is etcd + kube-apiserver (RBAC, admission plugins on) +
kube-controller-manager + kube-scheduler + the kwok controller, all processes on
loopback, started and stopped by kwokctl through their own pid files. State lives
under ``<state dir>/kwok/clusters/<name>/`` (kwokctl's ``KWOK_WORKDIR``), so
clusters survive the command that made them and `tenantry cluster delete` or
`tenantry down` can find them again.

A cluster created with a ``token_file`` also accepts the static bearer tokens listed
there (`tenantry.local.people`), so people reach it with their own identity. The API
server reads that file only when it starts: the digest of the file it last started
with is kept beside the cluster, so a caller can tell (`LocalCluster.token_file_changed`)
that a `restart` is needed for a new person's token to work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube.resources.core_v1 import Node, ServiceAccount

from tenantry import errors, paths, processes
from tenantry.images import build as images
from tenantry.kube import kwokconfig, realnode, realnodes
from tenantry.kube.client import Kube
from tenantry.tools import catalog, install

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")

# kwokctl's own wait for the control plane; a cold start here takes ~10 s.
_KWOKCTL_WAIT = "120s"
_READY_TIMEOUT_S = 90.0
_CREATE_ATTEMPTS = 3
# What a component logs when the port kwokctl chose for it was taken meanwhile.
_PORT_TAKEN = "bind: address already in use"
# How long a stopped component may take to exit before it is killed.
_STOP_GRACE_S = 10.0
# Beside a cluster's state: the digest of the token file its API server last started with.
_TOKEN_DIGEST = "token-file.sha256"  # noqa: S105 (a file name, not a secret)


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

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's certificate, from the admin kubeconfig."""
        try:
            config = yaml.safe_load(self.kubeconfig.read_text())
            ca = Path(str(config["clusters"][0]["cluster"]["certificate-authority"]))
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
            raise errors.ClusterError(
                f"cannot read the CA of cluster {self.name!r} from {self.kubeconfig}: {e}",
                fix=f"recreate the cluster: `tenantry cluster delete {self.name}`",
            ) from e
        return ca if ca.is_absolute() else self.kubeconfig.parent / ca

    @property
    def config_file(self) -> Path:
        """The KwokctlConfiguration the cluster was created with."""
        return self.workdir.parent.parent / "configs" / f"{self.name}.yaml"

    @property
    def token_file(self) -> Path | None:
        """The static token file the API server accepts tokens from, or None."""
        try:
            documents = list(yaml.safe_load_all(self.config_file.read_text()))
        except (OSError, yaml.YAMLError):
            return None
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == "KwokctlConfiguration":
                return kwokconfig.token_file_of(document)
        return None

    def token_file_changed(self) -> bool:
        """Whether the token file differs from the one the API server last started with
        (it reads the file only at start, so a new token needs a `restart`)."""
        token_file = self.token_file
        if token_file is None:
            return False
        try:
            started_with = (self.workdir / _TOKEN_DIGEST).read_text().strip()
        except OSError:
            return True
        return started_with != _digest(token_file)

    def connect(self, *, timeout_s: float = 30.0) -> Kube:
        """An admin connection to the cluster."""
        return Kube.connect(self.kubeconfig, timeout_s=timeout_s)

    def connect_with_token(self, token: str, *, timeout_s: float = 30.0) -> Kube:
        """A connection that authenticates with ``token`` (a person's own bearer token)."""
        return Kube.connect_with_token(
            self.server, token, ca_file=self.ca_file, timeout_s=timeout_s
        )

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


def _kwok_controller_port_taken(cluster_dir: Path) -> bool:
    """Whether the kwok controller could not bind its port (kwokctl waits for the other
    components itself, so theirs fail `kwokctl create` instead). Its log is short."""
    try:
        return _PORT_TAKEN in (cluster_dir / "logs" / "kwok-controller.log").read_text(
            errors="replace"
        )
    except OSError:
        return False


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _record_token_digest(cluster: LocalCluster, digest: str | None) -> None:
    if digest is not None:
        (cluster.workdir / _TOKEN_DIGEST).write_text(digest + "\n")


def create(
    name: str,
    *,
    nodes: int = kwokconfig.DEFAULT_NODES,
    token_file: Path | None = None,
    real_nodes: int = 0,
    on_progress: Callable[[str], None] | None = None,
) -> LocalCluster:
    """Start a new local cluster with ``nodes`` simulated nodes and wait until it is usable.

    With ``real_nodes`` it also gets that many real nodes (`tenantry.kube.realnodes`: a
    kubelet and containerd each, running real containers), and kwok then manages only
    its own nodes. A machine that cannot run containers fails before anything starts
    with `RealNodeUnsupportedError`.

    With ``token_file`` (a static token CSV: ``token,user,uid,"group1,group2"``) the
    API server also authenticates the bearer tokens listed there. On any failure the
    half-made cluster is deleted, so a retry starts clean.
    """
    validate_name(name)
    if nodes < 1:
        raise errors.UsageError(f"--nodes must be at least 1, got {nodes}")
    if real_nodes < 0:
        raise errors.UsageError(f"--real-nodes must be 0 or more, got {real_nodes}")
    if real_nodes:
        realnodes.preflight()
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            return _create_once(name, nodes, token_file, real_nodes, on_progress)
        except errors.ClusterError as e:
            # kwokctl picks each component's port when it creates the cluster; another
            # process (another state directory's cluster, an outgoing connection) may
            # take one before the component binds it. The half-made cluster is gone:
            # a new attempt picks new ports.
            if _PORT_TAKEN not in str(e) or attempt == _CREATE_ATTEMPTS:
                raise
            if on_progress:
                on_progress(f"{name}: a port kwokctl chose was taken meanwhile; trying again")
    raise AssertionError("unreachable")  # the loop returns or raises


def _create_once(
    name: str,
    nodes: int,
    token_file: Path | None,
    real_nodes: int,
    on_progress: Callable[[str], None] | None,
) -> LocalCluster:
    if _cluster_dir(name).exists():
        raise errors.ClusterError(
            f"local cluster {name!r} already exists",
            fix=f"use it, or run `tenantry cluster delete {name}` first",
        )
    digest = None
    if token_file is not None:
        token_file = token_file.resolve()
        if not token_file.is_file():
            raise errors.ClusterError(
                f"token file {token_file} for cluster {name!r} does not exist",
                fix="write it first (`tenantry.local.people.ensure`), or create the cluster "
                "without one",
            )
        digest = _digest(token_file)
    binaries, versions = _binaries(), _versions()
    config_dir = workdir() / "configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    config_path = config_dir / f"{name}.yaml"
    kwokctl_config = kwokconfig.kwokctl_configuration(binaries, versions, token_file=token_file)
    if real_nodes:
        # kwok must leave the real nodes (and their pods) to their kubelets.
        kwokctl_config["componentsPatches"].append(
            realnode.kwok_controller_patch(f"{kwokconfig.KWOK_NODE_ANNOTATION}=fake")
        )
        # The API server reaches the kubelets for pod logs (what `verify` reports).
        for patch in kwokctl_config["componentsPatches"]:
            if patch["name"] == "kube-apiserver":
                patch["extraArgs"] += realnode.apiserver_kubelet_args(_cluster_dir(name) / "pki")
    documents = [
        kwokctl_config,
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
        _record_token_digest(cluster, digest)
        try:
            _add_nodes(cluster, nodes, taint=bool(real_nodes))
        except errors.KubeUnavailableError as e:
            # kwokctl's readiness check can be answered by another cluster's API server
            # that took the port kwokctl chose: ours then fails to bind and is gone once
            # that one stops. Its log says so, and `create` tries again with new ports.
            logs = _log_tail(cluster.workdir)
            if _PORT_TAKEN not in logs:
                raise
            raise errors.ClusterError(
                f"cluster {name!r} stopped answering right after it started:\n{logs}",
                fix="another process took one of its ports; try again",
            ) from e
        if real_nodes:
            _add_real_nodes(cluster, real_nodes, on_progress)
    except BaseException:
        delete(name)
        raise
    return cluster


# On the kwok nodes of a cluster that has real nodes: pods that do not tolerate it land
# on a real node, where their containers really run.
KWOK_TAINT = {"key": "tenantry.dev/simulated", "value": "true", "effect": "NoSchedule"}


def _add_nodes(cluster: LocalCluster, count: int, *, taint: bool = False) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    names = kwokconfig.node_names(cluster.name, count)
    with cluster.connect() as kube:
        for node in names:
            manifest = kwokconfig.node_manifest(node)
            if taint:
                manifest["spec"]["taints"] = [dict(KWOK_TAINT)]
            kube.apply(manifest)
        pending = set(names)
        while pending and time.monotonic() < deadline:
            if _kwok_controller_port_taken(cluster.workdir):
                break  # it could not start: no waiting will help
            for node in list(pending):
                status = kube.get(Node, node).status
                conditions = (status.conditions or []) if status else []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    pending.discard(node)
            if pending:
                time.sleep(0.2)
        # Pods need the namespace's default ServiceAccount, which a controller creates.
        while not pending and time.monotonic() < deadline:
            try:
                kube.get(ServiceAccount, "default", namespace="default")
                break
            except errors.NotFoundError:
                time.sleep(0.2)
    if pending:
        # The half-made cluster is deleted next, logs and all: say what they said.
        raise errors.ClusterError(
            f"nodes {sorted(pending)} of cluster {cluster.name!r} did not become Ready:\n"
            f"{_log_tail(cluster.workdir)}",
            fix="read the kwok controller's log above; on a loaded machine, try again",
        )


def _real_node_cluster(cluster: LocalCluster) -> realnodes.Cluster:
    return realnodes.Cluster(
        name=cluster.name,
        workdir=cluster.workdir,
        server=cluster.server,
        ca_cert=cluster.workdir / "pki" / "ca.crt",
        ca_key=cluster.workdir / "pki" / "ca.key",
    )


def _add_real_nodes(
    cluster: LocalCluster, count: int, on_progress: Callable[[str], None] | None
) -> None:
    info = _real_node_cluster(cluster)
    with cluster.connect() as kube:
        for index in range(count):
            realnodes.start(info, index, kube, on_progress=on_progress)


def real_node_names(cluster: LocalCluster) -> list[str]:
    """The names of the cluster's real nodes (empty for a kwok-only cluster)."""
    return [f"{cluster.name}-real-{d.name}" for d in realnodes.node_dirs(cluster.workdir)]


def load_images(cluster: LocalCluster, refs: Sequence[str]) -> list[str]:
    """Build (once) and import the app image of each reference into every real node.

    The stand-in for a registry pull: the local clusters reach no registry, so a
    service's image is put where its pods' ``IfNotPresent`` finds it. Returns the
    names of the nodes loaded (none for a kwok-only cluster, whose pods run nothing).
    """
    built = [images.service(ref) for ref in refs]
    loaded = []
    for node_dir in realnodes.node_dirs(cluster.workdir):
        for image in built:
            realnodes.import_image(node_dir, image)
        loaded.append(f"{cluster.name}-real-{node_dir.name}")
    return loaded


def _stop_real_nodes(cluster_dir: Path) -> None:
    """Stop the real nodes while the API server still runs (their kubelets tear pods down
    through it), then undo their changes to the host."""
    dirs = realnodes.node_dirs(cluster_dir)
    if not dirs:
        return
    cluster = LocalCluster(name=cluster_dir.name, workdir=cluster_dir)
    kube = None
    if cluster.reachable():
        kube = cluster.connect()
    try:
        for node_dir in dirs:
            realnodes.stop(node_dir, kube)
    finally:
        if kube is not None:
            kube.close()


def delete(name: str) -> bool:
    """Stop every process of cluster ``name`` and remove its state; False if it did not exist."""
    validate_name(name)
    cluster_dir = _cluster_dir(name)
    if not cluster_dir.exists():
        return False
    _stop_real_nodes(cluster_dir)
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
    """Start the processes of an existing, stopped cluster (after a reboot, say).

    kwokctl starts them with the configuration the cluster was created with, so a
    cluster made with a token file keeps reading that same file.
    """
    cluster = get(name)
    token_file = cluster.token_file
    digest = _digest(token_file) if token_file is not None else None
    done = _kwokctl("start", "cluster", "--name", name, "--wait", _KWOKCTL_WAIT)
    if done.returncode != 0:
        raise errors.ClusterError(
            f"kwokctl could not start cluster {name!r}: {(done.stderr or done.stdout).strip()}",
            fix=f"delete and recreate it: `tenantry cluster delete {name}`",
        )
    _record_token_digest(cluster, digest)
    indexes = [int(d.name) for d in realnodes.node_dirs(cluster.workdir)]
    if indexes:
        # `stop` took the real nodes down whole (nothing of them stays on the host while
        # the cluster is stopped); they come back as new processes on the same node dirs.
        realnodes.preflight()
        info = _real_node_cluster(cluster)
        with cluster.connect() as kube:
            for index in indexes:
                realnodes.start(info, index, kube)
    return cluster


def stop(name: str) -> LocalCluster:
    """Stop every process of cluster ``name``, keeping its state for a later `start`."""
    cluster = get(name)
    _stop_real_nodes(cluster.workdir)
    pids = _pids(cluster.workdir)
    done = _kwokctl("stop", "cluster", "--name", name)
    if done.returncode != 0:
        raise errors.ClusterError(
            f"kwokctl could not stop cluster {name!r}: {(done.stderr or done.stdout).strip()}",
            fix=f"stop the processes listed in {cluster.workdir / 'pids'}",
        )
    # Wait for the old processes so the restarted ones can bind the same ports.
    _reap(pids)
    return cluster


def restart(name: str) -> LocalCluster:
    """Stop and start cluster ``name``: how its API server rereads its token file."""
    stop(name)
    return start(name)


def stop_component(name: str, component: str, *, signum: int = signal.SIGTERM) -> int:
    """Send ``signum`` to one component of cluster ``name`` (``kube-apiserver``, ``etcd``,
    ``kube-controller-manager``, ...) by the pid kwokctl recorded, wait for it to exit
    (SIGKILL after a grace period) and return that pid. The rest of the cluster keeps
    running; `start` (or `restart_component`) starts the component again.

    Fault tests use it with SIGKILL: a crash the component cannot clean up after.
    """
    cluster = get(name)
    pid_file = cluster.workdir / "pids" / f"{component}.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as e:
        raise errors.ClusterError(
            f"cluster {name!r} has no running component {component!r} ({pid_file}: {e})",
            fix=f"see the components in {pid_file.parent}",
        ) from e
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    _reap([pid])
    # kwokctl tells whether a component runs by signalling the recorded pid, which also
    # succeeds on an unreaped zombie: without the file it surely starts it again.
    pid_file.unlink(missing_ok=True)
    return pid


def restart_component(name: str, component: str, *, signum: int = signal.SIGTERM) -> int:
    """Stop one component of cluster ``name`` with ``signum`` (`stop_component`) and start
    it again with the arguments the cluster was created with, waiting until the API
    server answers; the pid it stopped. kwokctl starts only the components that are not
    running, so the others keep their processes."""
    pid = stop_component(name, component, signum=signum)
    start(name)
    return pid
