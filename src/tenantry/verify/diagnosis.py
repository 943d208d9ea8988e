"""Why a service's pods are not ready: pod status + events + log tail → the message (pure).

On a real node the kubelet knows why a container does not run — it crashed (its
exit code), its image could not be pulled (the runtime's own error), it was killed
for using too much memory (``OOMKilled``), or its readiness probe never passed (the
probe's last answer). `tenantry verify` reports exactly that, with the container's
last log lines, instead of helm's "context deadline exceeded". The observed facts
are plain values (`Pod`, `Container`, `Event`, `Logs`) gathered by
`tenantry.verify.pods`; this module only decides:

- `fatal` — whether a pod can no longer become ready, from its status alone (cheap
  enough to poll while helm waits, so verification stops early);
- `log_source` — which of a container's logs tell why (the previous container's
  when it restarted, none when it never started);
- `explain` / `report` — the message a user reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Container waiting reasons that will not get better by waiting (the kubelet's words).
FATAL_WAITING = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
     "CreateContainerConfigError", "InvalidImageName", "CreateContainerError",
     "RunContainerError"}
)  # fmt: skip
# Warning events that say nothing about this pod: the local nodes run no cluster DNS,
# and every pod there falls back to the node's resolver.
_NOISE = frozenset({"MissingClusterDNS"})
# How much of the story a message tells: enough to act on, short enough to read.
LOG_LINES = 10
_EVENTS = 3
_LINE_CHARS = 500
_PODS = 3
# The kubelet's readiness-probe event, e.g. "Readiness probe failed: HTTP probe failed
# with statuscode: 503".
_READINESS = re.compile(r"^Readiness probe failed")
# The kubelet's echo of a waiting reason as an event ("Error: ErrImagePull"): the
# container's state already says it.
_ECHO = re.compile(r"^Error: \w+$")


@dataclass(frozen=True)
class Terminated:
    """How a container ended: the kubelet's reason (Error, OOMKilled...) and exit code."""

    reason: str
    exit_code: int
    message: str = ""
    signal: int | None = None


@dataclass(frozen=True)
class Container:
    """One container's status, as the kubelet reported it."""

    name: str
    ready: bool = False
    restarts: int = 0
    running: bool = False
    waiting_reason: str = ""
    waiting_message: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    memory_limit: str = ""
    init: bool = False


@dataclass(frozen=True)
class Event:
    """One event about a pod; ``container`` when it is about one of its containers."""

    reason: str
    message: str
    type: str = "Warning"
    count: int = 1
    container: str = ""


@dataclass(frozen=True)
class Logs:
    """The last lines one container logged, or why they could not be read."""

    container: str
    previous: bool
    lines: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Pod:
    """What was observed of one pod: status, events (oldest first) and log tails."""

    name: str
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    unschedulable: str = ""
    restart_policy: str = "Always"
    containers: tuple[Container, ...] = ()
    events: tuple[Event, ...] = ()
    logs: tuple[Logs, ...] = ()


def _crashed(ended: Terminated) -> bool:
    return ended.exit_code != 0 or ended.reason == "OOMKilled"


def _exit(ended: Terminated, memory_limit: str = "") -> str:
    text = f"{ended.reason or 'terminated'}, exit code {ended.exit_code}"
    if ended.signal:
        text += f" (signal {ended.signal})"
    if ended.reason == "OOMKilled" and memory_limit:
        text += f" (memory limit {memory_limit})"
    return text


def _restarted(count: int) -> str:
    return f"restarted {count} time{'' if count == 1 else 's'}"


def fatal(pod: Pod) -> str | None:
    """Why ``pod`` cannot become ready, if its status already makes that certain.

    A container in one of the `FATAL_WAITING` states, or one that crashed and was
    restarted and crashed again (between restarts the kubelet may report it as
    terminated rather than in CrashLoopBackOff), or a Failed pod.
    """
    if pod.phase == "Failed":
        return f"pod {pod.name} failed: {pod.reason} {pod.message}".strip()
    for c in pod.containers:
        if c.waiting_reason in FATAL_WAITING:
            return f"pod {pod.name} container {c.name}: {c.waiting_reason}" + (
                f" ({c.waiting_message})" if c.waiting_message else ""
            )
        if (
            c.terminated is not None
            and _crashed(c.terminated)
            and pod.restart_policy != "Never"
            and c.restarts >= 1
        ):
            where = f"pod {pod.name} container {c.name}"
            return f"{where}: {_exit(c.terminated)}, {_restarted(c.restarts)}"
    return None


