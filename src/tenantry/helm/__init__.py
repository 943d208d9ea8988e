"""The Helm CLI adapter: the pinned `helm` binary, typed results, one error type.

We drive the real helm binary rather than reimplementing its release logic: its
storage format, hooks, and ``--wait`` semantics are what teams know and debug.
Every call is explicit about cluster (``--kubeconfig``), identity
(``--kube-as-user``/``--kube-as-group``) and namespace, so nothing depends on the
environment of whoever runs Tenantry. Helm's stderr becomes `HelmError.stderr`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenantry import errors
from tenantry.kube.client import Identity
from tenantry.tools import install

# How often a running helm command is checked for an early abort.
_POLL_S = 0.5
# util-linux's setpriv (in every Debian) sets PR_SET_PDEATHSIG and execs helm: a helm
# whose worker was killed must not run on unowned. It would race the worker that takes
# the release over (and could roll its deploy back); it dies with the worker instead,
# and whatever it left pending is cleared by the next lease holder
# (`tenantry.deploy.release`). Not preexec_fn: that can deadlock in a threaded process.
_SETPRIV = shutil.which("setpriv")


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
    args: Sequence[str],
    *,
    stdin: str | None = None,
    timeout_s: float = 600.0,
    action: str = "",
    abort_if: Callable[[], str | None] | None = None,
) -> str:
    """Run ``helm ARGS``; return stdout, or raise `HelmError` carrying helm's stderr.

    ``abort_if`` is polled while helm runs; when it returns a reason (a pod in
    CrashLoopBackOff, a ReplicaSet refused by quota) helm is stopped at once and
    the reason raised, instead of waiting for helm's own timeout.
    """
    action = action or f"helm {args[0]}"
    argv = [str(install.binary("helm")), *args]
    if _SETPRIV is not None:
        argv = [_SETPRIV, "--pdeathsig", "KILL", *argv]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    pending_input = stdin
    while True:
        try:
            stdout, stderr = proc.communicate(pending_input, timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pending_input = None
        reason = abort_if() if abort_if else None
        if reason or time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            if reason:
                raise errors.HelmError(f"{action} stopped: {reason}", stderr=reason) from None
            raise errors.HelmError(
                f"{action} did not finish in {timeout_s:.0f}s",
                fix="raise --timeout or check what the release is waiting for",
            )
    if proc.returncode != 0:
        # `helm lint` prints its findings on stdout and only a count on stderr.
        findings = [line for line in stdout.splitlines() if line.startswith("[ERROR]")]
        # `helm test --logs` prints the test pods' logs on stdout: why the test failed.
        _, marker, logs = stdout.partition("POD LOGS:")
        pod_logs = [f"{marker}{logs}".strip()] if marker else []
        detail = "\n".join([*findings, stderr.strip(), *pod_logs])
        raise errors.HelmError(f"{action} failed: {detail}", stderr=detail)
    return stdout


def _with_values(args: list[str], values: Mapping[str, Any] | None) -> tuple[list[str], str | None]:
    # Values go through stdin so secrets in them never appear in a process listing.
    if not values:
        return args, None
    return [*args, "--values", "-"], yaml.safe_dump(dict(values))


def upgrade_install(
    target: Target,
    *,
    release: str,
    chart: str | Path,
    values: Mapping[str, Any] | None = None,
    wait: bool = True,
    rollback_on_failure: bool = False,
    timeout_s: float = 300.0,
    abort_if: Callable[[], str | None] | None = None,
) -> Release:
    """``helm upgrade --install`` one release; with ``wait``, until its resources are ready."""
    args, stdin = _with_values(
        ["upgrade", "--install", release, str(chart), *target.flags(), "--output", "json"], values
    )
    if wait:
        args += ["--wait", "--timeout", f"{int(timeout_s)}s"]
    if rollback_on_failure:
        args += ["--rollback-on-failure"]
    out = run(
        args,
        stdin=stdin,
        timeout_s=timeout_s + 30,
        action=f"helm upgrade --install {release} in {target.namespace}",
        abort_if=abort_if,
    )
    return Release.from_json(json.loads(out))


def rollback(target: Target, *, release: str, timeout_s: float = 300.0) -> None:
    """``helm rollback`` to the previous revision, waiting until it is ready."""
    run(
        ["rollback", release, *target.flags(), "--wait", "--timeout", f"{int(timeout_s)}s"],
        timeout_s=timeout_s + 30,
        action=f"helm rollback {release} in {target.namespace}",
    )


def uninstall(target: Target, *, release: str, wait: bool = True) -> None:
    """``helm uninstall``; succeeds if the release is already gone."""
    args = ["uninstall", release, *target.flags(), "--ignore-not-found"]
    if wait:
        args += ["--wait"]
    run(args, action=f"helm uninstall {release} in {target.namespace}")


# A release whose newest revision has one of these statuses is in the middle of a helm run,
# or was left there by one that was cut short (killed, or its API server went away).
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")


def history(target: Target, *, release: str) -> list[dict[str, Any]]:
    """The release's revisions, oldest first; [] when there is no such release."""
    try:
        out = run(["history", release, *target.flags(), "--output", "json"],
                  action=f"helm history {release} in {target.namespace}")  # fmt: skip
    except errors.HelmError as e:
        if "release: not found" in (e.stderr or ""):
            return []
        raise
    revisions: list[dict[str, Any]] = json.loads(out or "[]")
    return revisions


