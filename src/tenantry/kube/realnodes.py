"""Real nodes of a local cluster: a containerd and a kubelet per node, and their undoing.

Starting a node writes its files (`tenantry.kube.realnode` decides them), records
what the host looked like before (sysctls, iptables chains, host directories) in
``host-changes.json``, creates the kubelet's cgroup root, starts containerd,
imports the pause and app images, starts the kubelet and waits until the Node is
Ready. Stopping one asks the kubelet to tear its pods down (so CNI removes their
addresses, rules and network namespaces), stops both processes by pid, kills by pid
whatever still runs in the node's own cgroups, unmounts everything under the node's
directory, removes the iptables rules tagged with its network's name, its bridge and
cgroups, and puts back what the host had — host-wide things (sysctls, the kubelet's
chains) only when no other real node on this machine is running, since they are
shared.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube.resources.core_v1 import Node, Pod

from tenantry import errors, processes
from tenantry.images import build as images
from tenantry.kube import realnode
from tenantry.kube.client import Kube, translate
from tenantry.tools import install

_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Host-wide: one file per running real node on this machine, whoever started it, so
# the last one to go knows it may put shared host settings back.
REGISTRY = Path("/run/tenantry/real-nodes")
# Host paths the kubelet and containerd write whatever their flags say.
_HOST_DIRS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/run/containerd"),
    Path("/var/run/netns"),
    Path("/var/lib/cni"),  # libcni's cache of results, not configurable through containerd
)
_TABLES = ("filter", "nat", "mangle")
_START_TIMEOUT_S = 30.0
_READY_TIMEOUT_S = 120.0
_TEARDOWN_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0
_CMD_TIMEOUT_S = 30.0

Progress = Callable[[str], None]

# The node processes this interpreter started, kept to be reaped when stopped.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Cluster:
    """What a real node needs to know of its cluster."""

    name: str
    workdir: Path
    server: str
    ca_cert: Path
    ca_key: Path


def _unsupported(what: str, fix: str) -> errors.RealNodeUnsupportedError:
    return errors.RealNodeUnsupportedError(
        f"this machine cannot run a real node: {what}; clusters with only kwok nodes "
        "(`--real-nodes 0`) work here",
        fix=fix,
    )


def preflight() -> None:
    """Raise `RealNodeUnsupportedError` naming the first thing that keeps containers from
    running here (not root, no cgroups, Debian's runc, CNI plugins or iptables missing)."""
    if os.geteuid() != 0:
        raise _unsupported(
            "not running as root (containerd, runc and the kubelet need it)",
            "run as root, as CI does",
        )
    if not _hierarchies():
        raise _unsupported("no cgroup filesystem under /sys/fs/cgroup", "mount cgroups")
    missing = [
        f"{package} ({path})"
        for package, path in (
            ("runc", realnode.RUNC),
            ("containernetworking-plugins", realnode.CNI_BIN_DIR / "bridge"),
            ("iptables", realnode.IPTABLES),
        )
        if not path.exists()
    ]
    if missing:
        raise _unsupported(
            "missing Debian packages: " + ", ".join(missing),
            "apt-get install runc containernetworking-plugins iptables conntrack "
            "(`./run test` installs them as root)",
        )
    for name in ("containerd", "containerd-shim-runc-v2", "ctr", "kubelet"):
        install.binary(name)  # ToolMissingError saying `tenantry tools install`


def _hierarchies() -> list[Path]:
    """The cgroup hierarchies mounted at or under /sys/fs/cgroup: v1's, one per controller
    set, and a v2 one (beside them, as ``unified``, or alone); runc writes in each."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            mount_point = Path(left.split()[4])
            if _CGROUP_ROOT in (mount_point, mount_point.parent):
                found.append(mount_point)
    return found


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise errors.ClusterError(f"`{' '.join(argv)}` failed: {e}") from e
    if check and done.returncode != 0:
        raise errors.ClusterError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done


# --- what the host looks like ------------------------------------------------------------


def _sysctls() -> dict[str, str]:
    values = {}
    for name in realnode.HOST_SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = Path("/proc/sys", *name.split(".")).read_text().strip()
    return values


def _chains() -> list[list[str]]:
    """Every (command, table, chain) of the host's iptables and ip6tables."""
    found = []
    for command in ("iptables", "ip6tables"):
        for table in _TABLES:
            done = _run([command, "-w", "-t", table, "-S"], check=False)
            for line in done.stdout.splitlines():
                if line.startswith("-N "):
                    found.append([command, table, line.split()[1]])
    return found


def _routes_in_use() -> list[ipaddress.IPv4Network]:
    done = _run(["ip", "-4", "route", "show"], check=False)
    networks = []
    for line in done.stdout.split("\n"):
        with contextlib.suppress(ValueError, IndexError):
            networks.append(ipaddress.IPv4Network(line.split()[0], strict=False))
    return networks


def _free_subnet(seed: str, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for subnet in realnode.candidate_subnets(seed):
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen > 0):
            return subnet
    raise errors.ClusterError(
        f"no free /24 for pods in {realnode.POD_RANGE}", fix="delete unused real nodes"
    )


# --- credentials -------------------------------------------------------------------------


def _issue_client_cert(cluster: Cluster, node: realnode.RealNode) -> tuple[Path, Path]:
    """A client certificate for the node (CN system:node:NAME, O system:nodes), signed by
    the cluster's CA: the identity the Node authorizer and RBAC know kubelets by."""
    with warnings.catch_warnings():
        # kwokctl's CA has a non-positive serial number, which cryptography warns about.
        warnings.simplefilter("ignore")
        ca_cert = x509.load_pem_x509_certificate(cluster.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(cluster.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node.name}"),
    ])  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_file, key_file = node.cert_dir / "node-client.crt", node.cert_dir / "node-client.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


