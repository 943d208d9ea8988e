"""Names in generated PromQL stay label values, whatever they contain (pure).

The loader refuses such names; these tests build the hostile sources directly, to
show the queries would hold even if one got past it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantry.observability import alertmanager, prometheus, promql
from tenantry.spec import repository
from tenantry.traffic import analysis, canary
from tenantry.traffic.router import Endpoint, Route

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)

HOSTILE = [
    'web"} or up{tenant="payments',
    'web\\"} or up{tenant=\\"payments',
    "web\\",
    'web\\\\"} or vector(1) #',
    'a\nb"} or up{tenant="payments',
    "wéb ünïcode",
]


def strings_and_code(expr: str) -> tuple[str, list[str]]:
    """Split PromQL the way its lexer does: the code outside string literals, and each
    double-quoted literal's value (escapes decoded)."""
    code, values, i = [], [], 0
    while i < len(expr):
        if expr[i] != '"':
            code.append(expr[i])
            i += 1
            continue
        j = i + 1
        while expr[j] != '"':
            assert expr[j] != "\n", f"unterminated string in {expr!r}"
            j += 2 if expr[j] == "\\" else 1
        # The three escapes are JSON's too; strict=False lets other control characters
        # stand, as PromQL does.
        values.append(json.loads(expr[i : j + 1], strict=False))
        code.append('""')
        i = j + 1
    return "".join(code), values


def selectors(expr: str) -> list[dict[str, str]]:
    """Every ``{name="value",...}`` of ``expr``, values decoded."""
    code, values = strings_and_code(expr)
    found, taken = [], iter(values)
    for braces in re.findall(r"\{([^{}]*)\}", code):
        names = re.findall(r'([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*""', braces)
        found.append({name: next(taken) for name in names})
    return found


@given(st.text())
def test_a_label_value_is_one_string_literal_holding_the_value(value: str) -> None:
    literal = promql.label_value(value)
    code, values = strings_and_code(literal)
    assert (code, values) == ('""', [value])


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_service_name_cannot_close_a_default_rule_selector(hostile: str) -> None:
    for ref in ("checkout/web", "payments/api"):  # own chart and descriptor rules
        source = dataclasses.replace(REPO.service(ref), name=hostile)
        for rule in prometheus.service_rules(source)["rules"]:
            code, _ = strings_and_code(rule["expr"])
            assert " or " not in code and "vector" not in code, rule["expr"]
            for selector in selectors(rule["expr"]):
                assert selector.get("service", hostile) == hostile
                assert selector.get("deployment", hostile) == hostile
                assert selector.get("tenant", source.tenant) == source.tenant


def test_the_hostile_name_is_escaped_as_promql_requires() -> None:
    source = dataclasses.replace(REPO.service("checkout/web"), name=HOSTILE[0])
    rules = {r["alert"]: r["expr"] for r in prometheus.service_rules(source)["rules"]}
    assert rules["ScrapeFailing"] == (
        'up{tenant="checkout",service="web\\"} or up{tenant=\\"payments"} == 0'
    )


def test_safe_names_give_the_same_rules_as_before() -> None:
    rules = {r["alert"]: r["expr"] for r in
             prometheus.service_rules(REPO.service("payments/api"))["rules"]}  # fmt: skip
    assert rules["PodsNotReady"] == (
        'kube_deployment_status_replicas_unavailable{namespace="payments",deployment="api"} > 0'
    )
    assert rules["DeployFailed"] == (
        'increase(tenantry_deployer_deploys_total{job="tenantry-platform",result="failed",'
        'tenant="payments",service="api"}[15m]) > 0'
    )


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_route_service_and_cluster_names_stay_values_in_canary_queries(
    hostile: str,
) -> None:
    route = Route(hostile, (Endpoint(hostile, "primary", "127.0.0.1:1"),
                            Endpoint("prod-canary", "canary", "127.0.0.1:2")))  # fmt: skip
    target = canary.Target("payments", hostile, "1.0.0", route, analysis.Objectives(99, 0.5),
                           analysis.Policy())  # fmt: skip
    for query in canary.queries(target, "primary", 30):
        code, _ = strings_and_code(query)
        assert " or " not in code and "vector" not in code, query
        for selector in selectors(query):
            assert set(selector.values()) <= {hostile, "5xx"}, query


def test_canary_queries_for_safe_names() -> None:
    route = Route("payments-api", (Endpoint("prod-primary", "primary", "127.0.0.1:1"),
                                   Endpoint("prod-canary", "canary", "127.0.0.1:2")))  # fmt: skip
    target = canary.Target("payments", "api", "1.0.0", route, analysis.Objectives(99, 0.5),
                           analysis.Policy())  # fmt: skip
    assert canary.queries(target, "canary", 29.6) == (
        'sum(increase(haproxy_server_http_responses_total{proxy="payments-api",'
        'server="prod-canary"}[30s]))',
        'sum(increase(haproxy_server_http_responses_total{proxy="payments-api",'
        'server="prod-canary",code="5xx"}[30s]))',
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{service="api",cluster="prod-canary"}[30s])))',
    )


def test_a_hostile_tenant_name_stays_one_alertmanager_matcher() -> None:
    hostile = REPO.tenant("payments").model_construct(
        **{**dict(REPO.tenant("payments")), "name": 'payments", tenant=~".*'}
    )
    planned = alertmanager.plan(dataclasses.replace(REPO, tenants=(hostile,)), secrets_dir="/s")
    (route,) = planned.config["route"]["routes"][1:]
    assert route["matchers"] == ['tenant="payments\\", tenant=~\\".*"']
