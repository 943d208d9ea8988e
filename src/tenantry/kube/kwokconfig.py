"""What a local cluster is made of, as data: the kwokctl configuration and the fake nodes.

Pure: no I/O. `tenantry.kube.localcluster` writes the configuration to disk and
runs kwokctl with it; these functions only decide what the cluster looks like, so
they are tested on their own.

The control plane is real (kube-apiserver, kube-controller-manager, kube-scheduler,
etcd). Only nodes and pod status are simulated by kwok: pods are scheduled, bound
and marked Running and Ready, but no container runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Admission plugins the local clusters enforce. Explicit rather than "the defaults"
# so a Kubernetes upgrade cannot silently drop one that tenancy relies on.
ADMISSION_PLUGINS: tuple[str, ...] = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "ResourceQuota",
    "PodSecurity",
    "Priority",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "TaintNodesByCondition",
    "ValidatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
)

# The Go garbage collector's target for the control plane's busiest processes: a heap
# may grow to 3x what is live (Go's default is 2x) before a collection. Three local
# clusters share two cores, and onboarding a thousand tenants into them is CPU-bound:
# at the default, collections cost the API servers ~11 % of their CPU. Measured on 1,000
# tenants x 3 clusters, in pairs of runs: 4.17 -> 3.90 and 4.56 -> 4.27 CPU ms per
# object (-6 %), for ~+190 MB peak RSS per API server (500 -> 690 MB) and ~+45 MB for
# its etcd and controller-manager together.
CONTROL_PLANE_GOGC = "200"
GOGC_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "etcd")

# Every local server listens on loopback only.
BIND_ADDRESS = "127.0.0.1"

# The annotation kwok uses to pick the nodes it simulates.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

DEFAULT_NODES = 3


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the binaries a local cluster runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path


@dataclass(frozen=True)
class Versions:
    """Versions kwokctl must be told, since it adapts flags to them."""

    kubernetes: str
    etcd: str
    kwok: str


@dataclass(frozen=True)
class NodeShape:
    """Capacity of each simulated node."""

    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"


SERVICE_CIDR = "10.0.0.0/16"

# The kube-apiserver flag that names a static token file (``token,user,uid,"groups"``).
TOKEN_AUTH_FILE_ARG = "token-auth-file"  # noqa: S105 (a flag name, not a secret)


def kwokctl_configuration(
    binaries: Binaries, versions: Versions, *, token_file: Path | None = None
) -> dict[str, Any]:
    """The KwokctlConfiguration for one local cluster with the binary runtime.

    With ``token_file`` (an absolute path) the API server also accepts the bearer
    tokens listed there, so people can reach the cluster with their own identity
    instead of the admin certificate. The binary runtime runs kube-apiserver on this
    machine, so the path is used as is; kwokctl keeps the configuration, so a later
    ``kwokctl start`` passes the same flag.
    """
    apiserver_args = [
        {"key": "enable-admission-plugins", "value": ",".join(ADMISSION_PLUGINS)},
        # The default /24 holds 254 Services: too few for a thousand releases on one
        # cluster. A /16 keeps 10.0.0.1 (the kubernetes Service) where it was.
        {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
    ]
    if token_file is not None:
        apiserver_args.append({"key": TOKEN_AUTH_FILE_ARG, "value": str(token_file)})
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": versions.kubernetes,
            "etcdVersion": versions.etcd.lstrip("v"),
            "kwokVersion": versions.kwok,
            "kubeApiserverBinary": str(binaries.kube_apiserver),
            "kubeControllerManagerBinary": str(binaries.kube_controller_manager),
            "kubeSchedulerBinary": str(binaries.kube_scheduler),
            "kubectlBinary": str(binaries.kubectl),
            "etcdBinary": str(binaries.etcd),
            "kwokControllerBinary": str(binaries.kwok),
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "securePort": True,
            "bindAddress": BIND_ADDRESS,
            "disableQPSLimits": True,
        },
        "componentsPatches": [
            {
                "name": name,
                **({"extraArgs": apiserver_args} if name == "kube-apiserver" else {}),
                "extraEnvs": [{"name": "GOGC", "value": CONTROL_PLANE_GOGC}],
            }
            for name in GOGC_COMPONENTS
        ],
    }


def token_file_of(configuration: Mapping[str, Any]) -> Path | None:
    """The token file a KwokctlConfiguration gives kube-apiserver, or None."""
    for patch in configuration.get("componentsPatches") or []:
        if patch.get("name") != "kube-apiserver":
            continue
        for arg in patch.get("extraArgs") or []:
            if arg.get("key") == TOKEN_AUTH_FILE_ARG:
                return Path(str(arg["value"]))
    return None


# Pods labelled with this never become ready: kwok reports their container in
# CrashLoopBackOff. Tests and `verify` use it to prove a failed rollout is caught.
SIMULATE_LABEL = "tenantry.dev/simulate"
NEVER_READY = "never-ready"
# Pods labelled ``slow-ready`` become ready only after this long, so a test can act
# while a rollout is in progress (kill a deployer mid-deploy, say).
SLOW_READY = "slow-ready"
SLOW_READY_MS = 4000

_CRASHLOOP_STATUS = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: false
  restartCount: 5
  state:
    waiting:
      reason: CrashLoopBackOff
      message: "back-off restarting failed container (simulated by kwok)"
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _pod_stage(
    name: str,
    *,
    selector_key: str,
    values: list[str],
    phase: str,
    status: str,
    delay_ms: int | None = None,
) -> dict[str, Any]:
    # Weight 10000 beats kwok's default stages, which match the same pods.
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {
            "matchExpressions": [
                {"key": selector_key, "operator": "In", "values": values},
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": [phase]},
            ]
        },
        "weight": 10000,
        "next": {"statusTemplate": status},
    }
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


_SIMULATE_KEY = f'.metadata.labels["{SIMULATE_LABEL}"]'


def never_ready_stage() -> dict[str, Any]:
    """A kwok Stage that keeps pods labelled ``tenantry.dev/simulate: never-ready`` unready."""
    return _pod_stage(
        "tenantry-pod-never-ready",
        selector_key=_SIMULATE_KEY,
        values=[NEVER_READY],
        phase="Pending",
        status=_CRASHLOOP_STATUS,
    )


_TEST_SUCCEEDED_STATUS = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodCompleted
  type: Ready
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
"""


