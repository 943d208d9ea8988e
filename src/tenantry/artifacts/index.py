"""A Helm repository's index.yaml, updated without losing entries (pure).

`helm repo add` and `helm pull` read it; `tenantry.artifacts.store` writes it with
a conditional put, retrying on conflict, so concurrent publishers never drop one
another's entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from tenantry import errors
from tenantry.deploy.decide import semver_key

Entry = dict[str, Any]


def empty() -> dict[str, Any]:
    """An index with no charts."""
    return {"apiVersion": "v1", "entries": {}}


def parse(text: str | bytes) -> dict[str, Any]:
    """An index from its YAML (empty text is an empty index).

    A corrupt index is an error, never silently replaced: rewriting it from scratch
    would drop every chart it lists.
    """
    if not text:
        return empty()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise errors.TenantryError(
            f"the Helm repository index is not valid YAML: {e}",
            fix="restore index.yaml from the bucket's object versions",
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("entries", {}), dict):
        raise errors.TenantryError(
            "the Helm repository index has no `entries` mapping",
            fix="restore index.yaml from the bucket's object versions",
        )
    data.setdefault("entries", {})
    return data


def with_entry(index: Mapping[str, Any], entry: Entry, *, generated: str) -> dict[str, Any]:
    """A copy of ``index`` with ``entry`` added (replacing the same name and version)."""
    entries = {name: list(versions) for name, versions in index.get("entries", {}).items()}
    versions = [v for v in entries.get(entry["name"], []) if v.get("version") != entry["version"]]
    entries[entry["name"]] = [entry, *versions]
    return {"apiVersion": "v1", "entries": entries, "generated": generated}


def contains(index: Mapping[str, Any], name: str, version: str) -> bool:
    """Whether ``index`` lists chart ``name`` at ``version``."""
    return any(v.get("version") == version for v in index.get("entries", {}).get(name, []))


def newest(index: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Each chart's newest version by SemVer precedence, with its digest; entries whose
    version is not SemVer (not written by `tenantry publish`) are passed over."""
    found: dict[str, tuple[str, str]] = {}
    for name, versions in index.get("entries", {}).items():
        best: tuple[str, str] | None = None
        for entry in versions if isinstance(versions, list) else []:
            version = str(entry.get("version", "")) if isinstance(entry, dict) else ""
            try:
                key = semver_key(version)
            except ValueError:
                continue
            if best is None or key > semver_key(best[0]):
                best = (version, str(entry.get("digest", "")))
        if best is not None:
            found[str(name)] = best
    return found


def dump(index: Mapping[str, Any]) -> bytes:
    """The index as YAML bytes."""
    return yaml.safe_dump(dict(index), sort_keys=False).encode()
