"""Which images of a rendered chart the local platform loads for the tenant."""

from __future__ import annotations

from tenantry.charts import images, manifests

_RENDERED = """---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: registry.acme.example/checkout/migrate:1.0}]
      containers:
        - {name: web, image: registry.acme.example/checkout/web:2.1.0}
        - {name: side, image: registry.acme.example/checkout/web:2.1.0}
---
# Source: web/templates/test.yaml
apiVersion: v1
kind: Pod
metadata: {name: web-test}
spec:
  containers: [{name: check, image: ghcr.io/acme/checkout/curl:8.10.1}]
---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {name: web}
"""


def test_workload_images_are_every_container_image_once_in_order() -> None:
    found = images.workload_images(manifests.split(_RENDERED))
    assert found == [
        "registry.acme.example/checkout/migrate:1.0",
        "registry.acme.example/checkout/web:2.1.0",
        "ghcr.io/acme/checkout/curl:8.10.1",
    ]


def test_only_tagged_images_under_an_allowed_registry_and_the_tenant_are_its_own() -> None:
    candidates = [
        "registry.acme.example/checkout/web:2.1.0",
        "ghcr.io/acme/checkout/curl:8.10.1",
        "registry.acme.example/payments/api:1.4.0",  # another tenant's
        "registry.acme.example/checkout/web@sha256:" + "0" * 64,  # pinned: pulled as is
        "registry.acme.example/checkout/web",  # no tag
        "docker.io/checkout/web:1",  # registry not allowed
        "registry.acme.example.evil.com/checkout/web:1",
    ]
    own = images.tenant_images(candidates, ["registry.acme.example", "ghcr.io/acme"], "checkout")
    assert own == ["registry.acme.example/checkout/web:2.1.0", "ghcr.io/acme/checkout/curl:8.10.1"]