_READY_STATUS = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def slow_ready_stage() -> dict[str, Any]:
    """A kwok Stage that makes pods labelled ``tenantry.dev/simulate: slow-ready`` ready late."""
    return _pod_stage(
        "tenantry-pod-slow-ready",
        selector_key=_SIMULATE_KEY,
        values=[SLOW_READY],
        phase="Pending",
        status=_READY_STATUS,
        delay_ms=SLOW_READY_MS,
    )


def helm_test_stage() -> dict[str, Any]:
    """A kwok Stage that completes Helm test pods successfully.

    kwok's defaults only complete pods owned by Jobs; `helm test` runs bare pods
    and waits for them to succeed, so without this it would wait forever.
    """
    return _pod_stage(
        "tenantry-helm-test-succeeds",
        selector_key='.metadata.annotations["helm.sh/hook"]',
        values=["test", "test-success"],
        phase="Running",
        status=_TEST_SUCCEEDED_STATUS,
    )


def node_manifest(name: str, shape: NodeShape = NodeShape()) -> dict[str, Any]:
    """A Node object that kwok will simulate (heartbeats, Ready condition, pod status)."""
    resources: Mapping[str, str] = {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": dict(resources),
            "capacity": dict(resources),
            "nodeInfo": {
                "kubeletVersion": "fake",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def node_names(cluster: str, count: int) -> list[str]:
    """Names of the ``count`` simulated nodes of ``cluster``."""
    return [f"{cluster}-node-{i}" for i in range(count)]
