"""A cluster ingress's backend from the cluster's EndpointSlices, as an ingress controller
builds it (pure: no I/O).

A service's EndpointSlices (label ``kubernetes.io/service-name``) list its pods' addresses
with conditions. Only an endpoint that is ``ready`` — and not ``terminating`` — gets new
requests: a pod that is not ready yet (or never will be: a bad release) and a pod on its
way out (the kubelet sent SIGTERM; it still answers what it already has) are left out.
An unset ``ready`` means ready (the API's own rule for consumers).

The ingress runs a fixed number of server *slots* per backend and fills them through its
runtime API, so pods coming and going never need a reload: `assign` keeps every pod that
is still wanted in the slot it already has (its open connections and counters stay
put), empties the slots of pods that left, and puts new pods into empty slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class Server:
    """One pod endpoint: where the ingress sends requests."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


class TooManyEndpointsError(ValueError):
    """More ready endpoints than the backend has slots."""


def _port(slice_: Mapping[str, Any], port_name: str) -> int | None:
    for port in slice_.get("ports") or []:
        if port.get("name", "") == port_name and port.get("port"):
            return int(port["port"])
    return None


def servers(slices: Iterable[Mapping[str, Any]], *, port_name: str = "http") -> list[Server]:
    """The ready, non-terminating IPv4 endpoints of a service's EndpointSlices (as dicts,
    the API's JSON), on the port named ``port_name``; sorted, each once."""
    found: set[Server] = set()
    for slice_ in slices:
        if slice_.get("addressType", "IPv4") != "IPv4":
            continue
        port = _port(slice_, port_name)
        if port is None:
            continue
        for endpoint in slice_.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in endpoint.get("addresses") or []:
                found.add(Server(str(address), port))
    return sorted(found)


@dataclass(frozen=True)
class SlotChange:
    """Put ``server`` into slot ``slot`` (1-based), or empty the slot (``server`` None)."""

    slot: int
    server: Server | None


def assign(current: Sequence[Server | None], wanted: Iterable[Server]) -> list[SlotChange]:
    """The changes that make the slots ``current`` (index i is slot i + 1; None: empty)
    hold exactly ``wanted``: pods already in a slot stay there, new pods go into the
    lowest empty slots (before any slot is emptied), then into the slots of pods gone
    (changed in place), and the slots of the other pods gone are emptied.
    `TooManyEndpointsError` if they do not fit."""
    want = sorted(set(wanted))
    kept: set[Server] = set()
    empty: list[int] = []
    leaving: list[int] = []
    for index, server in enumerate(current, start=1):
        if server is None:
            empty.append(index)
        elif server in want and server not in kept:
            kept.add(server)
        else:
            leaving.append(index)
    new = [s for s in want if s not in kept]
    if len(new) > len(empty) + len(leaving):
        raise TooManyEndpointsError(
            f"{len(want)} ready endpoints do not fit in {len(current)} ingress slots"
        )
    slots = empty + leaving
    filled = [SlotChange(slot, server) for slot, server in zip(slots, new, strict=False)]
    reused = set(slots[: len(new)])
    # New pods first: a backend whose last pod is being replaced never has no server.
    return filled + [SlotChange(slot, None) for slot in leaving if slot not in reused]
