"""The Route 53 router, for platforms on AWS: one weighted record per cluster of a route,
each tied to a health check of the cluster's ingress.

Unlike HAProxy, Route 53 answers with a record of weight 0 when every record with a
weight is unhealthy, so the canary's record at weight 0 *is* the standby here. DNS
caching makes it slower than HAProxy (the TTL, 10 s by default, plus the health
checkers' interval); use HAProxy in front where failover must take seconds.
"""

from __future__ import annotations

from typing import Any

from tenantry import errors
from tenantry.traffic.haproxy import server_weights
from tenantry.traffic.router import Endpoint, Route, ServerState


class Route53:
    """Weighted records in one hosted zone (boto3's route53 client)."""

    def __init__(self, client: Any, zone_id: str, domain: str, *, ttl: int = 10) -> None:
        self.client, self.zone_id, self.domain, self.ttl = client, zone_id, domain.rstrip("."), ttl
        self._checks: dict[str, str] = {}

    def record_name(self, route: Route) -> str:
        """The DNS name users reach the route at."""
        return f"{route.name}.{self.domain}."

    def _health_check(self, route: Route, endpoint: Endpoint) -> str:
        key = f"{route.name}/{endpoint.cluster}"
        if key not in self._checks:
            host, _, port = endpoint.address.partition(":")
            created = self.client.create_health_check(
                CallerReference=f"tenantry-{key}",
                HealthCheckConfig={
                    "Type": "HTTP", "FullyQualifiedDomainName": host,
                    "Port": int(port or 80), "ResourcePath": "/healthz",
                    "RequestInterval": 10, "FailureThreshold": 1,
                },
            )  # fmt: skip
            self._checks[key] = created["HealthCheck"]["Id"]
        return self._checks[key]

    def set_canary_weight(self, route: Route, weight: int) -> None:
        """UPSERT both weighted records in one change batch (applied together)."""
        if not 0 <= weight <= 100:
            raise errors.UsageError(f"weight {weight} is outside 0-100")
        weights = server_weights(weight)
        changes = []
        for endpoint in route.endpoints:
            host = endpoint.address.partition(":")[0]
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {
                "Name": self.record_name(route), "Type": "CNAME", "TTL": self.ttl,
                "SetIdentifier": endpoint.cluster, "Weight": weights.get(endpoint.role, 0),
                "HealthCheckId": self._health_check(route, endpoint),
                "ResourceRecords": [{"Value": host}],
            }})  # fmt: skip
        self.client.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Comment": f"tenantry: canary {weight}%", "Changes": changes},
        )

    def state(self, route: Route) -> list[ServerState]:
        """Each cluster's record weight, and its health check's last verdict."""
        found = self.client.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=self.record_name(route),
            StartRecordType="CNAME",
        )["ResourceRecordSets"]  # fmt: skip
        records = {r.get("SetIdentifier"): r for r in found if r["Name"] == self.record_name(route)}
        states = []
        for endpoint in route.endpoints:
            record = records.get(endpoint.cluster, {})
            states.append(ServerState(
                cluster=endpoint.cluster, role=endpoint.role,
                weight=int(record.get("Weight", 0)),
                healthy=self._healthy(record.get("HealthCheckId")),
            ))  # fmt: skip
        return states

    def _healthy(self, check_id: str | None) -> bool:
        if check_id is None:
            return False
        observations = self.client.get_health_check_status(HealthCheckId=check_id)[
            "HealthCheckObservations"
        ]
        if not observations:
            return True  # no checker has reported yet: Route 53 treats it as healthy
        return any("Success" in o["StatusReport"]["Status"] for o in observations)
