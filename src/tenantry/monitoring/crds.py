"""Check rendered prometheus-operator objects against the CRD schemas a cluster serves,
by a server-side dry run (the API server validates; nothing is stored).

The pinned CRDs (`tenantry tools install`, tool ``prometheus-operator``) can also be
installed into a cluster that lacks them, which is how the tests get a cluster
serving them without running the operator itself.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import yaml
from lightkube import generic_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.tools import catalog, install

GROUP = "monitoring.coreos.com"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 reading of a bare ``=`` (an enum value in the CRDs), which PyYAML's
    YAML 1.1 resolver would turn into the obsolete ``!!value`` tag."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _documents() -> list[dict[str, Any]]:
    tool = catalog.PROMETHEUS_OPERATOR
    return [
        yaml.load(install.data_file(tool, path).read_text(), Loader=_Loader)  # noqa: S506
        for path in tool.data_files
    ]


@functools.cache
def register() -> None:
    """Teach the Kubernetes client the operator's kinds (from the pinned CRDs)."""
    for document in _documents():
        crd = cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(document))
        generic_resource.create_resources_from_crd(crd)


def install_crds(kube: Kube, *, timeout_s: float = 60) -> None:
    """Install the pinned CRDs and wait until the API server serves them."""
    register()
    names = []
    for document in _documents():
        kube.apply(document)
        names.append(document["metadata"]["name"])
    deadline = time.monotonic() + timeout_s
    for name in names:
        while not _established(kube, name):
            if time.monotonic() > deadline:
                raise errors.WaitTimeoutError(f"CRD {name} was not established in {timeout_s:g} s")
            time.sleep(0.2)


def _established(kube: Kube, name: str) -> bool:
    crd = kube.get(CustomResourceDefinition, name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def served(kube: Kube) -> bool:
    """Whether the cluster serves the operator's ServiceMonitor kind."""
    try:
        _established(kube, f"servicemonitors.{GROUP}")
    except errors.NotFoundError:
        return False
    return True


def dry_run(kube: Kube, objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each object the API server rejects, with its reason (empty: all valid)."""
    register()
    rejected = []
    for obj in objects:
        try:
            kube.apply(obj, dry_run=True)
        except errors.KubeError as e:
            rejected.append(str(e))
    return rejected
