"""Observed objects + desired objects → a plan of creates, updates and deletes (pure).

The observed side is what the platform manages in a cluster (everything labelled
``app.kubernetes.io/managed-by: tenantry``), fetched with one LIST per kind; the
desired side comes from `tenantry.tenancy.objects`. Comparing them here, in
memory, is what makes a no-op reconcile of a thousand tenants cost a handful of
requests instead of thousands of applies.

An object is unchanged when every field we set has the same value in the cluster
(the API server adds fields of its own; those are not drift). Quantities compare
by value, since the API server rewrites ``1000m`` as ``1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tenantry.spec import quantities
from tenantry.tenancy import objects

Action = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identifies one object in a cluster."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectKey:
        """The key of a manifest."""
        meta = manifest.get("metadata", {})
        return cls(str(manifest["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class Change:
    """One step of a plan."""

    action: Action
    key: ObjectKey
    manifest: Mapping[str, Any] | None = None
    # Dotted paths of the fields that differ, for a readable `plan`.
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What one cluster needs to match the repository."""

    cluster: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def of(self, action: Action) -> list[Change]:
        """The changes with ``action``."""
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        """True when the cluster already matches."""
        return all(c.action == "unchanged" for c in self.changes)

    def summary(self) -> dict[str, int]:
        """Counts per action."""
        counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts


# Apply order: cluster-scoped foundations first, then what lives in namespaces.
_APPLY_ORDER = {
    "Namespace": 0,
    "ClusterRole": 0,
    "ValidatingAdmissionPolicy": 0,
    "ValidatingAdmissionPolicyBinding": 1,
    "ServiceAccount": 1,
    "ResourceQuota": 1,
    "LimitRange": 1,
    "RoleBinding": 2,
    "NetworkPolicy": 2,
}


def wave(key: ObjectKey) -> int:
    """Objects in a lower wave must exist before those in a higher one are applied."""
    return _APPLY_ORDER.get(key.kind, 3)


def differences(desired: Any, observed: Any, path: str = "") -> list[str]:
    """Dotted paths where ``desired`` is not contained in ``observed``."""
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return [path or "."]
        found: list[str] = []
        for key, value in desired.items():
            have = observed.get(key)
            if value == have:  # the common case, compared at C speed
                continue
            found += differences(value, have, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return [path]
        found = []
        for i, (want, have) in enumerate(zip(desired, observed, strict=True)):
            found += differences(want, have, f"{path}[{i}]")
        return found
    if desired == observed:
        return []
    if isinstance(desired, str) and isinstance(observed, str) and _same_quantity(desired, observed):
        return []
    return [path]


def _same_quantity(a: str, b: str) -> bool:
    try:
        return quantities.parse(a) == quantities.parse(b)
    except quantities.QuantityError:
        return False


def _comparable(manifest: Mapping[str, Any]) -> dict[str, Any]:
    # apiVersion/kind are identity, not state; metadata compares on labels/annotations only.
    meta = manifest.get("metadata", {})
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata")}
    body["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
    return body


def plan(
    cluster: str,
    desired: Iterable[Mapping[str, Any]],
    observed: Mapping[ObjectKey, Mapping[str, Any]],
) -> Plan:
    """Compare desired objects with the managed objects observed in ``cluster``."""
    changes: list[Change] = []
    wanted: dict[ObjectKey, Mapping[str, Any]] = {}
    for manifest in desired:
        wanted[ObjectKey.of(manifest)] = manifest
    for key, manifest in sorted(wanted.items(), key=lambda kv: (wave(kv[0]), kv[0])):
        current = observed.get(key)
        if current is None:
            changes.append(Change("create", key, manifest))
            continue
        diff = differences(_comparable(manifest), current)
        changes.append(Change("update" if diff else "unchanged", key, manifest, tuple(diff)))
    deleted_namespaces = {
        key.name for key in observed if key.kind == "Namespace" and key not in wanted
    }
    for key in sorted(observed, key=lambda k: (-wave(k), k)):
        if key in wanted:
            continue
        # Deleting a namespace deletes what is in it; listing those too would be noise.
        if key.namespace in deleted_namespaces:
            continue
        changes.append(Change("delete", key))
    return Plan(cluster=cluster, changes=tuple(changes))


def tenant_of(key: ObjectKey, observed: Mapping[ObjectKey, Mapping[str, Any]]) -> str | None:
    """The tenant an observed object belongs to, from its label."""
    labels = observed.get(key, {}).get("metadata", {}).get("labels", {}) or {}
    value = labels.get(objects.TENANT_LABEL)
    return str(value) if value else None
