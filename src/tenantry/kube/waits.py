"""Wait for objects to reach a state, and say precisely what was not reached.

Polling, not watching: rollouts here take seconds, a poll every few hundred
milliseconds costs nothing against a local API server, and it survives API server
restarts and dropped watches without reconnect logic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lightkube.resources.apps_v1 import Deployment

from tenantry import errors
from tenantry.kube.client import Kube

POLL_S = 0.25


@dataclass(frozen=True)
class RolloutState:
    """What a Deployment's status says about its rollout."""

    desired: int
    updated: int
    ready: int
    available: int
    observed_current: bool
    # Pods of every template; more than ``updated`` means old pods still run.
    total: int = 0

    @property
    def complete(self) -> bool:
        """All desired replicas run the newest template, are available, and no old pod
        remains (the conditions `kubectl rollout status` waits for)."""
        return (
            self.observed_current
            and self.updated == self.desired
            and self.total == self.updated
            and self.ready == self.desired
            and self.available == self.desired
        )

    def __str__(self) -> str:
        return (
            f"{self.ready}/{self.desired} ready, {self.updated} updated, {self.available} available"
        )


def rollout_state(deployment: Deployment) -> RolloutState:
    """Classify a Deployment's status (pure)."""
    spec_replicas = deployment.spec.replicas if deployment.spec else None
    desired = 1 if spec_replicas is None else spec_replicas
    status = deployment.status
    generation = deployment.metadata.generation if deployment.metadata else None
    observed = status.observedGeneration if status else None
    return RolloutState(
        desired=desired,
        updated=(status.updatedReplicas or 0) if status else 0,
        ready=(status.readyReplicas or 0) if status else 0,
        available=(status.availableReplicas or 0) if status else 0,
        observed_current=observed is not None and generation is not None and observed >= generation,
        total=(status.replicas or 0) if status else 0,
    )


def wait_for_rollout(
    kube: Kube, *, namespace: str, name: str, timeout_s: float = 120.0
) -> RolloutState:
    """Block until Deployment ``namespace/name`` has rolled out; else `WaitTimeoutError`."""
    deadline = time.monotonic() + timeout_s
    state: RolloutState | None = None
    while time.monotonic() < deadline:
        try:
            state = rollout_state(kube.get(Deployment, name, namespace=namespace))
        except errors.NotFoundError:
            state = None
        if state is not None and state.complete:
            return state
        time.sleep(POLL_S)
    seen = str(state) if state else "the Deployment does not exist"
    raise errors.WaitTimeoutError(
        f"Deployment {namespace}/{name} did not finish rolling out in {timeout_s:.0f}s ({seen})",
        fix=f"check its pods' events: kubectl -n {namespace} describe pods",
    )
