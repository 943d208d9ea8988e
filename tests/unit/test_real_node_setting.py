"""``realNodes`` on a platform cluster: for local clusters only, 0 to 4."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tenantry.spec import models


def test_real_nodes_is_read_from_camel_case_and_unset_by_default() -> None:
    assert models.ClusterRef.model_validate({"name": "a", "local": "a"}).real_nodes is None
    ref = models.ClusterRef.model_validate({"name": "a", "local": "a", "realNodes": 0})
    assert ref.real_nodes == 0


def test_real_nodes_is_for_local_clusters_only() -> None:
    with pytest.raises(ValidationError, match="realNodes is for local clusters only"):
        models.ClusterRef.model_validate(
            {"name": "a", "kubeconfig": "k.yaml", "context": "c", "realNodes": 1}
        )


@pytest.mark.parametrize("count", [-1, 5])
def test_real_nodes_is_bounded(count: int) -> None:
    with pytest.raises(ValidationError):
        models.ClusterRef.model_validate({"name": "a", "local": "a", "realNodes": count})
