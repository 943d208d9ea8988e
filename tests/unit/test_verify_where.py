"""Where `tenantry verify` runs: a kubeconfig that is missing, unreadable or lacks the context
is refused with what is wrong and the fix, before anything is contacted; a local cluster
without a real node says its pods are simulated (files only, no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tenantry import errors
from tenantry.kube import localcluster
from tenantry.verify.run import Cluster, external_cluster

CONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [
        {"name": "kind-ci", "context": {"cluster": "c", "user": "u"}},
        {"name": "shared", "context": {"cluster": "c", "user": "u"}},
    ],
}


def _write(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match=r"kubeconfig .*nope\.yaml does not exist") as e:
        external_cluster(tmp_path / "nope.yaml")
    assert e.value.fix and "kubeconfig file" in e.value.fix


def test_a_directory_or_garbage_is_not_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="cannot read kubeconfig"):
        external_cluster(tmp_path)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("- just\n- a list\n")
    with pytest.raises(errors.UsageError, match="is not a kubeconfig"):
        external_cluster(garbage)


def test_an_unknown_context_lists_the_ones_it_has(tmp_path: Path) -> None:
    path = _write(tmp_path, {**CONFIG, "current-context": "kind-ci"})
    with pytest.raises(errors.UsageError, match="has no context 'prod'") as e:
        external_cluster(path, context="prod")
    assert e.value.fix == "pass --context, one of: kind-ci, shared"


def test_no_current_context_asks_for_one(tmp_path: Path) -> None:
    path = _write(tmp_path, CONFIG)
    with pytest.raises(errors.UsageError, match="sets no current-context") as e:
        external_cluster(path)
    assert e.value.fix == "pass --context, one of: kind-ci, shared"


def test_a_local_cluster_without_a_real_node_says_its_pods_are_simulated(tmp_path: Path) -> None:
    kwok_only = localcluster.LocalCluster(name="verify", workdir=tmp_path)
    cannot = "this machine cannot run a real node: not running as root"
    where = Cluster.of_local(kwok_only, why_simulated=cannot)
    assert (
        where.simulated == f"pods were simulated by kwok: their containers did not run ({cannot})"
    )
    assert where.describe() == f"local cluster verify; {where.simulated}"
    assert Cluster.of_local(kwok_only).simulated.endswith("(the cluster has no real node)")


def test_a_local_cluster_with_a_real_node_runs_its_pods(tmp_path: Path) -> None:
    (tmp_path / "real" / "0").mkdir(parents=True)
    where = Cluster.of_local(localcluster.LocalCluster(name="verify", workdir=tmp_path))
    assert where.simulated == ""
    assert where.describe() == "local cluster verify; pods run on its real node"


def test_an_existing_cluster_loads_nothing() -> None:
    where = Cluster(name="kind-ci", kubeconfig=Path("/ci/kind.yaml"), context="kind-ci")
    assert where.describe() == (
        "context kind-ci of /ci/kind.yaml; its nodes pull the images (nothing is loaded)"
    )
