"""Pure parts of the helm adapter: the flags of a target and parsing release JSON."""

from __future__ import annotations

from pathlib import Path

from tenantry import helm
from tenantry.kube.client import Identity


def test_target_flags_name_cluster_namespace_and_impersonated_identity() -> None:
    target = helm.Target(
        kubeconfig=Path("/k"), namespace="team-a", identity=Identity("u", groups=("g1", "g2"))
    )
    assert target.flags() == [
        "--kubeconfig", "/k", "--namespace", "team-a",
        "--kube-as-user", "u", "--kube-as-group", "g1", "--kube-as-group", "g2",
    ]  # fmt: skip


def test_release_from_helm_json() -> None:
    release = helm.Release.from_json(
        {
            "name": "web",
            "namespace": "team-a",
            "version": 2,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "web", "version": "1.2.3", "appVersion": "9"}},
        }
    )
    assert release == helm.Release("web", "team-a", 2, "deployed", "web-1.2.3", "9")
