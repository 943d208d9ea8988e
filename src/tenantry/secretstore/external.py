"""ExternalSecret objects, for clusters where the External Secrets Operator copies the
values from AWS Secrets Manager itself (``externalSecrets`` on a cluster in platform.yaml).

One ExternalSecret per tenant's secret, in the tenant's namespace, naming exactly that
secret's path in Secrets Manager; its Secret (same name) is the operator's. Written with
the platform's own identity: a tenant's deployer may not make ExternalSecrets (one could
name any tenant's path in the store they share), and the policy refuses them in charts.
Each is checked by a server-side dry run against the CRD the cluster serves first, so a
cluster without the operator, or with another version of it, says so before anything is
written.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import yaml
from lightkube import generic_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.spec import models
from tenantry.tenancy import objects
from tenantry.tools import catalog, install

API_VERSION = "external-secrets.io/v1"
KIND = "ExternalSecret"
MANAGED_LABEL = "tenantry.dev/secret"


def crd() -> dict[str, Any]:
    """The pinned ExternalSecret CRD (`tenantry tools install`, tool external-secrets)."""
    tool = catalog.EXTERNAL_SECRETS
    document: dict[str, Any] = yaml.safe_load(
        install.data_file(tool, tool.data_files[0]).read_text()
    )
    return document


@functools.cache
def kind() -> type[Any]:
    """The ExternalSecret kind, taught to the Kubernetes client from the pinned CRD."""
    generic_resource.create_resources_from_crd(
        cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(crd()))
    )
    found = generic_resource.get_generic_resource(API_VERSION, KIND)  # type: ignore[no-untyped-call]
    return cast(type[Any], found)


def manifest(
    eso: models.ExternalSecretsStore, secret_path: str, *, tenant: str, name: str
) -> dict[str, Any]:
    """The ExternalSecret of one tenant's secret: every key of ``secret_path``."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": tenant,
            "labels": {**objects.MANAGED_BY, objects.TENANT_LABEL: tenant, MANAGED_LABEL: "true"},
        },
        "spec": {
            "refreshInterval": eso.refresh_interval,
            "secretStoreRef": {"kind": eso.kind, "name": eso.name},
            "target": {
                "name": name,
                "creationPolicy": "Owner",
                "template": {"metadata": {"labels": {MANAGED_LABEL: "true"}}},
            },
            "dataFrom": [{"extract": {"key": secret_path}}],
        },
    }


def apply(kube: Kube, wanted: dict[str, Any], *, cluster: str) -> None:
    """Dry-run ``wanted`` against the CRD the cluster serves, then apply it."""
    kind()
    where = f"cluster {cluster}"
    try:
        kube.apply(wanted, dry_run=True)
    except errors.NotFoundError as e:
        raise errors.ClusterError(
            f"{where} is said to run the External Secrets Operator but does not serve "
            f"{KIND} ({API_VERSION}): {e.message}",
            fix="install the operator there, or remove externalSecrets from that cluster in "
            "platform.yaml (Tenantry then writes the Secrets itself)",
        ) from e
    kube.apply(wanted)


def remove(kube: Kube, *, tenant: str, name: str) -> None:
    """Delete the ExternalSecret of a secret that is gone (its Secret goes with it)."""
    kube.delete(kind(), name, namespace=tenant)


def names(kube: Kube, *, tenant: str) -> list[str]:
    """The ExternalSecrets Tenantry made in the tenant's namespace."""
    return [str(found.metadata.name)
            for found in kube.list(kind(), namespace=tenant, labels={MANAGED_LABEL: "true"})
            if found.metadata is not None]  # fmt: skip
