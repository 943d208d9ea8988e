"""What a namespace's pods are doing, read from the API server for `tenantry.verify.diagnosis`.

Status from the Pod objects, the kubelet's events, and each unready container's
last log lines through the pod log API (the previous container's when it
restarted). Only reads; `diagnosis` decides what the facts mean.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

from lightkube.models.core_v1 import ContainerStateTerminated, ContainerStatus
from lightkube.resources.core_v1 import Event, Pod

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.verify import diagnosis

# An event's involvedObject.fieldPath for one container: ``spec.containers{app}``.
_FIELD_PATH = re.compile(r"^spec\.(?:init)?[cC]ontainers\{(?P<name>[^}]+)\}$")


def _terminated(state: ContainerStateTerminated | None) -> diagnosis.Terminated | None:
    if state is None:
        return None
    return diagnosis.Terminated(
        reason=state.reason or "",
        exit_code=int(state.exitCode),
        message=state.message or "",
        signal=state.signal,
    )


def _container(
    status: ContainerStatus, *, limits: dict[str, str], init: bool
) -> diagnosis.Container:
    state, last = status.state, status.lastState
    waiting = state.waiting if state else None
    return diagnosis.Container(
        name=status.name,
        ready=bool(status.ready),
        restarts=int(status.restartCount or 0),
        running=bool(state and state.running),
        waiting_reason=(waiting.reason or "") if waiting else "",
        waiting_message=(waiting.message or "") if waiting else "",
        terminated=_terminated(state.terminated if state else None),
        last_terminated=_terminated(last.terminated if last else None),
        memory_limit=limits.get(status.name, ""),
        init=init,
    )


def _memory_limits(pod: Pod) -> dict[str, str]:
    limits = {}
    spec = pod.spec
    for c in [*(spec.initContainers or []), *spec.containers] if spec else []:
        memory = ((c.resources.limits or {}) if c.resources else {}).get("memory")
        if memory:
            limits[c.name] = str(memory)
    return limits


def _events(kube: Kube, namespace: str) -> dict[str, list[diagnosis.Event]]:
    """The namespace's events about pods, by pod name, oldest first."""
    by_pod: dict[str, list[tuple[str, diagnosis.Event]]] = defaultdict(list)
    for event in kube.list(Event, namespace=namespace):
        involved = event.involvedObject
        if involved.kind != "Pod" or not involved.name:
            continue
        match = _FIELD_PATH.match(involved.fieldPath or "")
        count = max(int(event.count or 1), int(event.series.count or 1) if event.series else 1)
        when = event.lastTimestamp or event.eventTime or event.firstTimestamp
        by_pod[involved.name].append((
            when.isoformat() if when else "",
            diagnosis.Event(
                reason=event.reason or "", message=event.message or "",
                type=event.type or "Normal", count=count,
                container=match["name"] if match else "",
            ),
        ))  # fmt: skip
    return {name: [e for _, e in sorted(found, key=lambda pair: pair[0])]
            for name, found in by_pod.items()}  # fmt: skip


def _pod(pod: Pod, events: list[diagnosis.Event]) -> diagnosis.Pod:
    status = pod.status
    limits = _memory_limits(pod)
    containers = []
    unschedulable = ""
    if status is not None:
        containers = [_container(s, limits=limits, init=True)
                      for s in status.initContainerStatuses or []]  # fmt: skip
        containers += [_container(s, limits=limits, init=False)
                       for s in status.containerStatuses or []]  # fmt: skip
        for condition in status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                unschedulable = condition.message or condition.reason or "unschedulable"
    return diagnosis.Pod(
        name=pod.metadata.name if pod.metadata and pod.metadata.name else "?",
        phase=(status.phase if status else None) or "Pending",
        reason=(status.reason if status else None) or "",
        message=(status.message if status else None) or "",
        unschedulable=unschedulable,
        restart_policy=(pod.spec.restartPolicy if pod.spec else None) or "Always",
        containers=tuple(containers),
        events=tuple(events),
    )


def statuses(kube: Kube, namespace: str) -> list[diagnosis.Pod]:
    """Every pod in ``namespace``, status only: cheap enough to poll."""
    return [_pod(pod, []) for pod in kube.list(Pod, namespace=namespace)]


def _logs(kube: Kube, namespace: str, pod: diagnosis.Pod) -> tuple[diagnosis.Logs, ...]:
    found = []
    for c in pod.containers:
        if c.ready:
            continue
        previous = diagnosis.log_source(c)
        if previous is None:
            continue
        try:
            lines = kube.logs(pod.name, namespace=namespace, container=c.name,
                              previous=previous, tail_lines=diagnosis.LOG_LINES)  # fmt: skip
        except errors.KubeError as e:
            # The kubelet may already have removed a dead container: say so, and go on.
            found.append(diagnosis.Logs(c.name, previous, error=e.status_message or str(e)))
            continue
        found.append(diagnosis.Logs(c.name, previous, lines=lines))
    return tuple(found)


def observe(kube: Kube, namespace: str, *, logs: bool = True) -> list[diagnosis.Pod]:
    """Every pod in ``namespace`` with its events and, for unready containers, log tails
    (unless ``logs`` is False: kwok's simulated pods have none, and asking their node
    would only wait for an address nothing listens on)."""
    events = _events(kube, namespace)
    observed = []
    for pod in kube.list(Pod, namespace=namespace):
        name = (pod.metadata.name if pod.metadata else None) or ""
        facts = _pod(pod, events.get(name, []))
        if logs and diagnosis.explain(facts) is not None:
            facts = dataclasses.replace(facts, logs=_logs(kube, namespace, facts))
        observed.append(facts)
    return observed
