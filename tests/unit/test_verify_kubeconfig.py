"""`tenantry verify --kubeconfig`: a kubeconfig that is missing, unreadable or lacks the context
is refused with what is wrong and the fix, before anything is contacted (files only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tenantry import errors
from tenantry.verify.run import external_cluster

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
