"""What a real node of a local cluster is made of, as data: directories, configs, flags.

Pure: no I/O. A real node is a kubelet and a containerd (with Debian's runc and CNI
plugins) running on this machine beside the cluster's kwok nodes; everything they
keep lives under ``<cluster workdir>/real/<index>/``, except its sockets and the
kubelet's root (too deep there for a socket path: `RUN_ROOT`); and every setting that
would otherwise write to a host-wide default (``/var/lib/kubelet``, ``/run/containerd``,
``/opt/containerd``, ``/kubepods``, port 10250) is pointed there or made unique, so
several clusters' real nodes — other people's too — can share one machine.
`tenantry.kube.realnodes` writes these files, starts the processes and undoes what
they did to the host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Debian's packages (installed by ./run): runc needs cgo, so it is not a pinned Go tool.
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
IPTABLES = Path("/usr/sbin/iptables")

# Unix socket paths are limited to 108 bytes (sun_path), and the kubelet makes sockets
# deep in its root dir (``pod-resources/NNNNNNNNNN``): a state directory is too deep for
# them, so each node's sockets and kubelet root live in a short directory here (tmpfs),
# linked from the node's directory and removed with the node.
RUN_ROOT = Path("/run/tenantry/nodes")
# Pod subnets are /24s of this range; one per node, chosen where no route is.
POD_RANGE = ipaddress.IPv4Network("10.244.0.0/16")
# The sysctls the kubelet (unless protectKernelDefaults) and the CNI bridge set.
HOST_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)
# Chains the kubelet makes in the host's iptables (v4 and v6) whatever its flags say.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
# A real node's kind, on the Node object: kwok manages only nodes annotated as its own.
REAL_NODE_LABEL = "tenantry.dev/node"


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one real node's kubelet."""

    kubelet: int
    healthz: int


@dataclass(frozen=True)
class RealNode:
    """One real node: its name, where its files go, its network."""

    cluster: str
    index: int
    dir: Path
    subnet: ipaddress.IPv4Network

    @property
    def name(self) -> str:
        return f"{self.cluster}-real-{self.index}"

    @property
    def node_id(self) -> str:
        """8 hex digits, unique per node directory: names host objects (bridge, cgroup)."""
        return hashlib.sha256(str(self.dir).encode()).hexdigest()[:8]

    @property
    def bridge(self) -> str:
        return f"tnt{self.node_id}"  # interface names are at most 15 characters

    @property
    def network_name(self) -> str:
        """The CNI network's name; it tags every iptables rule the bridge makes for it."""
        return f"tenantry-{self.node_id}"

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address: the node's IP (the kubelet refuses a loopback node IP),
        where its kubelet listens and what its pods route through."""
        return next(self.subnet.hosts())

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroup root, so it never touches another kubelet's /kubepods."""
        return f"/tenantry-{self.node_id}"

    # Directories and files, all under ``dir``.
    @property
    def containerd_root(self) -> Path:
        return self.dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.dir / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.dir / "containerd" / "config.toml"

    @property
    def run_dir(self) -> Path:
        """The node's short directory for sockets and the kubelet's root (see RUN_ROOT)."""
        return RUN_ROOT / self.node_id

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.dir / "kubelet-config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "pki" / "kubelet.kubeconfig"

    @property
    def cert_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.dir / "cni" / "ipam"

    @property
    def pod_logs_dir(self) -> Path:
        return self.dir / "pod-logs"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def host_changes(self) -> Path:
        """What starting the node changed on the host, for `delete` to undo."""
        return self.dir / "host-changes.json"


def node_dir(cluster_workdir: Path, index: int) -> Path:
    return cluster_workdir / "real" / str(index)


def candidate_subnets(seed: str) -> list[ipaddress.IPv4Network]:
    """Every /24 of `POD_RANGE`, starting at one picked by ``seed`` (spreads nodes out)."""
    subnets = list(POD_RANGE.subnets(new_prefix=24))
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(subnets)
    return subnets[start:] + subnets[:start]


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_config(node: RealNode, *, sandbox_image: str) -> str:
    """containerd's config (version 3): its state under the node's directory, CRI with
    Debian's runc and CNI, NRI off, and the project-built pause image as the sandbox."""
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""\
version = 3
root = {_toml_str(node.containerd_root)}
state = {_toml_str(node.containerd_state)}

