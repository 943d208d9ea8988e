"""Helm's SDK in one helper process (`tenantry.helm.sdk`, the pinned tenantry-helmd) does
what the helm CLI does, on the session cluster: install then upgrade with --wait, as an
identity (and refused without rights), a failed upgrade rolled back, several releases at
once; a run stopped by ``abort_if``; and a helper that died started again."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry import errors, helm, processes
from tenantry.helm import sdk
from tenantry.kube import waits
from tenantry.kube.client import Identity, Kube
from tenantry.kube.localcluster import LocalCluster
from tests.conftest import CHARTS
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def helmd() -> Iterator[sdk.Helmd]:
    runner = sdk.Helmd()
    yield runner
    runner.close()


@pytest.fixture
def own_helmd(cluster: LocalCluster, namespace: str) -> Iterator[tuple[sdk.Helmd, helm.Target]]:
    """A helper of the test's own (its life is what the test watches) and where it acts."""
    runner = sdk.Helmd()
    yield runner, helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    runner.close()


@pytest.fixture(params=["cli", "sdk"])
def upgrade_install(
    request: pytest.FixtureRequest, helmd: sdk.Helmd
) -> Callable[..., helm.Release]:
    """The same action through the helm CLI and through the helper."""
    runner: Callable[..., helm.Release] = (
        helm.upgrade_install if request.param == "cli" else helmd.upgrade_install
    )
    return runner


def test_install_then_upgrade_waits_for_the_rollout(
    cluster: LocalCluster, admin: Kube, namespace: str, upgrade_install: Callable[..., Any]
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    installed = upgrade_install(target, release="web", chart=CHARTS / "rollout", timeout_s=120)
    assert (installed.name, installed.revision, installed.status) == ("web", 1, "deployed")
    assert installed.chart.startswith("rollout-")
    state = waits.wait_for_rollout(admin, namespace=namespace, name="web", timeout_s=10)
    assert (state.desired, state.ready, state.available) == (3, 3, 3)
    upgraded = upgrade_install(target, release="web", chart=CHARTS / "rollout",
                               values={"replicas": 5}, timeout_s=120)  # fmt: skip
    assert (upgraded.revision, upgraded.status) == (2, "deployed")
    assert waits.wait_for_rollout(admin, namespace=namespace, name="web", timeout_s=10).ready == 5
    # What either wrote, the helm CLI reads: the same release storage.
    (listed,) = helm.list_releases(target)
    assert (listed["name"], listed["revision"], listed["status"]) == ("web", "2", "deployed")


def test_the_cli_and_the_helper_take_turns_on_one_release(
    cluster: LocalCluster, admin: Kube, namespace: str, helmd: sdk.Helmd
) -> None:
    # Server-side apply records each field's manager: both must be "helm", or the second
    # one's upgrade conflicts with the first one's fields.
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    helmd.upgrade_install(target, release="web", chart=CHARTS / "rollout", timeout_s=120)
    helm.upgrade_install(target, release="web", chart=CHARTS / "rollout",
                         values={"replicas": 4}, timeout_s=120)  # fmt: skip
    last = helmd.upgrade_install(target, release="web", chart=CHARTS / "rollout",
                                 values={"replicas": 2}, timeout_s=120)  # fmt: skip
    assert (last.revision, last.status) == (3, "deployed")
    helm.rollback(target, release="web", timeout_s=120)
    assert waits.wait_for_rollout(admin, namespace=namespace, name="web", timeout_s=30).ready == 4


def test_an_identity_without_rights_is_refused_in_helms_words(
    cluster: LocalCluster, admin: Kube, namespace: str, upgrade_install: Callable[..., Any]
) -> None:
    admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "nobody", "namespace": namespace}})  # fmt: skip
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace,
                         identity=Identity.service_account(namespace, "nobody"))  # fmt: skip
    with pytest.raises(errors.HelmError) as refused:
        upgrade_install(target, release="web", chart=CHARTS / "rollout", timeout_s=60)
    assert "forbidden" in refused.value.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in refused.value.stderr


def test_an_object_with_an_unknown_field_is_refused_by_the_api_server(
    cluster: LocalCluster, namespace: str, upgrade_install: Callable[..., Any], tmp_path: Path
) -> None:
    # The helper skips the client's OpenAPI check; the API server's strict field
    # validation, which every apply asks for, still refuses what the schema lacks.
    chart = tmp_path / "rollout"
    shutil.copytree(CHARTS / "rollout", chart)
    template = next((chart / "templates").glob("*.yaml"))
    template.write_text(template.read_text().replace("spec:\n", "spec:\n  bogusField: 1\n", 1))
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    with pytest.raises(errors.HelmError) as refused:
        upgrade_install(target, release="web", chart=chart, timeout_s=60)
    assert ".spec.bogusField: field not declared in schema" in refused.value.stderr