def log_source(container: Container) -> bool | None:
    """Which log tells why ``container`` is not ready: the previous container's (True),
    the current one's (False), or none (None: it never started, e.g. its image)."""
    if container.terminated is not None:
        return False  # it ended and was not restarted yet: its own log is the crash's
    if container.last_terminated is not None:
        return True  # restarted (or waiting to be): the crash is in the one before
    if container.running:
        return False
    return None


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _LINE_CHARS else text[: _LINE_CHARS - 1] + "…"


def _last_readiness_failure(pod: Pod, container: str) -> Event | None:
    for event in reversed(pod.events):
        if event.container in ("", container) and _READINESS.match(event.message):
            return event
    return None


def _headline(pod: Pod, c: Container) -> str:
    where = f"pod {pod.name} container {c.name}"
    if c.waiting_reason:
        return f"{where}: {c.waiting_reason}" + (
            f": {_short(c.waiting_message)}" if c.waiting_message else ""
        )
    if c.terminated is not None:
        restarted = f", {_restarted(c.restarts)}" if c.restarts else ""
        return f"{where}: terminated: {_exit(c.terminated, c.memory_limit)}{restarted}"
    if c.running:
        probe = _last_readiness_failure(pod, c.name)
        if probe is None:
            return f"{where}: running but not ready (no failed readiness probe reported)"
        times = f" ({probe.count} times)" if probe.count > 1 else ""
        return f"{where}: running but never ready: {_short(probe.message)}{times}"
    return f"{where}: not started"


def _warnings(pod: Pod, c: Container) -> list[Event]:
    """The pod's last distinct warning events about it or container ``c``, newest last.

    Once a container has crashed, its failed readiness probes (connection refused while
    it was down) only repeat that it crashed, and are left out.
    """
    crashed = c.terminated is not None or c.last_terminated is not None
    seen: dict[tuple[str, str], Event] = {}
    for event in pod.events:
        if event.type != "Warning" or event.reason in _NOISE or _ECHO.match(event.message):
            continue
        if event.container not in ("", c.name):
            continue
        if crashed and _READINESS.match(event.message):
            continue
        key = (event.reason, event.message)
        seen.pop(key, None)
        seen[key] = event
    return list(seen.values())[-_EVENTS:]


def _container_story(pod: Pod, c: Container) -> list[str]:
    lines = [_headline(pod, c)]
    if c.terminated is None and c.last_terminated is not None:
        text = f"  last exit: {_exit(c.last_terminated, c.memory_limit)}"
        if c.restarts:
            text += f"; {_restarted(c.restarts)}"
        lines.append(text)
    ended = c.terminated or c.last_terminated
    if ended is not None and ended.message:
        lines.append(f"  termination message: {_short(ended.message)}")
    for event in _warnings(pod, c):
        times = f" (x{event.count})" if event.count > 1 else ""
        lines.append(f"  event {event.reason}{times}: {_short(event.message)}")
    for logs in pod.logs:
        if logs.container != c.name:
            continue
        which = "previous container" if logs.previous else "current container"
        if logs.error:
            lines.append(f"  logs ({which}) unavailable: {_short(logs.error)}")
        elif not logs.lines:
            lines.append(f"  logs ({which}): empty")
        else:
            lines.append(f"  last log lines ({which}):")
            lines += [f"    {_short(line)}" for line in logs.lines[-LOG_LINES:]]
    return lines


def explain(pod: Pod) -> str | None:
    """What keeps ``pod`` from being ready — per container its state, exit code, the
    kubelet's warnings and its last log lines — or None when nothing does."""
    if pod.phase == "Succeeded":
        return None
    if pod.unschedulable:
        return f"pod {pod.name} not scheduled: {_short(pod.unschedulable)}"
    stories: list[str] = []
    if pod.phase == "Failed":
        stories.append(f"pod {pod.name} failed: {pod.reason} {_short(pod.message)}".strip())
    for c in pod.containers:
        # An init container that finished is done; a main container must be ready.
        if c.ready or (c.init and c.terminated is not None and c.terminated.exit_code == 0):
            continue
        stories += _container_story(pod, c)
    if not stories and pod.phase == "Pending":
        return f"pod {pod.name} pending" + (f": {_short(pod.message)}" if pod.message else "")
    return "\n".join(stories) or None


def report(pods: Sequence[Pod], *, problems: Sequence[str] = ()) -> str:
    """The whole diagnosis: ``problems`` found elsewhere (a ReplicaSet refused by quota)
    first, then up to a few unready pods, the certain failures before the rest."""
    ranked = sorted(pods, key=lambda p: fatal(p) is None)
    stories = [s for s in (explain(p) for p in ranked) if s]
    shown = stories[:_PODS]
    if len(stories) > len(shown):
        shown.append(f"... and {len(stories) - len(shown)} more pods not ready")
    return "\n".join([*problems, *shown])
