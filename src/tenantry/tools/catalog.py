"""The pinned non-Python tools Tenantry needs, and how to check each one.

Each Go tool is a small Go module under ``tools/go/<name>/`` whose ``go.mod``
requires the upstream module at an exact version and whose ``go.sum`` pins every
dependency. That ``require`` line is the one place a version is written: the
catalog reads it from there, so bumping a tool is one edit plus ``go mod tidy``.

This module is pure: it describes tools and parses text; `tenantry.tools.install`
does the building.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

GO_MODULES_DIR = Path(__file__).parent / "go"


@dataclass(frozen=True)
class Binary:
    """One executable a tool builds, and how to read its version back."""

    name: str
    package: str
    version_args: tuple[str, ...]
    # A regex whose first group is the version the binary reports about itself.
    version_pattern: str


@dataclass(frozen=True)
class GoTool:
    """A group of binaries built from one pinned upstream Go module."""

    name: str
    module: str
    binaries: tuple[Binary, ...]
    # ``{version}``, ``{major}`` and ``{minor}`` are filled from the pinned version.
    ldflags: tuple[str, ...] = ()
    purpose: str = ""
    # Files of the upstream module (paths inside it) that Tenantry reads at run time;
    # copied next to the binaries so nothing reads Go's module cache later.
    data_files: tuple[str, ...] = ()
    # An OpenTelemetry Collector distribution: ocb generates its sources from this
    # manifest (inside the tool's module directory) and the build uses the module's
    # own go.mod/go.sum, not ocb's, so every dependency stays pinned.
    collector_manifest: str | None = None
    # Go build tags (``go build -tags``): which optional parts of the module are built.
    tags: tuple[str, ...] = ()

    @property
    def module_dir(self) -> Path:
        """The Go module in this repository that pins the tool."""
        return GO_MODULES_DIR / self.name

    @property
    def version(self) -> str:
        """The pinned version, read from the ``require`` line of the tool's go.mod."""
        return pinned_version((self.module_dir / "go.mod").read_text(), self.module)

    def rendered_ldflags(self) -> str:
        """The linker flags with the version filled in (stamps ``--version`` output)."""
        major, minor = _major_minor(self.version)
        fields = {"version": self.version, "major": major, "minor": minor}
        return " ".join(["-s", "-w", *(flag.format(**fields) for flag in self.ldflags)])

    def fingerprint(self, go_version: str) -> str:
        """A digest of everything that decides the build output; a change means rebuild."""
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum", self.collector_manifest):
            if name:
                digest.update((self.module_dir / name).read_bytes())
        # Tenantry's own Go programs built with the tool (tenantry-helmd beside helm).
        for source in sorted(self.module_dir.rglob("*.go")):
            digest.update(source.relative_to(self.module_dir).as_posix().encode())
            digest.update(source.read_bytes())
        digest.update(self.rendered_ldflags().encode())
        digest.update(" ".join(b.package for b in self.binaries).encode())
        digest.update(" ".join(self.data_files).encode())
        if self.tags:  # kept out of the digest when empty: other tools are not rebuilt
            digest.update(("tags " + ",".join(self.tags)).encode())
        digest.update(go_version.encode())
        return digest.hexdigest()[:16]


def pinned_version(go_mod: str, module: str) -> str:
    """Return the version ``go_mod`` requires of ``module``.

    >>> pinned_version("require k8s.io/kubernetes v1.36.3\\n", "k8s.io/kubernetes")
    'v1.36.3'
    """
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise ValueError(f"go.mod does not require {module}")
    return match.group(1)


def parse_reported_version(binary: Binary, output: str) -> str | None:
    """Extract the version a binary printed, or None if it printed something else."""
    match = re.search(binary.version_pattern, output)
    return match.group(1) if match else None