def test_a_failed_upgrade_is_rolled_back_and_the_last_good_release_serves(
    cluster: LocalCluster, namespace: str, upgrade_install: Callable[..., Any]
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    upgrade_install(target, release="web", chart=CHARTS / "good", timeout_s=120)
    with pytest.raises(errors.HelmError) as failed:
        upgrade_install(target, release="web", chart=CHARTS / "never-ready", timeout_s=5,
                        rollback_on_failure=True)  # fmt: skip
    assert "UPGRADE FAILED" in failed.value.stderr
    revisions = helm.history(target, release="web")
    assert [r["status"] for r in revisions] == ["superseded", "failed", "deployed"]
    assert revisions[-1]["chart"] == revisions[0]["chart"]


def test_several_releases_at_once_through_one_helper(
    cluster: LocalCluster, namespace: str, helmd: sdk.Helmd
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    results: dict[str, helm.Release] = {}

    def install(name: str) -> None:
        results[name] = helmd.upgrade_install(target, release=name, chart=CHARTS / "rollout",
                                              timeout_s=120)  # fmt: skip

    threads = [threading.Thread(target=install, args=(f"web{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: (r.revision, r.status) for n, r in results.items()} == {
        f"web{i}": (1, "deployed") for i in range(4)
    }


def test_abort_if_stops_the_run_at_once(
    cluster: LocalCluster, namespace: str, helmd: sdk.Helmd
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    asked = threading.Event()

    def abort() -> str | None:
        asked.set()
        return "pod web-0 is in CrashLoopBackOff"

    with pytest.raises(errors.HelmError, match="stopped: pod web-0 is in CrashLoopBackOff"):
        helmd.upgrade_install(target, release="web", chart=CHARTS / "never-ready",
                              timeout_s=300, abort_if=abort)  # fmt: skip
    assert asked.is_set()
    # Stopped, not left running: the next run of the release is not refused as "another
    # operation in progress" once the stopped one has ended.
    (revision,) = helm.history(target, release="web")
    assert revision["status"] == "failed"


def test_a_helper_that_died_is_started_again(own_helmd: tuple[sdk.Helmd, helm.Target]) -> None:
    runner, target = own_helmd
    runner.upgrade_install(target, release="a", chart=CHARTS / "rollout", timeout_s=120)
    first = runner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: runner.pid is None, "the helper to be gone")
    again = runner.upgrade_install(target, release="b", chart=CHARTS / "rollout", timeout_s=120)
    assert again.status == "deployed"
    assert runner.pid not in (None, first)


def test_an_idle_helper_is_ended_and_started_again_when_needed(
    own_helmd: tuple[sdk.Helmd, helm.Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk, "IDLE_S", 0.5)
    runner, target = own_helmd
    runner.upgrade_install(target, release="a", chart=CHARTS / "rollout", timeout_s=120)
    first = runner.pid
    assert first is not None
    wait_for(lambda: runner.pid is None and not processes.alive(first),
             "the idle helper to end", timeout_s=30)  # fmt: skip
    again = runner.upgrade_install(target, release="b", chart=CHARTS / "rollout", timeout_s=120)
    assert again.status == "deployed"


def test_the_helper_outlives_the_thread_that_first_needed_it(
    own_helmd: tuple[sdk.Helmd, helm.Target],
) -> None:
    # The kernel's parent-death signal follows the thread that started the child: a helper
    # started by a worker thread that then ended would be killed with it.
    runner, target = own_helmd
    first = threading.Thread(target=lambda: runner.upgrade_install(
        target, release="a", chart=CHARTS / "rollout", timeout_s=120))  # fmt: skip
    first.start()
    first.join()
    pid = runner.pid
    assert pid is not None
    again = runner.upgrade_install(target, release="b", chart=CHARTS / "rollout", timeout_s=120)
    assert again.status == "deployed"
    assert runner.pid == pid


def test_the_helper_keeps_ten_revisions_as_the_cli_does(
    cluster: LocalCluster, namespace: str, helmd: sdk.Helmd
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    for replicas in range(1, 13):
        helmd.upgrade_install(target, release="web", chart=CHARTS / "rollout",
                              values={"replicas": replicas}, timeout_s=120)  # fmt: skip
    revisions = helm.history(target, release="web")
    assert [r["revision"] for r in revisions] == list(range(3, 13))
