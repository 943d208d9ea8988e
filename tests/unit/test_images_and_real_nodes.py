"""The pure planners of real nodes: the OCI image layout, and a node's files and flags."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
from pathlib import Path

import pytest

from tenantry.images import build, oci
from tenantry.kube import realnode

_FILES = {"/app": oci.File(b"\x7fELF fake binary", mode=0o755)}


def _spec() -> oci.ImageSpec:
    return oci.ImageSpec(name="tenantry.local/app:abc", files=_FILES, entrypoint=["/app"])


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_the_archive_is_an_oci_layout_naming_the_image_for_containerd() -> None:
    members = _members(oci.archive(_spec()))
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"][oci.NAME_ANNOTATION] == "tenantry.local/app:abc"
    assert descriptor["annotations"][oci.REF_ANNOTATION] == "abc"
    manifest = json.loads(members[f"blobs/sha256/{descriptor['digest'].split(':')[1]}"])
    # Every blob is stored under its own digest.
    for ref in (manifest["config"], *manifest["layers"]):
        blob = members[f"blobs/sha256/{ref['digest'].split(':')[1]}"]
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == ref["digest"]
        assert len(blob) == ref["size"]
    config = json.loads(members[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/app"]
    assert config["config"]["User"] == oci.NONROOT
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    layer = _members(members[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"])
    assert layer["app"] == _FILES["/app"].content and "tmp" in layer


def test_the_archive_is_reproducible_and_the_tag_follows_the_content() -> None:
    assert oci.archive(_spec()) == oci.archive(_spec())
    other = {"/app": oci.File(b"another binary", mode=0o755)}
    assert oci.content_tag(_FILES, ["/app"]) == oci.content_tag(_FILES, ["/app"])
    assert oci.content_tag(_FILES, ["/app"]) != oci.content_tag(other, ["/app"])


def test_a_node_that_lists_the_archive_s_manifest_under_its_name_needs_no_import(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "app.tar"
    archive.write_bytes(oci.archive(_spec()))
    digest = oci.manifest_digest(archive)
    members = _members(archive.read_bytes())
    assert f"blobs/sha256/{digest.split(':')[1]}" in members
    listing = (
        "REF                    TYPE                                       DIGEST  SIZE\n"
        f"tenantry.local/app:abc application/vnd.oci.image.manifest.v1+json {digest} 6.1 MiB\n"
    )
    assert build.listed_digest(listing, "tenantry.local/app:abc") == digest
    assert build.listed_digest(listing, "tenantry.local/app:other") is None
    assert build.listed_digest("REF TYPE DIGEST SIZE\n", "tenantry.local/app:abc") is None


def test_image_paths_must_be_absolute_and_plain() -> None:
    with pytest.raises(ValueError, match="absolute"):
        oci.layer({"../etc/passwd": oci.File(b"")})


def _node(tmp: Path = Path("/state/kwok/clusters/dev")) -> realnode.RealNode:
    return realnode.RealNode("dev", 0, realnode.node_dir(tmp, 0),
                             ipaddress.IPv4Network("10.244.7.0/24"))  # fmt: skip


def test_a_node_keeps_its_state_under_its_directory_and_sockets_in_a_short_one() -> None:
    node = _node()
    config = realnode.containerd_config(node, sandbox_image="tenantry.local/pause:1")
    assert "version = 3" in config
    assert "restrict_oom_score_adj = true" in config
    assert f'BinaryName = "{realnode.RUNC}"' in config
    assert 'sandbox = "tenantry.local/pause:1"' in config
    assert "[plugins.'io.containerd.nri.v1.nri']\n  disable = true" in config
    assert f'root = "{node.dir}/containerd/root"' in config
    assert len(str(node.kubelet_root / "pod-resources" / "1234567890")) < 100


def test_the_kubelet_is_set_for_cgroup_v1_without_systemd_on_its_own_bridge() -> None:
    node = _node()
    ports = realnode.Ports(kubelet=40000, healthz=40001)
    config = realnode.kubelet_configuration(node, ports, ca_file=Path("/ca.crt"))
    assert config["cgroupDriver"] == "cgroupfs" and config["failCgroupV1"] is False
    assert config["cgroupRoot"] == node.cgroup_root != "/"
    assert config["address"] == "10.244.7.1" == str(node.gateway)
    assert config["healthzBindAddress"] == "127.0.0.1" and config["readOnlyPort"] == 0
    args = realnode.kubelet_args(node, kubelet_binary=Path("/bin/kubelet"))
    assert f"--cert-dir={node.cert_dir}" in args and f"--root-dir={node.kubelet_root}" in args
    cni = realnode.cni_config(node)
    assert cni["name"] == node.network_name
    assert cni["plugins"][0]["bridge"] == node.bridge and len(node.bridge) <= 15
    assert cni["plugins"][0]["ipam"]["dataDir"] == str(node.cni_ipam_dir)


def test_kwok_is_told_to_manage_only_its_own_nodes() -> None:
    patch = realnode.kwok_controller_patch("kwok.x-k8s.io/node=fake")
    args = {a["key"]: a["value"] for a in patch["extraArgs"]}
    assert args["manage-all-nodes"] == "false"
    assert args["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"


def test_candidate_subnets_cover_the_pod_range_from_a_seeded_start() -> None:
    subnets = realnode.candidate_subnets("a")
    assert len(subnets) == 256 and len(set(subnets)) == 256
    assert all(s.subnet_of(realnode.POD_RANGE) for s in subnets)
    assert subnets == realnode.candidate_subnets("a")


def test_a_machine_that_cannot_run_containers_gets_the_reason_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tenantry import errors
    from tenantry.kube import realnodes

    monkeypatch.setattr(realnodes.os, "geteuid", lambda: 1000)
    with pytest.raises(errors.RealNodeUnsupportedError) as raised:
        realnodes.preflight()
    assert "not running as root" in str(raised.value)
    assert "--real-nodes 0" in str(raised.value) and raised.value.fix
