"""The output of `helm template`, split into objects that remember their template file.

Pure. Helm prefixes each document with ``# Source: <chart>/templates/<file>``;
keeping it lets every policy finding name the file a team has to edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tenantry import errors

_SOURCE = "# Source: "


@dataclass(frozen=True)
class Rendered:
    """One rendered object and the template that produced it."""

    source: str
    manifest: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """The object's kind."""
        return str(self.manifest.get("kind", ""))

    @property
    def name(self) -> str:
        """The object's name."""
        return str(self.manifest.get("metadata", {}).get("name", ""))

    @property
    def api_group(self) -> str:
        """The group of the object's apiVersion ("" for the core group)."""
        group, slash, _ = str(self.manifest.get("apiVersion", "")).rpartition("/")
        return group if slash else ""

    @property
    def ref(self) -> str:
        """``Kind/name``, as findings and errors show it."""
        return f"{self.kind}/{self.name}"


def split(rendered: str) -> list[Rendered]:
    """Split `helm template` output into objects; empty documents are dropped."""
    objects = []
    for document in rendered.split("\n---"):
        source = ""
        for line in document.splitlines():
            if line.startswith(_SOURCE):
                source = line.removeprefix(_SOURCE).strip()
                break
        try:
            manifest = yaml.safe_load(document)
        except yaml.YAMLError as e:
            raise errors.HelmError(
                f"{source or 'a template'} rendered invalid YAML: {e}",
                fix="fix the template so it renders a YAML mapping",
            ) from e
        if manifest is None:
            continue
        if not isinstance(manifest, Mapping) or "kind" not in manifest:
            raise errors.HelmError(
                f"{source or 'a template'} rendered something that is not a Kubernetes object",
                fix="each document must have apiVersion, kind and metadata",
            )
        objects.append(Rendered(source=source, manifest=manifest))
    return objects


# Where each workload kind keeps its pod spec.
_POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def pod_spec(obj: Rendered) -> tuple[str, Mapping[str, Any]] | None:
    """The pod spec inside a workload and its dotted path, or None for other kinds."""
    path = _POD_SPEC_PATH.get(obj.kind)
    if path is None:
        return None
    node: Any = obj.manifest
    for key in path:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return ".".join(path), node if isinstance(node, Mapping) else {}
