"""The tool catalog reads pins from go.mod and stamps versions into builds."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantry.tools import catalog


def test_every_tool_has_a_pinned_version_in_its_go_mod() -> None:
    for tool in catalog.GO_TOOLS:
        assert tool.version.startswith("v"), tool.name
        assert (tool.module_dir / "go.sum").exists(), f"{tool.name}: run go mod tidy"


def test_every_binary_package_is_declared_as_a_go_tool() -> None:
    # `go build` of a package the module does not declare would need network to resolve;
    # Tenantry's own (tenantry-helmd) is a directory of the module itself.
    for tool in catalog.GO_TOOLS:
        go_mod = (tool.module_dir / "go.mod").read_text()
        module = go_mod.split("\nmodule ", 1)[1].split()[0]
        for binary in tool.binaries:
            if binary.package.startswith(module + "/"):
                assert (tool.module_dir / binary.package.removeprefix(module + "/")).is_dir()
                continue
            assert binary.package in go_mod, f"{binary.package} missing from {tool.name}/go.mod"


def test_pinned_version_reads_single_and_block_requires() -> None:
    single = "module x\n\nrequire k8s.io/kubernetes v1.36.3\n"
    block = (
        "module x\n\nrequire (\n\tfoo.io/bar v0.1.0\n\tk8s.io/kubernetes v1.36.3 // indirect\n)\n"
    )
    assert catalog.pinned_version(single, "k8s.io/kubernetes") == "v1.36.3"
    assert catalog.pinned_version(block, "k8s.io/kubernetes") == "v1.36.3"


def test_pinned_version_does_not_match_a_longer_module_path() -> None:
    with pytest.raises(ValueError, match="does not require"):
        catalog.pinned_version("require k8s.io/kubernetes-extra v1.0.0\n", "k8s.io/kubernetes")


@given(st.text())
def test_pinned_version_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        catalog.pinned_version(text, "k8s.io/kubernetes")


def test_kubernetes_ldflags_stamp_the_pinned_version() -> None:
    flags = catalog.KUBERNETES.rendered_ldflags()
    version = catalog.KUBERNETES.version
    assert f"k8s.io/component-base/version.gitVersion={version}" in flags
    major, minor = version.lstrip("v").split(".")[:2]
    assert f"gitMajor={major}" in flags and f"gitMinor={minor}" in flags
    assert "{" not in flags


def test_fingerprint_changes_with_the_go_version() -> None:
    assert catalog.HELM.fingerprint("go1.26.8") != catalog.HELM.fingerprint("go1.27.0")
    assert catalog.HELM.fingerprint("go1.26.8") == catalog.HELM.fingerprint("go1.26.8")


@pytest.mark.parametrize(
    ("binary", "printed", "expected"),
    [
        ("kube-apiserver", "Kubernetes v1.36.3\n", "v1.36.3"),
        ("kubectl", "Client Version: v1.36.3\nKustomize Version: v5.7.1\n", "v1.36.3"),
        ("etcd", "etcd Version: 3.6.16\nGit SHA: GitNotFound\n", "3.6.16"),
        ("kwokctl", "kwokctl version v0.8.0 go1.26.8 (linux/amd64)\n", "0.8.0"),
        ("helm", "v4.3.1+gunknown\n", "v4.3.1"),
    ],
)
def test_reported_versions_parse(binary: str, printed: str, expected: str) -> None:
    tool = catalog.tool_for_binary(binary)
    spec = next(b for b in tool.binaries if b.name == binary)
    assert catalog.parse_reported_version(spec, printed) == expected


def test_unrecognised_version_output_is_none() -> None:
    spec = catalog.ETCD.binaries[0]
    assert catalog.parse_reported_version(spec, "segmentation fault") is None


def test_tool_for_unknown_binary_raises_key_error() -> None:
    with pytest.raises(KeyError):
        catalog.tool_for_binary("docker")


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
        ("helm.sh/helm/v4/cmd/helm", "helm"),
    ],
)
def test_go_output_name_follows_go_build(package: str, name: str) -> None:
    assert catalog.go_output_name(package) == name


def test_kubelet_follows_the_control_planes_kubernetes_pin() -> None:
    # Two go.mod files require k8s.io/kubernetes; a bump must change both.
    assert catalog.kubelet_matches_control_plane(), (
        f"kubelet {catalog.KUBELET.version} != kubernetes {catalog.KUBERNETES.version}: "
        "bump tools/go/kubelet/go.mod too"
    )


def test_containerd_ldflags_stamp_the_pinned_version() -> None:
    flags = catalog.CONTAINERD.rendered_ldflags()
    assert f"containerd/v2/version.Version={catalog.CONTAINERD.version}" in flags


def test_prometheus_is_built_with_only_kubernetes_discovery_and_tags_decide_the_build() -> None:
    tool = catalog.PROMETHEUS
    assert tool.tags == ("remove_all_sd", "enable_kubernetes_sd")
    assert {b.name for b in tool.binaries} == {"prometheus", "promtool"}
    assert f"common/version.Version={tool.version}" in tool.rendered_ldflags()
    untagged = dataclasses.replace(tool, tags=())
    assert tool.fingerprint("go1.26.8") != untagged.fingerprint("go1.26.8")
    spec = tool.binaries[0]
    printed = "prometheus, version v0.316.0 (branch: tenantry-pinned, revision: unknown)\n"
    assert catalog.parse_reported_version(spec, printed) == "0.316.0"


def test_registry_is_the_pinned_distribution_build_and_reports_its_pin() -> None:
    tool = catalog.REGISTRY
    assert tool.module == "github.com/distribution/distribution/v3"
    assert tool.version == "v3.1.2"
    assert catalog.tool_for_binary("registry") is tool
    # Unstamped, the binary reports "v3.1.2+unknown"; the linker flags make it the pin.
    assert f"distribution/v3/version.version={tool.version}" in tool.rendered_ldflags()
    spec = tool.binaries[0]
    printed = "/cache/registry github.com/distribution/distribution/v3 v3.1.2\n"
    assert catalog.parse_reported_version(spec, printed) == "v3.1.2"
    unstamped = "registry github.com/distribution/distribution/v3 v3.1.2+unknown\n"
    assert catalog.parse_reported_version(spec, unstamped) == "v3.1.2+unknown"
