"""Plugs the local platform into the layers below it, which never import it: the traffic
wiring of environments on local clusters (`tenantry.traffic.wiring`) and the local
S3/SQS server as ``artifacts.endpoint: local`` (`tenantry.aws`), and the local OCI
registry as ``artifacts.registry: local`` (`tenantry.artifacts.oci`).

Called by the `tenantry` command when it is imported (so `python -m tenantry …`
workers and servers have it too), by the test fixtures and by the benchmarks.
"""

from __future__ import annotations

from tenantry import aws
from tenantry.artifacts import oci
from tenantry.traffic import wiring

# The local modules are imported when first resolved, not here: every command plugs
# the local platform in, and few need it (HAProxy, the registry's certificates).


def _aws_endpoint() -> str | None:
    from tenantry.local import awsserver

    server = awsserver.running()
    return server.endpoint if server else None


def _traffic() -> wiring.Provider:
    from tenantry.local import traffic

    return traffic.Provider()


def _registry() -> oci.Endpoint | None:
    from tenantry.local import registry

    return registry.endpoint()


def install() -> None:
    """Register the local platform's traffic provider, S3/SQS endpoint and registry
    (idempotent)."""
    wiring.register(_traffic)
    aws.register_endpoint(aws.LOCAL, _aws_endpoint)
    oci.register_registry(oci.LOCAL, _registry)
