"""Pod status + events + log tail → why a rollout failed (`tenantry.verify.diagnosis`), as
tables of what the kubelet reports for each way a container fails on a real node."""

from __future__ import annotations

import pytest

from tenantry.verify.diagnosis import (
    Container,
    Event,
    Logs,
    Pod,
    Terminated,
    explain,
    fatal,
    log_source,
    report,
)

PULL_ERROR = (
    'failed to pull and unpack image "registry.acme.example/shared/missing:1.0.0": failed to '
    'resolve image: failed to do request: Head "https://registry.acme.example/v2/shared/missing/'
    'manifests/1.0.0": dial tcp: lookup registry.acme.example: no such host'
)
BACKOFF = "back-off 20s restarting failed container=app pod=api-1_alpha(uid)"
NOISE = Event("MissingClusterDNS", "kubelet does not have ClusterDNS IP configured")

CRASH_LOOP = Pod(
    "api-1",
    phase="Running",
    containers=(
        Container(
            "app",
            restarts=2,
            waiting_reason="CrashLoopBackOff",
            waiting_message=BACKOFF,
            last_terminated=Terminated("Error", 3),
        ),
    ),
    events=(
        NOISE,
        # While it is down its probe is refused: the crash already says so.
        Event("Unhealthy", "Readiness probe failed: connect: connection refused", container="app"),
        Event("BackOff", "Back-off restarting failed container app", container="app", count=4),
    ),
    logs=(Logs("app", previous=True, lines=("exiting with code 3 as asked",)),),
)
# Between restarts the kubelet reports the crashed container as terminated.
CRASHED_AGAIN = Pod(
    "api-2",
    phase="Running",
    containers=(Container("app", restarts=3, terminated=Terminated("Error", 3)),),
    logs=(Logs("app", previous=False, lines=("exiting with code 3 as asked",)),),
)
IMAGE_PULL = Pod(
    "api-3",
    containers=(Container("app", waiting_reason="ErrImagePull", waiting_message=PULL_ERROR),),
    events=(
        Event("Pulling", "Pulling image ...", type="Normal", container="app"),
        Event("Failed", f"Failed to pull image ...: {PULL_ERROR}", container="app", count=2),
        Event("Failed", "Error: ErrImagePull", container="app"),
    ),
)
NEVER_READY = Pod(
    "api-4",
    phase="Running",
    containers=(Container("app", running=True),),
    events=(
        Event(
            "Unhealthy",
            'Readiness probe failed: Get "http://10.244.1.2:8080/ready": '
            "connect: connection refused",
            container="app",
        ),
        Event(
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            container="app",
            count=15,
        ),
    ),
    logs=(Logs("app", previous=False, lines=("api 1.0.0 listening on :8080",)),),
)
OOM = Pod(
    "api-5",
    phase="Running",
    containers=(
        Container(
            "app",
            restarts=1,
            waiting_reason="CrashLoopBackOff",
            waiting_message=BACKOFF,
            last_terminated=Terminated("OOMKilled", 137),
            memory_limit="64Mi",
        ),
    ),
    logs=(Logs("app", previous=True, lines=tuple(f"holding {n} MiB" for n in (16, 32, 48))),),
)
READY = Pod("api-6", phase="Running", containers=(Container("app", ready=True, running=True),))
UNSCHEDULABLE = Pod(
    "api-7",
    unschedulable="0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable",
)
FIRST_CRASH = Pod(
    "api-8", phase="Running",
    containers=(Container("app", restarts=0, terminated=Terminated("Error", 1)),),
)  # fmt: skip
EVICTED = Pod("api-9", phase="Failed", reason="Evicted", message="The node was low on memory.")
GONE_LOGS = Pod(
    "api-10",
    phase="Running",
    containers=(
        Container(
            "app",
            restarts=2,
            waiting_reason="CrashLoopBackOff",
            last_terminated=Terminated("Error", 2),
        ),
    ),
    logs=(
        Logs("app", previous=True, error="unable to retrieve container logs for containerd://x"),
    ),
)


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (CRASH_LOOP, f"pod api-1 container app: CrashLoopBackOff ({BACKOFF})"),
        (CRASHED_AGAIN, "pod api-2 container app: Error, exit code 3, restarted 3 times"),
        (IMAGE_PULL, f"pod api-3 container app: ErrImagePull ({PULL_ERROR})"),
        (NEVER_READY, None),  # a probe may still pass: only a timeout tells
        (OOM, f"pod api-5 container app: CrashLoopBackOff ({BACKOFF})"),
        (READY, None),
        (UNSCHEDULABLE, None),  # the cluster may still make room
        (FIRST_CRASH, None),  # one crash may be a dependency not up yet
        (EVICTED, "pod api-9 failed: Evicted The node was low on memory."),
    ],
    ids=lambda v: v.name if isinstance(v, Pod) else None,
)
def test_fatal_only_when_waiting_cannot_help(pod: Pod, expected: str | None) -> None:
    assert fatal(pod) == expected


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (CRASH_LOOP.containers[0], True),  # waiting to restart: the crash is the previous one
        (CRASHED_AGAIN.containers[0], False),  # ended, not restarted yet: its own log
        (IMAGE_PULL.containers[0], None),  # never started: no log at all
        (NEVER_READY.containers[0], False),
        (Container("app", running=True, restarts=1, last_terminated=Terminated("Error", 1)), True),
    ],
)
def test_which_log_tells_why(container: Container, expected: bool | None) -> None:
    assert log_source(container) is expected


