"""Real nodes: a real kubelet with containerd and runc runs real containers beside kwok.

One cluster (1 kwok node, 1 real node) for the module; the last test deletes it and
checks that nothing of it is left on the host. A machine that cannot run containers
(not root, no cgroups, no runc) skips these with the reason; CI runs as root and
runs them. A missing pinned tool is a failure, not a skip.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node, Pod

from tenantry import processes
from tenantry.images import build as images
from tenantry.kube import localcluster, realnode, realnodes
from tenantry.kube.client import Kube
from tests import real_nodes
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, real_nodes.needed]


@pytest.fixture(scope="module")
def real_cluster(state_dir: Path) -> Iterator[localcluster.LocalCluster]:
    name = f"rn-{secrets.token_hex(3)}"
    created = localcluster.create(name, nodes=1, real_nodes=1)
    try:
        yield created
    finally:
        localcluster.delete(name)


@pytest.fixture(scope="module")
def kube(real_cluster: localcluster.LocalCluster) -> Iterator[Kube]:
    with real_cluster.connect() as connection:
        yield connection


def _node_name(cluster: localcluster.LocalCluster) -> str:
    return f"{cluster.name}-real-0"


def _pod(name: str, node: str, *, args: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": images.app().ref,
        "imagePullPolicy": "Never",  # imported into the node's containerd, no registry
        "env": [{"name": "APP_VERSION", "value": "7.7.7"}],
        "ports": [{"containerPort": images.APP_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": images.APP_PORT},
            "periodSeconds": 1,
        },
    }
    if args is not None:
        container["args"] = args
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeSelector": {realnode.REAL_NODE_LABEL: "real"},
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def test_the_real_node_is_ready_and_run_by_its_kubelet_not_kwok(
    real_cluster: localcluster.LocalCluster, kube: Kube
) -> None:
    node = kube.get(Node, _node_name(real_cluster))
    assert node.status is not None and node.status.nodeInfo is not None
    assert node.status.nodeInfo.kubeletVersion == "v1.36.3"
    assert node.status.nodeInfo.containerRuntimeVersion.startswith("containerd://2.")
    annotations = (node.metadata.annotations if node.metadata else None) or {}
    assert "kwok.x-k8s.io/node" not in annotations
    ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    # The kwok node beside it is still kwok's.
    assert kube.get(Node, f"{real_cluster.name}-node-0").status is not None


def test_a_pod_with_the_app_image_runs_and_answers_http_on_its_pod_ip(
    real_cluster: localcluster.LocalCluster, kube: Kube
) -> None:
    kube.apply(_pod("app", _node_name(real_cluster)))

    def ready_ip() -> str | None:
        status = kube.get(Pod, "app", namespace="default").status
        if status is None or not status.podIP:
            return None
        ready = [c for c in status.conditions or [] if c.type == "Ready" and c.status == "True"]
        return status.podIP if ready else None

    ip = wait_for(ready_ip, "the app pod Ready with an IP", timeout_s=60)
    with urllib.request.urlopen(f"http://{ip}:{images.APP_PORT}/", timeout=5) as response:
        body = response.read().decode()
    assert body == "app 7.7.7 on app\n"  # service, version, pod (its hostname)
    with urllib.request.urlopen(f"http://{ip}:{images.APP_PORT}/healthz", timeout=5) as response:
        assert response.status == 200


def test_a_container_that_exits_shows_its_exit_code_and_crash_loop(
    real_cluster: localcluster.LocalCluster, kube: Kube
) -> None:
    kube.apply(_pod("crasher", _node_name(real_cluster), args=["-exit", "3"]))

    def crash_looping() -> tuple[int, str] | None:
        status = kube.get(Pod, "crasher", namespace="default").status
        for cs in (status.containerStatuses or []) if status else []:
            last = cs.lastState.terminated if cs.lastState else None
            waiting = cs.state.waiting if cs.state else None
            if last is not None and waiting is not None and waiting.reason:
                return last.exitCode, waiting.reason
        return None

    exit_code, reason = wait_for(crash_looping, "the crasher pod's exit code", timeout_s=60)
    assert exit_code == 3
    assert reason == "CrashLoopBackOff"


def _chains() -> set[tuple[str, str, str]]:
    found = set()
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            done = subprocess.run([command, "-w", "-t", table, "-S"], capture_output=True,
                                  text=True, check=False, timeout=30)  # fmt: skip
            found |= {(command, table, line.split()[1]) for line in done.stdout.splitlines()
                      if line.startswith("-N ")}  # fmt: skip
    return found


def _iptables_rules() -> str:
    out = []
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            done = subprocess.run([command, "-w", "-t", table, "-S"], capture_output=True,
                                  text=True, check=False, timeout=30)  # fmt: skip
            out.append(done.stdout)
    return "\n".join(out)


def _node_state(cluster: localcluster.LocalCluster) -> tuple[Path, dict[str, Any], list[int]]:
    """The real node's directory, what it recorded changing on the host, and the pids of
    its containerd and kubelet."""
    node_dir = realnode.node_dir(cluster.workdir, 0)
    changes = json.loads((node_dir / "host-changes.json").read_text())
    pids = [json.loads((node_dir / f"{n}.pid").read_text())["pid"]
            for n in ("containerd", "kubelet")]  # fmt: skip
    return node_dir, changes, pids


def test_stop_takes_the_real_node_off_the_host_and_start_brings_it_back(
    real_cluster: localcluster.LocalCluster,
) -> None:
    _, changes, pids = _node_state(real_cluster)
    localcluster.stop(real_cluster.name)
    for pid in pids:
        assert not processes.alive(pid), f"process {pid} of the real node outlived stop"
    gone = subprocess.run(["ip", "link", "show", changes["bridge"]], capture_output=True,
                          check=False, timeout=30)  # fmt: skip
    assert gone.returncode != 0, "the node's bridge outlived stop"

    localcluster.start(real_cluster.name)
    with real_cluster.connect() as kube:
        node = kube.get(Node, _node_name(real_cluster))
        assert node.status is not None
        assert [c.status for c in node.status.conditions or [] if c.type == "Ready"] == ["True"]
        kube.apply(_pod("after-restart", _node_name(real_cluster)))

        def answers() -> bool:
            status = kube.get(Pod, "after-restart", namespace="default").status
            if status is None or not status.podIP:
                return False
            try:
                with urllib.request.urlopen(f"http://{status.podIP}:8080/", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(answers, "a new pod answering after the restart", timeout_s=90)


def test_delete_leaves_no_process_mount_chain_bridge_or_cgroup_of_its_own(
    real_cluster: localcluster.LocalCluster,
) -> None:
    node_dir, changes, pids = _node_state(real_cluster)
    assert all(processes.alive(pid) for pid in pids)
    assert changes["network"] in _iptables_rules()  # the pods' masquerade rules
    assert realnodes.mounts_under(real_cluster.workdir)  # containers' rootfs, volumes

    assert localcluster.delete(real_cluster.name) is True
    _assert_nothing_left(node_dir, changes, pids, real_cluster.workdir)


def _assert_nothing_left(
    node_dir: Path, changes: dict[str, Any], pids: list[int], workdir: Path
) -> None:
    """No process, mount, iptables rule or chain, bridge, cgroup or netns of the node."""
    for pid in pids:
        assert not processes.alive(pid), f"process {pid} of the real node still runs"
    assert not realnodes.mounts_under(node_dir.parent.parent)
    run_dir = realnode.RUN_ROOT / changes["node_id"]
    assert not realnodes.mounts_under(run_dir) and not run_dir.exists()
    rules = _iptables_rules()
    assert changes["network"] not in rules
    # The kubelet's chains are shared by every kubelet on the machine: they go with the last.
    others = realnodes.REGISTRY.exists() and any(realnodes.REGISTRY.iterdir())
    if not others:
        existed = {tuple(c) for c in changes["chains"]}
        for command, table, chain in _chains():
            assert (command, table, chain) in existed or chain not in realnode.KUBELET_CHAINS, (
                f"{command} -t {table} chain {chain} left behind"
            )
    bridges = subprocess.run(["ip", "link", "show", changes["bridge"]], capture_output=True,
                             check=False, timeout=30)  # fmt: skip
    assert bridges.returncode != 0, f"bridge {changes['bridge']} left behind"
    for cgroup in changes["cgroups"]:
        assert not Path(cgroup).exists(), f"cgroup {cgroup} left behind"
    assert not workdir.exists()
    netns = Path("/var/run/netns")
    subnet = ipaddress.IPv4Network(changes["subnet"])
    for entry in netns.iterdir() if netns.exists() else []:
        done = subprocess.run(["ip", "-n", entry.name, "-4", "-o", "addr", "show"],
                              capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
        for address in re.findall(r"inet ([0-9.]+)/", done.stdout):
            assert ipaddress.IPv4Address(address) not in subnet, f"netns {entry.name} left"


def test_delete_after_the_kubelet_and_containerd_died_still_leaves_nothing(
    state_dir: Path,
) -> None:
    cluster = localcluster.create(f"rn-{secrets.token_hex(3)}", nodes=1, real_nodes=1)
    try:
        with cluster.connect() as kube:
            kube.apply(_pod("app", _node_name(cluster)))

            def running() -> bool:
                status = kube.get(Pod, "app", namespace="default").status
                return bool(status and status.phase == "Running" and status.podIP)

            wait_for(running, "the app pod Running", timeout_s=60)
        node_dir, changes, pids = _node_state(cluster)
        for pid in pids:  # a crash: nobody tears the pod's network down
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(processes.alive(p) for p in pids), "both to die")
    finally:
        assert localcluster.delete(cluster.name) is True
    _assert_nothing_left(node_dir, changes, pids, cluster.workdir)