[grpc]
  address = {_toml_str(node.containerd_socket)}

[ttrpc]
  address = {_toml_str(str(node.containerd_socket) + ".ttrpc")}

# No debug or metrics listener: nothing of a node listens beyond its sockets.
[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins.'io.containerd.internal.v1.opt']
  path = {_toml_str(node.dir / "containerd" / "opt")}

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  # Images are imported, never pulled: nothing may drop an unpacked layer.
  discard_unpacked_layers = false
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {_toml_str(sandbox_image)}

[{cri_runtime}]
  enable_selinux = false
  # These VMs withhold CAP_SYS_RESOURCE: a negative oom_score_adj is refused and every
  # sandbox would fail ("can't get final child's PID from pipe"). Keep pods at >= ours.
  restrict_oom_score_adj = true
  [{cri_runtime}.containerd]
    default_runtime_name = "runc"
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_runtime}.containerd.runtimes.runc.options]
        BinaryName = {_toml_str(RUNC)}
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = [{_toml_str(CNI_BIN_DIR)}]
    conf_dir = {_toml_str(node.cni_conf_dir)}
    max_conf_num = 1
"""


def cni_config(node: RealNode) -> dict[str, Any]:
    """The node's pod network: a bridge of its own, host-local addresses, portmap."""
    gateway = node.gateway
    return {
        "cniVersion": "1.0.0",
        "name": node.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.cni_ipam_dir),
                    "ranges": [[{"subnet": str(node.subnet), "gateway": str(gateway)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_configuration(node: RealNode, ports: Ports, *, ca_file: Path) -> dict[str, Any]:
    """The KubeletConfiguration: loopback only, cgroupfs on cgroup v1, state under the node."""
    socket = f"unix://{node.containerd_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # On the node's own bridge: the API server reaches it there for logs and exec.
        "address": str(node.gateway),
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        # No systemd here (pid 1 is not systemd), and the hosts are on cgroup v1.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupRoot": node.cgroup_root,
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "podLogsDir": str(node.pod_logs_dir),
        "failSwapOn": False,
        "podCIDR": str(node.subnet),
        # Imported images cannot be pulled again: never collect them, and evict only
        # when the disk is really full (these machines' disks are shared and vary).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "registerNode": True,
    }


def kubelet_args(node: RealNode, *, kubelet_binary: Path) -> list[str]:
    """The kubelet's command line: everything it writes goes under the node's directory."""
    return [
        str(kubelet_binary),
        f"--config={node.kubelet_config}",
        f"--kubeconfig={node.kubeconfig}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={node.cert_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.gateway}",
        f"--node-labels={REAL_NODE_LABEL}=real,type=real",
        "--v=1",
    ]


def containerd_args(node: RealNode, *, containerd_binary: Path) -> list[str]:
    return [str(containerd_binary), "--config", str(node.containerd_config)]


def kubeconfig(server: str, ca_file: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    """A kubeconfig that authenticates with a client certificate."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


def kwok_controller_patch(annotation_selector: str) -> dict[str, Any]:
    """A kwokctl components patch so kwok manages only the nodes annotated as its own:
    kwokctl's binary runtime passes ``--manage-all-nodes=true``, and kwok would then
    take over the real nodes too (the later flag wins)."""
    return {
        "name": "kwok-controller",
        "extraArgs": [
            {"key": "manage-all-nodes", "value": "false"},
            {"key": "manage-nodes-with-annotation-selector", "value": annotation_selector},
        ],
    }


def apiserver_kubelet_args(pki_dir: Path) -> list[dict[str, str]]:
    """kube-apiserver flags so it reaches real nodes' kubelets (pod logs, exec).

    A real node's Hostname address is its name, which no DNS here resolves: the API
    server must use its InternalIP (the bridge address the kubelet listens on). The
    kubelet authenticates callers by client certificate (anonymous is off), so the API
    server presents the admin certificate kwokctl made (``<cluster>/pki``), in group
    system:masters, which the kubelet's webhook authorization then allows.
    """
    return [
        {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
        {"key": "kubelet-client-certificate", "value": str(pki_dir / "admin.crt")},
        {"key": "kubelet-client-key", "value": str(pki_dir / "admin.key")},
    ]
