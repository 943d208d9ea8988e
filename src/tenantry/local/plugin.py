"""Plugs the local platform into the layers below it, which never import it: the traffic
wiring of environments on local clusters (`tenantry.traffic.wiring`) and the local
S3/SQS server as ``artifacts.endpoint: local`` (`tenantry.aws`), and the local OCI
registry as ``artifacts.registry: local`` (`tenantry.artifacts.oci`).

Called by the `tenantry` command when it is imported (so `python -m tenantry …`
workers and servers have it too), by the test fixtures and by the benchmarks.
"""

from __future__ import annotations

from tenantry import aws
from tenantry.local import awsserver, registry
from tenantry.local import traffic as local_traffic
from tenantry.traffic import wiring


def _aws_endpoint() -> str | None:
    server = awsserver.running()
    return server.endpoint if server else None


def install() -> None:
    """Register the local platform's traffic provider, S3/SQS endpoint and registry
    (idempotent)."""
    wiring.register(local_traffic.Provider())
    aws.register_endpoint(aws.LOCAL, _aws_endpoint)
    registry.register()
