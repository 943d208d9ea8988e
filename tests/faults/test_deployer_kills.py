"""A `tenantry deployer` process SIGKILLed at each step of a staging deploy; another
deployer process, started without the kill, finishes it: exactly one successful
deployment of the version in the ledger, none left ``running``, the version deployed in
every staging cluster as helm reports it, and the event handled, not lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry import helm
from tenantry.ledger import Ledger
from tenantry.tenancy import reconcile
from tests.faults.conftest import Outcome, Record
from tests.faults.deployers import (
    KEY,
    VERSION,
    Deployer,
    fast_platform,
    queued,
    running_versions,
    start,
    succeeded,
    whole,
)
from tests.integration.test_delivery import Platform, ledger, onboarded, publish
from tests.integration.test_deployer_workers import slow_chart
from tests.waiting import wait_for

__all__ = ["fast_platform", "ledger", "onboarded"]  # fixtures shared with the delivery tests

DURING_HELM = "during helm"
# Each point and how the test phrases it in the reliability table.
POINTS = {
    "deploy.before-helm": "lease taken and deployment row written, before helm runs",
    DURING_HELM: "while its helm (tenantry-helmd) runs `upgrade --install --wait`",
    "deploy.after-helm": "helm succeeded, before the ledger records it",
    "deploy.after-ledger": "the ledger recorded the deploy, before the SQS message is deleted",
}


def children(pid: int) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of the processes whose parent is ``pid``, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # it exited while we looked
            continue
        # The command name in parentheses may hold spaces: the fields follow the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            yield int(entry.name), argv


def helm_child(pid: int) -> int | None:
    """The pid of ``pid``'s child that runs its helm: a `helm upgrade` (the CLI), or the
    worker's tenantry-helmd (Helm's SDK, the default), if any."""
    for child, argv in children(pid):
        name = Path(argv[0]).name if argv else ""
        if (name == "helm" and "upgrade" in argv) or name == "tenantry-helmd":
            return child
    return None


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not: it only waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def release_status(p: Platform) -> str | None:
    """Helm's status of release web in the (one) staging cluster."""
    repo = p.load()
    (ref,) = repo.platform.environment("staging").clusters
    target = reconcile.resolve(ref, "staging", repo.root)
    revisions = helm.history(
        helm.Target(kubeconfig=target.kubeconfig, context=target.context, namespace="echo"),
        release="web",
    )
    return str(revisions[-1].get("status")) if revisions else None


@pytest.mark.parametrize("point", list(POINTS))
def test_a_deployer_killed_mid_deploy_is_finished_by_another(
    point: str, fast_platform: Platform, ledger: Ledger, tmp_path: Path, reliability: Record
) -> None:
    p = fast_platform
    doomed = start(p, ledger, "doomed", tmp_path,
                   kill_at=None if point == DURING_HELM else point)  # fmt: skip
    survivor: Deployer | None = None
    orphan: int | None = None
    try:
        if point == DURING_HELM:
            slow_chart(p, VERSION)
        publish(p, ledger)
        if point == DURING_HELM:
            # No fault point: the test kills the process itself, by pid, once its helm
            # child is running (helm is then orphaned and runs on, as it would when only
            # the worker's own process dies).
            orphan = wait_for(lambda: helm_child(doomed.pid),
                              "the deployer's helm child", timeout_s=60,
                              poll_s=0.02)  # fmt: skip
            # Killed inside helm's --wait (the slow chart's pods take seconds to be
            # ready), once helm has recorded the release as pending.
            wait_for(lambda: release_status(p) == "pending-install",
                     "helm to record the release as pending-install", timeout_s=30,
                     poll_s=0.05)  # fmt: skip
            os.kill(doomed.pid, signal.SIGKILL)
        # The process dies by itself at its fault point.
        try:
            code = doomed.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the deployer never died at {point}:\n{doomed.output()}"
            ) from None
        killed = time.monotonic()
        assert code == -signal.SIGKILL, f"exit {code}, not SIGKILL:\n{doomed.output()}"
        if orphan is not None:
            # Its helm dies with it rather than run on unowned, racing the next worker.
            pid = orphan
            wait_for(lambda: not alive(pid), "the killed deployer's helm to die with it",
                     timeout_s=10)  # fmt: skip
        events_before = max((e.id for e in ledger.events()), default=0)

        survivor = start(p, ledger, "survivor", tmp_path)
        try:
            wait_for(lambda: whole(p, ledger),
                     "the version recorded as succeeded and its message deleted",
                     timeout_s=120, poll_s=0.1)  # fmt: skip
            recovery_s: float | None = time.monotonic() - killed
        except AssertionError:
            recovery_s = None  # never recovered: recorded, then the assertions below fail
        survivor.stop()

        deploys = [d for d in ledger.deployments() if (d.service, d.version) == ("web", VERSION)]
        results = [(d.actor, d.result) for d in deploys]
        handled = [
            e for e in ledger.events()
            if e.id > events_before and e.key == KEY and e.result in ("deployed", "skipped")
        ]  # fmt: skip
        running = running_versions(p)
        deployed_everywhere = all(r == (f"web-{VERSION}", "deployed") for r in running.values())
        wins = len(succeeded(ledger))
        half_done = sum(1 for d in deploys if d.result == "running")
        dead_letters = queued(p, f"{p.queue}-dlq")
        lost = int(wins == 0 or not deployed_everywhere or not handled or dead_letters > 0)
        reliability(Outcome(
            fault=f"`tenantry deployer` SIGKILLed {point if point == 'during helm' else 'at ' + point}",
            when=f"a staging deploy: {POINTS[point]}",
            happened=(
                f"another deployer took over; ledger: {', '.join(r for _, r in results)}; "
                f"survivor: {', '.join(e.result for e in handled) or 'nothing'}; "
                f"helm: {', '.join(f'{c} {v[0]} {v[1]}' if v else f'{c} none' for c, v in running.items())}"
            ),
            lost=lost,
            doubled=max(0, wins - 1),
            half_done=half_done,
            recovery_s=recovery_s,
        ))  # fmt: skip

        assert recovery_s is not None, f"not recovered: {results}\n{survivor.output()}"
        assert wins == 1, results
        assert half_done == 0, results
        assert deployed_everywhere, running
        assert [e.result for e in handled] == [
            "skipped" if point == "deploy.after-ledger" else "deployed"
        ], (handled, survivor.output())
        assert dead_letters == 0
        # What the dead worker left is named, not silently overwritten.
        if point != "deploy.after-ledger":
            assert ("deployer:doomed", "interrupted") in results, results
        assert ("deployer:survivor" if point != "deploy.after-ledger" else "deployer:doomed",
                "succeeded") in results, results  # fmt: skip
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()
        if orphan is not None and alive(orphan):
            # It outlived its deployer (a failure, asserted above): stop it by its pid so
            # the next test's uninstall does not race it.
            os.kill(orphan, signal.SIGKILL)
