"""A service's canary policy and objectives: its descriptor over the platform's defaults
(pure)."""

from __future__ import annotations

from tenantry import errors
from tenantry.spec import models
from tenantry.spec.repository import ServiceSource
from tenantry.spec.services import Slo
from tenantry.traffic import analysis


def policy(platform: models.Platform, service: ServiceSource) -> analysis.Policy:
    """The canary policy for ``service``; `UsageError` when the platform has no traffic."""
    if platform.traffic is None:
        raise errors.UsageError(
            "platform.yaml has no traffic section, so there is no canary analysis",
            fix="add traffic: {router: haproxy} (see examples/platform-repo)",
        )
    base = platform.traffic.canary
    own = service.descriptor.canary if service.descriptor else None
    return analysis.Policy(
        steps=tuple((own and own.steps) or base.steps),
        interval_s=(own and own.interval_s) or base.interval_s,
        min_requests=(own and own.min_requests) or base.min_requests,
        max_failed_intervals=(own and own.max_failed_intervals) or base.max_failed_intervals,
        success_margin=base.success_margin,
        latency_margin=base.latency_margin,
    )


def objectives(service: ServiceSource) -> analysis.Objectives:
    """The SLOs a canary is held to (a service without a descriptor gets the defaults)."""
    slo = service.descriptor.slo if service.descriptor else Slo()
    return analysis.Objectives(
        success_rate=slo.success_rate, latency_p99_s=slo.latency_p99_ms / 1000
    )