def recover_interrupted(target: Target, *, release: str, timeout_s: float = 300.0) -> str | None:
    """Undo a helm run that was cut short and left ``release`` pending — helm refuses
    every later run with "another operation is in progress" — by rolling back to the
    previous revision, or uninstalling a release that never finished installing. What
    was done, or None when the release was not pending.

    Only for a caller that holds the release's lease: then no other helm run can be
    under way, so a pending revision is surely an abandoned one.
    """
    revisions = history(target, release=release)
    if not revisions or revisions[-1].get("status") not in PENDING:
        return None
    latest = f"revision {revisions[-1].get('revision')} ({revisions[-1].get('status')})"
    if any(r.get("status") in ("deployed", "superseded") for r in revisions[:-1]):
        rollback(target, release=release, timeout_s=timeout_s)
        return f"rolled back {latest}, left by a helm run that was cut short"
    uninstall(target, release=release)
    return f"uninstalled {latest}, left by an install that was cut short"


def list_releases(target: Target) -> list[dict[str, Any]]:
    """The releases in the target namespace, as helm lists them."""
    out = run(["list", *target.flags(), "--output", "json"], action="helm list")
    releases: list[dict[str, Any]] = json.loads(out or "[]")
    return releases


_CHART_VERSION = re.compile(r"-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$")


def chart_version(chart: str) -> str | None:
    """The version in `helm list`'s ``chart`` field (``name-1.2.3``), or None.

    >>> chart_version("ledger-worker-0.9.2")
    '0.9.2'
    """
    match = _CHART_VERSION.search(chart)
    return match.group(1) if match else None


def version() -> str:
    """The helm version string (``v4.x.y``)."""
    return run(["version", "--short"]).strip()


def template(
    chart: str | Path,
    *,
    release: str,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    api_versions: Sequence[str] = (),
) -> str:
    """``helm template``: the rendered manifests, without touching a cluster."""
    args = ["template", release, str(chart), "--namespace", namespace]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    args, stdin = _with_values(args, values)
    return run(args, stdin=stdin, timeout_s=120, action=f"helm template {chart}")


def lint(chart: str | Path, *, values: Mapping[str, Any] | None = None) -> str:
    """``helm lint --strict``; returns helm's report, raises `HelmError` if it fails."""
    args, stdin = _with_values(["lint", "--strict", str(chart)], values)
    return run(args, stdin=stdin, timeout_s=120, action=f"helm lint {chart}")


def test(target: Target, *, release: str, timeout_s: float = 120.0, logs: bool = False) -> str:
    """``helm test``: run the release's test hooks and wait for them to succeed. With
    ``logs`` their pods' logs (``POD LOGS: <pod>`` then the lines) end the output, or
    the error; kwok's simulated pods have none, and helm fails asking for them."""
    return run(
        [
            "test",
            release,
            *target.flags(),
            "--timeout",
            f"{int(timeout_s)}s",
            *(["--logs"] if logs else []),
        ],
        timeout_s=timeout_s + 30,
        action=f"helm test {release} in {target.namespace}",
    )


def package(chart_dir: Path, *, destination: Path) -> Path:
    """``helm package``: the chart as a .tgz in ``destination``."""
    out = run(
        ["package", str(chart_dir), "--destination", str(destination)],
        timeout_s=120,
        action=f"helm package {chart_dir}",
    )
    # helm prints "Successfully packaged chart and saved it to: <path>"
    return Path(out.strip().rsplit(": ", 1)[-1])


def show_chart(chart: Path) -> dict[str, Any]:
    """``helm show chart``: the Chart.yaml of a chart directory or archive."""
    text = run(["show", "chart", str(chart)], timeout_s=60, action=f"helm show chart {chart}")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise errors.HelmError(f"{chart} has no readable Chart.yaml")
    return data
