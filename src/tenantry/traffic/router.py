"""The one small interface the canary controller drives, whatever routes the traffic
(HAProxy on the local platform and on premises, Route 53 weighted records on AWS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Endpoint:
    """A cluster's ingress for one service."""

    cluster: str
    role: str  # "primary" or "canary"
    address: str  # host:port


@dataclass(frozen=True)
class Route:
    """One service's live traffic: where it enters and the clusters behind it."""

    name: str  # "<tenant>-<service>"
    endpoints: tuple[Endpoint, ...]

    def endpoint(self, role: str) -> Endpoint:
        """The endpoint with ``role``; KeyError when the service has none."""
        for endpoint in self.endpoints:
            if endpoint.role == role:
                return endpoint
        raise KeyError(role)


@dataclass(frozen=True)
class ServerState:
    """What the router reports for one cluster of one route."""

    cluster: str
    role: str
    weight: int  # percent of the route's traffic it is set to take
    healthy: bool


class Router(Protocol):
    """Splits a route's traffic between its primary and canary clusters."""

    def set_canary_weight(self, route: Route, weight: int) -> None:
        """Send ``weight`` percent to the canary cluster and the rest to the primary."""

    def state(self, route: Route) -> list[ServerState]:
        """Each cluster's weight and health."""