# --- processes ---------------------------------------------------------------------------


def _start(node: realnode.RealNode, name: str, argv: list[str]) -> int:
    log = node.logs_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the command; stopped by pid in `stop`
        )  # fmt: skip
    _children[proc.pid] = proc
    started = processes.started_at(proc.pid)
    (node.dir / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "started": started}))
    return proc.pid


def _pid(node: realnode.RealNode, name: str) -> int | None:
    """The pid of the node's process ``name`` if that very process still runs."""
    try:
        state = json.loads((node.dir / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    pid = int(state["pid"])
    if processes.alive(pid) and processes.started_at(pid) == state.get("started"):
        return pid
    child = _children.pop(pid, None)
    if child is not None:
        # It died on its own: reap it. A killed multithreaded process shows as a zombie
        # before its last thread is gone, and only then can it be waited for.
        try:
            child.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _children[pid] = child
    return None


def _stop_pid(pid: int, grace_s: float = _STOP_GRACE_S) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    child = _children.get(pid)
    while processes.alive(pid) and time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            break  # our own child, now reaped
        time.sleep(0.1)
    if processes.alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()


def _log_tail(node: realnode.RealNode, name: str, lines: int = 20) -> str:
    try:
        text = (node.logs_dir / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _wait(check: Callable[[], bool], what: str, timeout_s: float, node: realnode.RealNode,
          log: str) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise errors.ClusterError(
                f"real node {node.name}: {what} not within {timeout_s:g} s; "
                f"{log} log:\n{_log_tail(node, log)}",
                fix=f"read {node.logs_dir / (log + '.log')}",
            )
        time.sleep(0.2)


def _ctr(node: realnode.RealNode, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(install.binary("ctr")), "--address", str(node.containerd_socket),
            "--namespace", "k8s.io", *args]  # fmt: skip
    return _run(argv, check=False)


# --- start -------------------------------------------------------------------------------


def _cgroup_dirs(node: realnode.RealNode) -> list[Path]:
    return [h / node.cgroup_root.lstrip("/") for h in _hierarchies()]


def _register(node: realnode.RealNode) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    (REGISTRY / node.node_id).write_text(str(node.dir / "kubelet.pid"))


def _others_running(node: realnode.RealNode) -> bool:
    """Whether a real node other than ``node`` runs on this machine (anyone's)."""
    if not REGISTRY.exists():
        return False
    for entry in REGISTRY.iterdir():
        if entry.name == node.node_id:
            continue
        try:
            pid_file = Path(entry.read_text().strip())
            state = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            entry.unlink(missing_ok=True)  # its node is gone
            continue
        pid = int(state["pid"])
        if processes.alive(pid) and processes.started_at(pid) == state.get("started"):
            return True
        entry.unlink(missing_ok=True)
    return False


def start(
    cluster: Cluster, index: int, kube: Kube, *, on_progress: Progress | None = None
) -> realnode.RealNode:
    """Start real node ``index`` of ``cluster`` and wait until its Node is Ready."""
    say = on_progress or (lambda _: None)
    preflight()
    node_dir = realnode.node_dir(cluster.workdir, index)
    subnet = _free_subnet(str(node_dir), _routes_in_use())
    node = realnode.RealNode(cluster.name, index, node_dir, subnet)
    for d in (node.containerd_root, node.containerd_state, node.containerd_socket.parent,
              node.kubelet_root, node.cert_dir, node.cni_conf_dir, node.cni_ipam_dir,
              node.pod_logs_dir, node.logs_dir):  # fmt: skip
        d.mkdir(parents=True, exist_ok=True)
    (node.dir / "run").unlink(missing_ok=True)
    (node.dir / "run").symlink_to(node.run_dir)  # where to look for the node's sockets
    # Before anything runs: what to put back when the node goes.
    node.host_changes.write_text(json.dumps({
        "node": node.name, "node_id": node.node_id, "subnet": str(subnet),
        "bridge": node.bridge, "network": node.network_name, "sysctls": _sysctls(),
        "chains": _chains(), "cgroups": [str(d) for d in _cgroup_dirs(node)],
        "host_dirs": [str(d) for d in _HOST_DIRS if d.exists()],
    }, indent=1))  # fmt: skip
    _register(node)

    say(f"{node.name}: building the pause and app images (cached after the first time)")
    pause, app = images.pause(), images.app()
    cert, key = _issue_client_cert(cluster, node)
    node.kubeconfig.write_text(yaml.safe_dump(
        realnode.kubeconfig(cluster.server, cluster.ca_cert, cert, key, f"system:node:{node.name}")
    ))  # fmt: skip
    node.containerd_config.write_text(realnode.containerd_config(node, sandbox_image=pause.ref))
    (node.cni_conf_dir / "10-tenantry.conflist").write_text(
        json.dumps(realnode.cni_config(node), indent=1)
    )
    ports = realnode.Ports(kubelet=processes.free_port(), healthz=processes.free_port())
    node.kubelet_config.write_text(yaml.safe_dump(
        realnode.kubelet_configuration(node, ports, ca_file=cluster.ca_cert)
    ))  # fmt: skip
    # The bridge exists before the kubelet, whose node IP and listener are on it (the CNI
    # plugin finds it and adds its pods to it).
    _run(["ip", "link", "add", node.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{node.gateway}/{subnet.prefixlen}", "dev", node.bridge])
    _run(["ip", "link", "set", node.bridge, "up"])
    # The kubelet refuses a cgroup root that does not exist.
    for d in _cgroup_dirs(node):
        d.mkdir(exist_ok=True)

    say(f"{node.name}: starting containerd")
    pid = _start(node, "containerd", realnode.containerd_args(
        node, containerd_binary=install.binary("containerd")))  # fmt: skip
    _wait(lambda: processes.alive(pid) and _ctr(node, "version").returncode == 0,
          "containerd answering on its socket", _START_TIMEOUT_S, node, "containerd")  # fmt: skip
    for image in (pause, app):
        images.import_image(install.binary("ctr"), node.containerd_socket, image)

    say(f"{node.name}: starting the kubelet")
    kubelet = _start(node, "kubelet", realnode.kubelet_args(
        node, kubelet_binary=install.binary("kubelet")))  # fmt: skip
    started = time.monotonic()
    last = [0.0]

    def ready() -> bool:
        if not processes.alive(kubelet):
            raise errors.ClusterError(
                f"the kubelet of {node.name} exited:\n{_log_tail(node, 'kubelet')}",
                fix=f"read {node.logs_dir / 'kubelet.log'}",
            )
        waited = time.monotonic() - started
        if waited - last[0] >= 5:
            last[0] = waited
            say(f"{node.name}: waiting for the node to be Ready ({waited:.0f}s)")
        try:
            status = kube.get(Node, node.name).status
        except errors.NotFoundError:
            return False
        conditions = (status.conditions or []) if status else []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    _wait(ready, "Node Ready", _READY_TIMEOUT_S, node, "kubelet")
    # A node stopped with its cluster was cordoned by its drain; this is its new start.
    with translate(f"uncordon node {node.name}"):
        kube.client.patch(Node, node.name, {"spec": {"unschedulable": False}})
    say(f"{node.name}: Ready after {time.monotonic() - started:.0f}s")
    return node


# --- stop --------------------------------------------------------------------------------


def _load(node_dir: Path) -> tuple[realnode.RealNode, dict[str, Any]] | None:
    try:
        changes: dict[str, Any] = json.loads((node_dir / "host-changes.json").read_text())
    except (OSError, ValueError):
        return None
    index = int(node_dir.name)
    cluster = str(changes["node"]).rsplit("-real-", 1)[0]
    subnet = ipaddress.IPv4Network(changes["subnet"])
    return realnode.RealNode(cluster, index, node_dir, subnet), changes


def import_image(node_dir: Path, image: images.Image) -> None:
    """Import ``image`` into the containerd of the real node in ``node_dir``."""
    loaded = _load(node_dir)
    if loaded is None:
        raise errors.ClusterError(f"{node_dir} holds no real node")
    images.import_image(install.binary("ctr"), loaded[0].containerd_socket, image)


def node_dirs(cluster_workdir: Path) -> list[Path]:
    root = cluster_workdir / "real"
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.exists() else []


def _drain(node: realnode.RealNode, kube: Kube | None) -> None:
    """Have the kubelet tear its pods down (CNI DEL, network namespaces), bounded."""
    if kube is None or _pid(node, "kubelet") is None:
        return
    with contextlib.suppress(errors.TenantryError):
        # Unschedulable first: a Deployment would otherwise put each deleted pod straight
        # back, and the drain would wait out its whole bound for nothing.
        with translate(f"cordon node {node.name}"):
            kube.client.patch(Node, node.name, {"spec": {"unschedulable": True}})
        for pod in kube.list(Pod):
            if pod.spec and pod.spec.nodeName == node.name and pod.metadata:
                kube.delete(Pod, str(pod.metadata.name), namespace=pod.metadata.namespace)
    deadline = time.monotonic() + _TEARDOWN_TIMEOUT_S
    while time.monotonic() < deadline:
        done = _ctr(node, "tasks", "list", "--quiet")
        if done.returncode != 0 or not done.stdout.strip():
            return
        time.sleep(0.5)


def _kill_cgroup_members(cgroups: list[str]) -> None:
    """Kill by pid every process left in the node's own cgroups (containers, shims)."""
    for root in map(Path, cgroups):
        if not root.exists():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for line in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(line), signal.SIGKILL)


def _shim_pids(node: realnode.RealNode) -> list[int]:
    """The runc shims of this node's containerd: their command line names its socket."""
    pids = []
    needle = str(node.containerd_socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv:
                pids.append(int(entry.name))
    return pids


def _unmount_under(path: Path) -> None:
    """Unmount everything mounted under ``path``, deepest first."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        if _run(["umount", point], check=False).returncode != 0:
            _run(["umount", "--lazy", point], check=False)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


def _remove_netns(subnet: str) -> None:
    """Delete the pod network namespaces a dead kubelet could not tear down: those holding
    an address of this node's own pod subnet (no other node uses it)."""
    netns_dir = Path("/var/run/netns")
    if not netns_dir.exists():
        return
    network = ipaddress.IPv4Network(subnet)
    for entry in netns_dir.iterdir():
        done = _run(["ip", "-n", entry.name, "-4", "-o", "addr", "show"], check=False)
        addresses = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", done.stdout)
        if any(ipaddress.IPv4Address(a) in network for a in addresses):
            _run(["ip", "netns", "delete", entry.name], check=False)


def _remove_tagged_rules(network: str) -> None:
    """Delete the iptables rules the CNI plugins tagged with this node's network name, and
    the chains they jumped to (the plugins' per-pod chains)."""
    for table in _TABLES:
        done = _run(["iptables", "-w", "-t", table, "-S"], check=False)
        chains = set()
        for line in done.stdout.splitlines():
            if line.startswith("-A ") and network in line:
                argv = line.split()
                if "-j" in argv:
                    chains.add(argv[argv.index("-j") + 1])
                # iptables -S quotes the comment (with escaped quotes inside) as the shell does.
                rule = shlex.split(line)[1:]
                _run(["iptables", "-w", "-t", table, "-D", *rule], check=False)
        for chain in chains:
            if chain.startswith("CNI-") and not chain.startswith("CNI-HOSTPORT"):
                _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
                _run(["iptables", "-w", "-t", table, "-X", chain], check=False)


def _remove_new_chains(before: list[list[str]]) -> None:
    """Delete the kubelet's chains that were not there before the node started."""
    existed = {tuple(c) for c in before}
    for command, table, chain in _chains():
        if (command, table, chain) in existed or chain not in realnode.KUBELET_CHAINS:
            continue
        # Rules elsewhere that jump to it go first, then the chain itself.
        done = _run([command, "-w", "-t", table, "-S"], check=False)
        for line in done.stdout.splitlines():
            argv = line.split()
            if line.startswith("-A ") and argv[-2:] == ["-j", chain]:
                _run([command, "-w", "-t", table, "-D", *argv[1:]], check=False)
        _run([command, "-w", "-t", table, "-F", chain], check=False)
        _run([command, "-w", "-t", table, "-X", chain], check=False)


def _rmdir_tree(root: Path) -> None:
    if not root.exists():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def stop(node_dir: Path, kube: Kube | None) -> None:
    """Stop the real node in ``node_dir`` and undo what it did to the host. Safe twice."""
    loaded = _load(node_dir)
    if loaded is None:
        return
    node, changes = loaded
    _drain(node, kube)
    for name in ("kubelet", "containerd"):
        pid = _pid(node, name)
        if pid is not None:
            _stop_pid(pid)
    _kill_cgroup_members(changes.get("cgroups", []))
    for pid in _shim_pids(node):
        _stop_pid(pid, grace_s=2.0)
    _remove_netns(str(changes["subnet"]))
    _unmount_under(node.dir)
    _unmount_under(node.run_dir)
    shutil.rmtree(node.run_dir, ignore_errors=True)
    _remove_tagged_rules(str(changes["network"]))
    _run(["ip", "link", "delete", str(changes["bridge"])], check=False)
    for cgroup in changes.get("cgroups", []):
        _rmdir_tree(Path(cgroup))
    (REGISTRY / node.node_id).unlink(missing_ok=True)
    if not _others_running(node):
        # Shared by every kubelet on the machine: put back only when none is left.
        _remove_new_chains(changes.get("chains", []))
        for name, value in changes.get("sysctls", {}).items():
            with contextlib.suppress(OSError):
                path = Path("/proc/sys", *name.split("."))
                if path.read_text().strip() != value:
                    path.write_text(value + "\n")
        existed = set(changes.get("host_dirs", []))
        for d in _HOST_DIRS:
            if str(d) not in existed and d.exists() and not mounts_under(d):
                shutil.rmtree(d, ignore_errors=True)
        for d in (realnode.RUN_ROOT, REGISTRY, REGISTRY.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty
    node.host_changes.unlink(missing_ok=True)
    _reap_children()


def _reap_children() -> None:
    """Reap every node process this interpreter started that has exited, however it went."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)
