"""Render a repository's service through the real `helm template` (adapter).

A service with a descriptor renders the base chart with the descriptor's values;
a service with its own chart renders that chart as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantry import helm
from tenantry.charts import BASE_CHART, manifests
from tenantry.spec import services
from tenantry.spec.repository import ServiceSource


@dataclass(frozen=True)
class ChartInput:
    """What helm needs to render or install one service."""

    chart: Path
    values: dict[str, Any]
    release: str


def chart_input(service: ServiceSource, *, environment: str = "") -> ChartInput:
    """The chart, values and release name for ``service`` (pure)."""
    if service.descriptor is not None:
        values = services.values(service.descriptor, tenant=service.tenant)
        if environment:
            values["environment"] = environment
        return ChartInput(chart=BASE_CHART, values=values, release=service.name)
    assert service.own_chart is not None
    return ChartInput(chart=service.own_chart, values={}, release=service.name)


def render(service: ServiceSource, *, namespace: str) -> list[manifests.Rendered]:
    """The objects ``service`` renders to in ``namespace``."""
    source = chart_input(service)
    text = helm.template(
        source.chart, release=source.release, namespace=namespace, values=source.values
    )
    return manifests.split(text)