@pytest.mark.parametrize(
    ("pod", "expected_lines"),
    [
        (
            CRASH_LOOP,
            [
                f"pod api-1 container app: CrashLoopBackOff: {BACKOFF}",
                "  last exit: Error, exit code 3; restarted 2 times",
                "  event BackOff (x4): Back-off restarting failed container app",
                "  last log lines (previous container):",
                "    exiting with code 3 as asked",
            ],
        ),
        (
            CRASHED_AGAIN,
            [
                "pod api-2 container app: terminated: Error, exit code 3, restarted 3 times",
                "  last log lines (current container):",
                "    exiting with code 3 as asked",
            ],
        ),
        (
            IMAGE_PULL,
            [
                f"pod api-3 container app: ErrImagePull: {PULL_ERROR}",
                f"  event Failed (x2): Failed to pull image ...: {PULL_ERROR}",
            ],
        ),
        (
            NEVER_READY,
            [
                "pod api-4 container app: running but never ready: Readiness probe failed: "
                "HTTP probe failed with statuscode: 503 (15 times)",
                '  event Unhealthy: Readiness probe failed: Get "http://10.244.1.2:8080/ready": '
                "connect: connection refused",
                "  event Unhealthy (x15): Readiness probe failed: HTTP probe failed with "
                "statuscode: 503",
                "  last log lines (current container):",
                "    api 1.0.0 listening on :8080",
            ],
        ),
        (
            OOM,
            [
                f"pod api-5 container app: CrashLoopBackOff: {BACKOFF}",
                "  last exit: OOMKilled, exit code 137 (memory limit 64Mi); restarted 1 time",
                "  last log lines (previous container):",
                "    holding 16 MiB",
                "    holding 32 MiB",
                "    holding 48 MiB",
            ],
        ),
        (
            UNSCHEDULABLE,
            [
                "pod api-7 not scheduled: 0/2 nodes are available: 1 Insufficient cpu, "
                "1 node(s) were unschedulable"
            ],
        ),
        (EVICTED, ["pod api-9 failed: Evicted The node was low on memory."]),
        (
            GONE_LOGS,
            [
                "pod api-10 container app: CrashLoopBackOff",
                "  last exit: Error, exit code 2; restarted 2 times",
                "  logs (previous container) unavailable: unable to retrieve container logs "
                "for containerd://x",
            ],
        ),
    ],
    ids=lambda v: v.name if isinstance(v, Pod) else None,
)
def test_explain_tells_state_exit_code_events_and_last_log_lines(
    pod: Pod, expected_lines: list[str]
) -> None:
    assert explain(pod) == "\n".join(expected_lines)


def test_a_ready_pod_and_a_finished_init_container_need_no_explaining() -> None:
    done_init = Container("migrate", init=True, terminated=Terminated("Completed", 0))
    pod = Pod("api-11", phase="Running",
              containers=(done_init, Container("app", ready=True, running=True)))  # fmt: skip
    assert explain(READY) is None
    assert explain(pod) is None
    assert explain(Pod("job-1", phase="Succeeded")) is None


def test_a_long_log_keeps_its_last_lines_and_long_lines_are_cut() -> None:
    lines = (*(f"line {n}" for n in range(30)), "x" * 1000)
    pod = Pod("api-12", phase="Running", containers=(Container("app", running=True),),
              logs=(Logs("app", previous=False, lines=lines),))  # fmt: skip
    text = explain(pod) or ""
    assert "line 20" not in text and "line 21" in text and "line 29" in text
    assert max(len(line) for line in text.splitlines()) <= 510


def test_report_puts_certain_failures_first_and_counts_the_rest() -> None:
    text = report(
        [READY, NEVER_READY, CRASH_LOOP, IMAGE_PULL, OOM, CRASHED_AGAIN],
        problems=["ReplicaSet api-7d: FailedCreate: exceeded quota"],
    )
    heads = [line for line in text.splitlines() if not line.startswith(" ")]
    assert heads == [
        "ReplicaSet api-7d: FailedCreate: exceeded quota",
        f"pod api-1 container app: CrashLoopBackOff: {BACKOFF}",
        f"pod api-3 container app: ErrImagePull: {PULL_ERROR}",
        f"pod api-5 container app: CrashLoopBackOff: {BACKOFF}",
        "... and 2 more pods not ready",
    ]
    assert report([READY]) == ""
