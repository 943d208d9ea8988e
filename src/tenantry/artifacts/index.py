"""A Helm repository's index.yaml, updated without losing entries (pure).

`helm repo add` and `helm pull` read it; `tenantry.artifacts.store` writes it with
a conditional put, retrying on conflict, so concurrent publishers never drop one
another's entries.

The Tenantry server serves each tenant's repository (`tenantry.server.helmrepo`):
`served` is the index it sends, whose every archive URL is the relative file name
``<chart>-<version>.tgz`` (Helm resolves it against the repository's URL, so `helm pull`
comes back to the same server with the same credential), and `entry_for_file` is the
only way a requested file name becomes a chart: a name that is not exactly one the
served index lists is never looked up in the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from tenantry import errors
from tenantry.deploy.decide import semver_key

Entry = dict[str, Any]

# A chart's name as Tenantry publishes it (a service: a DNS label) and a SemVer version
# (with pre-release and build parts). Neither can hold "/", "%", quotes or whitespace,
# so an archive's file name built from them is safe in a URL path and in a store key.
_CHART_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_VERSION = r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,64})?"
# A requested file name that could be an archive at all; anything else is refused
# before the index is read.
_ARCHIVE_FILE = re.compile(rf"[a-z0-9]([-a-z0-9]{{0,61}}[a-z0-9])?-{_VERSION}\.tgz")


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


def archive_file(name: str, version: str) -> str | None:
    """The archive's file name for chart ``name`` at ``version``; None if either could
    not be part of a safe file name (such an entry is not served)."""
    if not (_CHART_NAME.fullmatch(name) and re.fullmatch(_VERSION, version)) or ".." in version:
        return None
    return f"{name}-{version}.tgz"


def is_archive_file(file: str) -> bool:
    """Whether ``file`` could name an archive of a served index (no "/", "..", quotes,
    percent signs or anything but a chart name, a version and ``.tgz``)."""
    return bool(_ARCHIVE_FILE.fullmatch(file)) and ".." not in file


def served(index: Mapping[str, Any]) -> dict[str, Any]:
    """The index as the Tenantry server sends it: each entry's ``urls`` replaced by its
    relative archive file name, entries whose name or version could not be a safe file
    name (or that are not mappings) left out; everything else as it is."""
    entries: dict[str, list[Entry]] = {}
    for name, versions in index.get("entries", {}).items():
        kept = []
        for entry in versions if isinstance(versions, list) else []:
            if not isinstance(entry, dict):
                continue
            file = archive_file(str(name), str(entry.get("version", "")))
            if file is not None and entry.get("name", name) == name:
                kept.append({**entry, "urls": [file]})
        if kept:
            entries[str(name)] = kept
    result: dict[str, Any] = {"apiVersion": "v1", "entries": entries}
    if "generated" in index:
        result["generated"] = index["generated"]
    return result


def entry_for_file(index: Mapping[str, Any], file: str) -> Entry | None:
    """The entry of ``served(index)`` whose archive is ``file``; None if there is none."""
    if not is_archive_file(file):
        return None
    for versions in served(index)["entries"].values():
        for entry in versions:
            if entry["urls"] == [file]:
                found: Entry = entry
                return found
    return None
