"""The prometheus-operator objects Tenantry renders pass the pinned CRDs' schemas on a
real API server (server-side dry run); a malformed one is rejected with the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tenantry.kube.client import Kube
from tenantry.monitoring import crds
from tenantry.observability import operator
from tenantry.spec import repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


@pytest.fixture(scope="module")
def serving(admin: Kube) -> Kube:
    crds.install_crds(admin)
    assert crds.served(admin)
    return admin


def in_namespace(objects: list[dict], namespace: str) -> list[dict]:
    moved = copy.deepcopy(objects)
    for obj in moved:
        obj["metadata"]["namespace"] = namespace
    return moved


def test_every_tenants_objects_pass_the_crd_schemas(serving: Kube, namespace: str) -> None:
    repo = repository.load(EXAMPLE)
    for tenant in repo.tenants:
        objects = operator.tenant_objects(repo, tenant, {})
        kinds = {o["kind"] for o in objects}
        assert kinds == {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
        assert crds.dry_run(serving, in_namespace(objects, namespace)) == []


def test_a_malformed_object_is_rejected_with_the_reason(serving: Kube, namespace: str) -> None:
    repo = repository.load(EXAMPLE)
    objects = operator.tenant_objects(repo, repo.tenant("payments"), {})
    monitor = next(o for o in in_namespace(objects, namespace) if o["kind"] == "ServiceMonitor")
    monitor["spec"]["sampleLimit"] = "lots"
    (reason,) = crds.dry_run(serving, [monitor])
    assert "sampleLimit" in reason
