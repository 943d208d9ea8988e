"""The cluster ingress from EndpointSlices (pure): which endpoints get requests, how they
fill the ingress's slots, its configuration and HAProxy's server state read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenantry.traffic import endpoints, ingress
from tenantry.traffic.endpoints import Server, SlotChange


def endpoint(ip: str, *, ready: bool | None = True, terminating: bool | None = None) -> dict:
    conditions: dict[str, Any] = {}
    if ready is not None:
        conditions["ready"] = ready
    if terminating is not None:
        conditions["terminating"] = terminating
    return {"addresses": [ip], "conditions": conditions}


def slice_(*eps: dict, port: int = 8080, name: str = "http", family: str = "IPv4") -> dict:
    return {"addressType": family, "ports": [{"name": name, "port": port, "protocol": "TCP"}],
            "endpoints": list(eps)}  # fmt: skip


def test_only_ready_endpoints_that_are_not_terminating_get_requests() -> None:
    slices = [
        slice_(endpoint("10.244.1.4"), endpoint("10.244.1.2", ready=None),
               endpoint("10.244.1.3", ready=False),  # a new pod not ready yet, or a bad one
               endpoint("10.244.1.5", ready=False, terminating=True)),  # on its way out
        slice_(endpoint("10.244.1.6", ready=True, terminating=True)),
        slice_(endpoint("10.244.1.4")),  # the same pod in two slices counts once
    ]  # fmt: skip
    assert endpoints.servers(slices) == [Server("10.244.1.2", 8080), Server("10.244.1.4", 8080)]


def test_the_port_is_the_named_service_port_and_other_families_are_skipped() -> None:
    slices = [
        slice_(endpoint("10.244.1.2"), port=9090, name="metrics"),
        slice_(endpoint("10.244.1.3"), port=8081),
        slice_(endpoint("fd00::1"), family="IPv6"),
        {"addressType": "IPv4", "ports": None, "endpoints": [endpoint("10.244.1.9")]},
    ]
    assert endpoints.servers(slices) == [Server("10.244.1.3", 8081)]
    assert endpoints.servers([]) == []


A, B, C, D = (Server(f"10.244.1.{i}", 8080) for i in range(1, 5))


def test_pods_keep_their_slots_new_ones_fill_free_slots_before_any_is_emptied() -> None:
    changes = endpoints.assign([A, None, B, C], [A, C, D])
    assert changes == [SlotChange(2, D), SlotChange(3, None)]


def test_a_single_pod_replaced_is_added_before_the_old_one_goes() -> None:
    assert endpoints.assign([A, None], [B]) == [SlotChange(2, B), SlotChange(1, None)]


def test_the_slot_of_a_pod_gone_is_reused_in_place_when_no_slot_is_empty() -> None:
    assert endpoints.assign([A, B], [A, C]) == [SlotChange(2, C)]


def test_nothing_to_do_when_the_slots_hold_the_ready_pods() -> None:
    assert endpoints.assign([A, B, None], [B, A]) == []
    assert endpoints.assign([None, None], []) == []


def test_a_pod_in_two_slots_keeps_one() -> None:
    assert endpoints.assign([A, A], [A]) == [SlotChange(2, None)]


def test_more_pods_than_slots_is_an_error() -> None:
    with pytest.raises(endpoints.TooManyEndpointsError, match="3 ready endpoints do not fit in 2"):
        endpoints.assign([A, None], [A, B, C])


def test_the_ingress_configuration_has_a_frontend_and_empty_slots_per_route() -> None:
    text = ingress.config(
        [ingress.Backend("payments-api", 18080, "payments", "api")],
        admin_socket=Path("/s/admin.sock"), stats_port=18090, slots=8,
    )  # fmt: skip
    assert "frontend payments-api\n    bind 127.0.0.1:18080\n" in text
    assert "server-template pod 1-8 127.0.0.1:9 disabled" in text
    assert "retry-on conn-failure empty-response\n" in text  # never an app's own 5xx
    assert "bind 127.0.0.1:18090" in text


STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 b 1 pod1 127.0.0.1 0 5 1 1 0 1 0 0 8 0 0 0 - 9 - 0 0 - - 0
3 b 2 pod2 10.244.1.2 2 4 1 1 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0
3 b 3 pod3 10.244.1.3 0 1 1 1 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0

"""


def test_slots_read_back_from_haproxys_server_state() -> None:
    # pod1: configured disabled; pod2: made ready; pod3: put in maintenance again.
    assert ingress.slots_from_state(STATE) == [None, Server("10.244.1.2", 8080), None]
    with pytest.raises(ingress.IngressError, match="no header"):
        ingress.slots_from_state("No such backend.\n")