def go_output_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package's binary.

    >>> go_output_name("go.etcd.io/etcd/server/v3")
    'server'
    """
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        return parts[-2]
    return parts[-1]


def _major_minor(version: str) -> tuple[str, str]:
    parts = version.lstrip("v").split(".")
    return parts[0], parts[1] if len(parts) > 1 else "0"


_KUBE_VERSION_VARS = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def _kube_binary(name: str) -> Binary:
    return Binary(
        name=name,
        package=f"k8s.io/kubernetes/cmd/{name}",
        version_args=("--version",),
        version_pattern=r"Kubernetes (v\d+\.\d+\.\d+)",
    )


KUBERNETES = GoTool(
    name="kubernetes",
    module="k8s.io/kubernetes",
    purpose="control plane of the local clusters, and kubectl for people",
    binaries=(
        _kube_binary("kube-apiserver"),
        _kube_binary("kube-controller-manager"),
        _kube_binary("kube-scheduler"),
        Binary(
            name="kubectl",
            package="k8s.io/kubernetes/cmd/kubectl",
            version_args=("version", "--client"),
            version_pattern=r"Client Version: (v\d+\.\d+\.\d+)",
        ),
    ),
    # Without these the binaries report v0.0.0-master and kwokctl cannot tell the version.
    ldflags=tuple(
        f"-X {pkg}.{var}={value}"
        for pkg in _KUBE_VERSION_VARS
        for var, value in (
            ("gitVersion", "{version}"),
            ("gitMajor", "{major}"),
            ("gitMinor", "{minor}"),
            ("gitTreeState", "clean"),
        )
    ),
)

# The kubelet of the local clusters' real nodes. Its own module (not a fifth binary of
# KUBERNETES) so adding it leaves the control plane's go.mod, and so its build in the
# shared tool cache, as it is; `kubelet_matches_control_plane` keeps the two
# `k8s.io/kubernetes` requires equal, the one pin both follow.
KUBELET = GoTool(
    name="kubelet",
    module="k8s.io/kubernetes",
    purpose="runs real pods on the local clusters' real nodes",
    binaries=(_kube_binary("kubelet"),),
    ldflags=KUBERNETES.ldflags,
)

_CONTAINERD_MODULE = "github.com/containerd/containerd/v2"

CONTAINERD = GoTool(
    name="containerd",
    module=_CONTAINERD_MODULE,
    purpose="the container runtime of the local clusters' real nodes (runc is Debian's)",
    binaries=(
        Binary(
            name="containerd",
            package=f"{_CONTAINERD_MODULE}/cmd/containerd",
            version_args=("--version",),
            version_pattern=r"containerd \S+ v?(\d+\.\d+\.\d+)",
        ),
        Binary(
            name="containerd-shim-runc-v2",
            package=f"{_CONTAINERD_MODULE}/cmd/containerd-shim-runc-v2",
            version_args=("-v",),
            version_pattern=r"Version:\s+v?(\d+\.\d+\.\d+)",
        ),
        Binary(
            name="ctr",
            package=f"{_CONTAINERD_MODULE}/cmd/ctr",
            version_args=("--version",),
            version_pattern=r"ctr \S+ v?(\d+\.\d+\.\d+)",
        ),
    ),
    ldflags=(
        f"-X {_CONTAINERD_MODULE}/version.Version={{version}}",
        f"-X {_CONTAINERD_MODULE}/version.Revision=tenantry-pinned",
    ),
)

ETCD = GoTool(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    purpose="the local clusters' datastore",
    binaries=(
        Binary(
            name="etcd",
            package="go.etcd.io/etcd/server/v3",
            version_args=("--version",),
            version_pattern=r"etcd Version: (\d+\.\d+\.\d+)",
        ),
    ),
)

# kwok's default simulation stages, as kwokctl uses them when given none. Tenantry
# passes its own extra stages, and kwokctl then drops its defaults, so they are
# passed back explicitly from the pinned release.
KWOK_DEFAULT_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)

KWOK = GoTool(
    name="kwok",
    module="sigs.k8s.io/kwok",
    purpose="kwokctl runs the local clusters; kwok simulates their nodes and pods",
    data_files=KWOK_DEFAULT_STAGES,
    binaries=(
        Binary(
            name="kwokctl",
            package="sigs.k8s.io/kwok/cmd/kwokctl",
            version_args=("--version",),
            version_pattern=r"version v?(\d+\.\d+\.\d+)",
        ),
        Binary(
            name="kwok",
            package="sigs.k8s.io/kwok/cmd/kwok",
            version_args=("--version",),
            version_pattern=r"version v?(\d+\.\d+\.\d+)",
        ),
    ),
)

HELM = GoTool(
    name="helm",
    module="helm.sh/helm/v4",
    purpose="renders, installs and tests charts; tenantry-helmd runs releases through its SDK",
    binaries=(
        Binary(
            name="helm",
            package="helm.sh/helm/v4/cmd/helm",
            version_args=("version", "--short"),
            version_pattern=r"(v\d+\.\d+\.\d+)",
        ),
        Binary(
            name="tenantry-helmd",
            package="tenantry.dev/tools/helm/helmd",
            version_args=("--version",),
            version_pattern=r"helm (v\d+\.\d+\.\d+)",
        ),
    ),
    ldflags=(
        "-X helm.sh/helm/v4/internal/version.version={version}",
        "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
    ),
)

OCB = GoTool(
    name="ocb",
    module="go.opentelemetry.io/collector/cmd/builder",
    purpose="the OpenTelemetry Collector builder; generates the log shipper's sources",
    binaries=(
        Binary(
            name="ocb",
            package="go.opentelemetry.io/collector/cmd/builder",
            version_args=("version",),
            version_pattern=r"ocb version (v\d+\.\d+\.\d+)",
        ),
    ),
)

OTELCOL = GoTool(
    name="otelcol",
    module="go.opentelemetry.io/collector/otelcol",
    purpose="ships every tenant's container logs to its Splunk index",
    collector_manifest="manifest.yaml",
    binaries=(
        Binary(
            name="otelcol-tenantry",
            package=".",
            version_args=("--version",),
            version_pattern=r"version (\d+\.\d+\.\d+)",
        ),
    ),
)

_PROMETHEUS_MODULE = "github.com/prometheus/prometheus"

# Debian's prometheus has no Kubernetes service discovery; the monitoring stack needs it
# to find real pods through each cluster's API (`tenantry.observability.pods`). Built
# with only the Kubernetes discovery (file and http are always in): the other clouds'
# discovery would double the build. promtool from the same build checks its config.
PROMETHEUS = GoTool(
    name="prometheus",
    module=_PROMETHEUS_MODULE,
    purpose="the monitoring stack's Prometheus, with Kubernetes discovery, and promtool",
    binaries=tuple(
        Binary(
            name=name,
            package=f"{_PROMETHEUS_MODULE}/cmd/{name}",
            version_args=("--version",),
            version_pattern=r"version v?(\d+\.\d+\.\d+)",
        )
        for name in ("prometheus", "promtool")
    ),
    # The module's version (v0.316.0 is Prometheus 3.16.0) is what the binaries report.
    ldflags=(
        "-X github.com/prometheus/common/version.Version={version}",
        "-X github.com/prometheus/common/version.Branch=tenantry-pinned",
    ),
    tags=("remove_all_sd", "enable_kubernetes_sd"),
)

# No binary: only its CustomResourceDefinitions, to validate rendered objects against.
PROMETHEUS_OPERATOR = GoTool(
    name="prometheus-operator",
    module="github.com/prometheus-operator/prometheus-operator",
    purpose="CRD schemas of ServiceMonitor, PrometheusRule and AlertmanagerConfig",
    binaries=(),
    data_files=tuple(
        f"example/prometheus-operator-crd/monitoring.coreos.com_{kind}.yaml"
        for kind in ("servicemonitors", "prometheusrules", "alertmanagerconfigs")
    ),
)

# No binary: only the ExternalSecret CRD, for clusters that run the External Secrets
# Operator (their tenants' secrets kept in AWS Secrets Manager become ExternalSecrets).
EXTERNAL_SECRETS = GoTool(
    name="external-secrets",
    module="github.com/external-secrets/external-secrets",
    purpose="the CRD schema of ExternalSecret (the External Secrets Operator)",
    binaries=(),
    data_files=("config/crds/bases/external-secrets.io_externalsecrets.yaml",),
)

_DISTRIBUTION_MODULE = "github.com/distribution/distribution/v3"

# The CNCF Distribution registry: the OCI registry the local platform runs for
# `artifacts.kind: oci` with `registry: local` (TLS from the platform's local CA,
# htpasswd, notifications to the Tenantry server). Unstamped it reports
# "v3.1.2+unknown"; the linker flags make it report exactly the pinned version.
REGISTRY = GoTool(
    name="registry",
    module=_DISTRIBUTION_MODULE,
    purpose="the local OCI registry that holds charts when artifacts.kind is oci",
    binaries=(
        Binary(
            name="registry",
            package=f"{_DISTRIBUTION_MODULE}/cmd/registry",
            version_args=("--version",),
            # "<argv0> github.com/distribution/distribution/v3 v3.1.2"
            version_pattern=r"github\.com/distribution/distribution/v3 (v\d+\.\d+\.\d+\S*)",
        ),
    ),
    ldflags=(
        f"-X {_DISTRIBUTION_MODULE}/version.version={{version}}",
        f"-X {_DISTRIBUTION_MODULE}/version.revision=tenantry-pinned",
    ),
)

# Build order: cheapest first, so a missing Go toolchain or proxy fails fast; ocb
# before the collector it generates.
GO_TOOLS: tuple[GoTool, ...] = (
    HELM, KWOK, ETCD, REGISTRY, PROMETHEUS_OPERATOR, EXTERNAL_SECRETS, OCB, OTELCOL,
    PROMETHEUS, KUBERNETES, CONTAINERD, KUBELET,
)  # fmt: skip

# The tools only real nodes need; a kwok-only cluster runs without them.
REAL_NODE_TOOLS: tuple[GoTool, ...] = (CONTAINERD, KUBELET)

# Oldest Go that builds every pinned module (their go.mod files say `go 1.26.0`).
MIN_GO = (1, 26)


def tool_for_binary(name: str) -> GoTool:
    """Return the tool that builds the binary called ``name``."""
    for tool in GO_TOOLS:
        if any(b.name == name for b in tool.binaries):
            return tool
    raise KeyError(name)


def kubelet_matches_control_plane() -> bool:
    """Whether the kubelet is pinned to the control plane's Kubernetes release."""
    return KUBELET.version == KUBERNETES.version


def comparable_version(version: str) -> str:
    """Versions as binaries print them: etcd and kwok drop the leading ``v``."""
    return version.lstrip("v")
