"""The Helm CLI adapter: the pinned `helm` binary, typed results, one error type.

We drive the real helm binary rather than reimplementing its release logic: its
storage format, hooks, and ``--wait`` semantics are what teams know and debug.
Every call is explicit about cluster (``--kubeconfig``), identity
(``--kube-as-user``/``--kube-as-group``) and namespace, so nothing depends on the
environment of whoever runs Tenantry. Helm's stderr becomes `HelmError.stderr`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenantry import errors
from tenantry.kube.client import Identity
from tenantry.tools import install


@dataclass(frozen=True)
class Target:
    """Where and as whom helm acts."""

    kubeconfig: Path
    namespace: str
    identity: Identity | None = None
    context: str | None = None

    def flags(self) -> list[str]:
        """helm's global flags for this target."""
        flags = ["--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
        if self.context:
            flags += ["--kube-context", self.context]
        if self.identity:
            flags += ["--kube-as-user", self.identity.user]
            for group in self.identity.groups:
                flags += ["--kube-as-group", group]
        return flags


@dataclass(frozen=True)
class Release:
    """A Helm release as `helm upgrade --install -o json` reports it."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str
    app_version: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Release:
        """Parse helm's release JSON (the fields we use)."""
        info = data.get("info", {})
        metadata = data.get("chart", {}).get("metadata", {})
        return cls(
            name=str(data.get("name", "")),
            namespace=str(data.get("namespace", "")),
            revision=int(data.get("version", 0)),
            status=str(info.get("status", "")),
            chart=f"{metadata.get('name', '')}-{metadata.get('version', '')}",
            app_version=str(metadata.get("appVersion", "")),
        )


def run(
    args: Sequence[str], *, stdin: str | None = None, timeout_s: float = 600.0, action: str = ""
) -> str:
    """Run ``helm ARGS``; return stdout, or raise `HelmError` carrying helm's stderr."""
    action = action or f"helm {args[0]}"
    argv = [str(install.binary("helm")), *args]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise errors.HelmError(
            f"{action} did not finish in {timeout_s:.0f}s",
            fix="raise --timeout or check what the release is waiting for",
        ) from e
    if done.returncode != 0:
        stderr = done.stderr.strip()
        raise errors.HelmError(f"{action} failed: {stderr}", stderr=stderr)
    return done.stdout


def upgrade_install(
    target: Target,
    *,
    release: str,
    chart: str | Path,
    values: Mapping[str, Any] | None = None,
    wait: bool = True,
    rollback_on_failure: bool = False,
    timeout_s: float = 300.0,
) -> Release:
    """``helm upgrade --install`` one release; with ``wait``, until its resources are ready."""
    args = ["upgrade", "--install", release, str(chart), *target.flags(), "--output", "json"]
    if values:
        # Values go through stdin so secrets in them never appear in a process listing.
        args += ["--values", "-"]
    if wait:
        args += ["--wait", "--timeout", f"{int(timeout_s)}s"]
    if rollback_on_failure:
        args += ["--rollback-on-failure"]
    out = run(
        args,
        stdin=yaml.safe_dump(dict(values)) if values else None,
        timeout_s=timeout_s + 30,
        action=f"helm upgrade --install {release} in {target.namespace}",
    )
    return Release.from_json(json.loads(out))


def uninstall(target: Target, *, release: str, wait: bool = True) -> None:
    """``helm uninstall``; succeeds if the release is already gone."""
    args = ["uninstall", release, *target.flags(), "--ignore-not-found"]
    if wait:
        args += ["--wait"]
    run(args, action=f"helm uninstall {release} in {target.namespace}")


def list_releases(target: Target) -> list[dict[str, Any]]:
    """The releases in the target namespace, as helm lists them."""
    out = run(["list", *target.flags(), "--output", "json"], action="helm list")
    releases: list[dict[str, Any]] = json.loads(out or "[]")
    return releases


def version() -> str:
    """The helm version string (``v4.x.y``)."""
    return run(["version", "--short"]).strip()
