"""The Route 53 router against moto's Route 53 (the local AWS server, real HTTP): weighted
records with health checks, changed together, read back through the same interface the
canary controller drives."""

from __future__ import annotations

import boto3

from tenantry.traffic.route53 import Route53
from tenantry.traffic.router import Endpoint, Route

ROUTE = Route("payments-api", (
    Endpoint("prod-primary", "primary", "ingress.primary.acme.example:443"),
    Endpoint("prod-canary", "canary", "ingress.canary.acme.example:443"),
))  # fmt: skip


def test_weights_move_between_the_clusters_records(aws_server: str) -> None:
    client = boto3.client("route53", endpoint_url=aws_server, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
    zone = client.create_hosted_zone(Name="apps.acme.example", CallerReference="t")["HostedZone"]
    router = Route53(client, zone["Id"], "apps.acme.example")
    router.set_canary_weight(ROUTE, 0)
    assert [(s.cluster, s.weight) for s in router.state(ROUTE)] == [
        ("prod-primary", 100), ("prod-canary", 0),  # weight 0: Route 53's standby
    ]  # fmt: skip
    router.set_canary_weight(ROUTE, 25)
    states = router.state(ROUTE)
    assert [(s.cluster, s.weight) for s in states] == [("prod-primary", 75), ("prod-canary", 25)]
    records = client.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    weighted = [r for r in records if r.get("SetIdentifier")]
    assert {r["ResourceRecords"][0]["Value"] for r in weighted} == {
        "ingress.primary.acme.example", "ingress.canary.acme.example",
    }  # fmt: skip
    # moto reports every health check healthy, so what is checked here is ours: each
    # record's check probes its own cluster's ingress ...
    for record in weighted:
        check = client.get_health_check(HealthCheckId=record["HealthCheckId"])["HealthCheck"]
        config = check["HealthCheckConfig"]
        assert (config["FullyQualifiedDomainName"], config["Port"], config["ResourcePath"]) == (
            record["ResourceRecords"][0]["Value"], 443, "/healthz",
        )  # fmt: skip
    # ... and a record that lost its check is reported unhealthy, never assumed healthy.
    canary = next(r for r in weighted if r["SetIdentifier"] == "prod-canary")
    unchecked = {k: v for k, v in canary.items() if k != "HealthCheckId"}
    client.change_resource_record_sets(HostedZoneId=zone["Id"], ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": unchecked}]})  # fmt: skip
    assert [(s.cluster, s.healthy) for s in router.state(ROUTE)] == [
        ("prod-primary", True), ("prod-canary", False),
    ]  # fmt: skip
