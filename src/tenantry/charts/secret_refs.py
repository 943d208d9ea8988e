"""Which Secrets (and which of their keys) a rendered chart's pods read (pure).

The base chart reads the keys a descriptor's ``secrets:`` names; a team's own chart may
read Secrets of its namespace any way a pod can: an environment variable's
``secretKeyRef``, ``envFrom`` a whole Secret, or a ``secret`` volume. A Secret the
chart itself renders is its own business and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from tenantry.charts import manifests


def references(objects: Iterable[manifests.Rendered]) -> dict[str, set[str]]:
    """Secret name → the keys read by name (empty: the whole Secret is read)."""
    rendered = list(objects)
    own = {obj.name for obj in rendered if obj.kind == "Secret"}
    found: dict[str, set[str]] = {}
    for obj in rendered:
        spec = manifests.pod_spec(obj)
        if spec is not None:
            _collect(spec[1], found)
    return {name: keys for name, keys in found.items() if name not in own}


def _collect(spec: Mapping[str, Any], found: dict[str, set[str]]) -> None:
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, Mapping):
            continue
        for variable in container.get("env") or []:
            ref = _get(variable, "valueFrom", "secretKeyRef")
            if isinstance(ref.get("name"), str) and isinstance(ref.get("key"), str):
                found.setdefault(ref["name"], set()).add(ref["key"])
        for source in container.get("envFrom") or []:
            ref = _get(source, "secretRef")
            if isinstance(ref.get("name"), str):
                found.setdefault(ref["name"], set())
    for volume in spec.get("volumes") or []:
        secret = _get(volume, "secret")
        if isinstance(secret.get("secretName"), str):
            keys = found.setdefault(secret["secretName"], set())
            keys.update(i["key"] for i in secret.get("items") or []
                        if isinstance(i, Mapping) and isinstance(i.get("key"), str))  # fmt: skip


def _get(node: Any, *path: str) -> Mapping[str, Any]:
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def missing(
    refs: Mapping[str, AbstractSet[str]],
    known: Mapping[str, AbstractSet[tuple[str, str]]],
    environments: Sequence[str],
) -> list[tuple[str, str, str]]:
    """(environment, secret, key) of each reference without a value there, in order; a
    whole Secret read (no keys) needs any key of it (reported as key ``*``)."""
    found = []
    for environment in environments:
        have = known.get(environment, set())
        names = {name for name, _ in have}
        for name, keys in sorted(refs.items()):
            if not keys and name not in names:
                found.append((environment, name, "*"))
            found += [(environment, name, key) for key in sorted(keys) if (name, key) not in have]
    return found
