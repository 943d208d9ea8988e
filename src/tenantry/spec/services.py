"""``services/<team>/<svc>/service.yaml``: the few lines a team writes per service.

A descriptor becomes the base chart's values (`values`, pure). Instead of a
descriptor a team may keep its own chart in ``services/<team>/<svc>/chart/``; it
is held to the same policy on its rendered objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tenantry.spec.models import (
    API_VERSION,
    DnsLabel,
    Model,
    Resources,
    Steps,
    dns_label_problem,
)

SERVICES_DIR = "services"
DESCRIPTOR = "service.yaml"
OWN_CHART = "chart"


_SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
# A registry host (with a dot or a port), a path, and a tag or digest.
_IMAGE = re.compile(
    r"^[a-z0-9.-]+(\.[a-z0-9-]+|:\d+)(/[a-z0-9._-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})$"
)


def _semver(value: str) -> str:
    if not _SEMVER.match(value):
        raise ValueError(f"{value!r} is not SemVer MAJOR.MINOR.PATCH (e.g. 1.4.0)")
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value):
        raise ValueError(
            f"{value!r} is not REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST "
            "(e.g. registry.acme.example/payments/api:1.4.0)"
        )
    return value


SemVer = Annotated[str, AfterValidator(_semver)]
Image = Annotated[str, AfterValidator(_image)]


class ContainerResources(Model):
    """Requests and limits of the service's container."""

    requests: Resources
    limits: Resources


class Probes(Model):
    """HTTP paths the kubelet probes."""

    readiness: str = Field(default="/ready", pattern=r"^/")
    liveness: str = Field(default="/healthz", pattern=r"^/")


class Ingress(Model):
    """An optional public host name."""

    host: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class Autoscaling(Model):
    """A HorizontalPodAutoscaler on CPU."""

    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=10, ge=1)
    target_cpu_utilization_percentage: int = Field(default=75, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas {self.max_replicas} is below minReplicas {self.min_replicas}"
            )
        return self


class Slo(Model):
    """What healthy means; the canary analysis holds a new version to it."""

    success_rate: float = Field(default=99.5, gt=0, le=100)
    latency_p99_ms: float = Field(default=500, gt=0)


class CanaryOverrides(Model):
    """A service's own canary settings; anything unset comes from platform.yaml."""

    steps: Steps | None = None
    interval_s: float | None = Field(default=None, gt=0)
    min_requests: int | None = Field(default=None, ge=1)
    max_failed_intervals: int | None = Field(default=None, ge=1)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A Secret's data key, as Kubernetes allows it.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"  # noqa: S105 (a pattern, not a secret)


def _secret_name(value: str) -> str:
    if "/" in value:
        raise ValueError(
            f"{value!r} names another tenant's secret: a service may use only its own "
            "tenant's secrets (write the name alone, e.g. db)"
        )
    if (problem := dns_label_problem(value)) is not None:
        raise ValueError(problem)
    return value


class SecretKeyRef(Model):
    """One key of one of the tenant's secrets (its value is set through the server,
    `tenantry secrets set`, and never written in the repository)."""

    name: Annotated[str, AfterValidator(_secret_name)]
    key: str = Field(pattern=SECRET_KEY_PATTERN)


class ServiceDescriptor(Model):
    """One service, described in a few lines."""

    api_version: Literal["tenantry.dev/v1"] = API_VERSION
    kind: Literal["Service"] = "Service"
    name: DnsLabel
    version: SemVer
    image: Image
    port: int = Field(default=8080, ge=1, le=65535)
    replicas: int = Field(default=2, ge=0, le=1000)
    resources: ContainerResources = ContainerResources(
        requests=Resources(cpu="100m", memory="128Mi"),
        limits=Resources(cpu="500m", memory="256Mi"),
    )
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretKeyRef] = Field(default_factory=dict)
    config: dict[str, str] = Field(default_factory=dict)
    probes: Probes = Probes()
    ingress: Ingress | None = None
    autoscaling: Autoscaling | None = None
    slo: Slo = Slo()
    canary: CanaryOverrides | None = None

    @model_validator(mode="after")
    def _secret_variables(self) -> ServiceDescriptor:
        for variable in self.secrets:
            if not _ENV_NAME.match(variable):
                raise ValueError(f"secrets: {variable!r} is not an environment variable name "
                                 "(letters, digits and _, not starting with a digit)")  # fmt: skip
            if variable in self.env or variable == "PORT":
                raise ValueError(f"secrets: {variable} is also set in env (or is PORT): "
                                 "give each variable one source")  # fmt: skip
        return self


def values(descriptor: ServiceDescriptor, *, tenant: str) -> dict[str, Any]:
    """The base chart's values for ``descriptor`` (pure)."""
    autoscaling = descriptor.autoscaling
    return {
        "tenant": tenant,
        "service": descriptor.name,
        "version": descriptor.version,
        "image": descriptor.image,
        "port": descriptor.port,
        "replicas": descriptor.replicas,
        "resources": descriptor.resources.model_dump(),
        "env": dict(descriptor.env),
        "secrets": [
            {"env": variable, "name": ref.name, "key": ref.key}
            for variable, ref in sorted(descriptor.secrets.items())
        ],
        "config": dict(descriptor.config),
        "probes": descriptor.probes.model_dump(),
        "ingress": {"host": descriptor.ingress.host if descriptor.ingress else ""},
        "autoscaling": {
            "enabled": autoscaling is not None,
            **(autoscaling.model_dump(by_alias=True) if autoscaling else {}),
        },
        "slo": descriptor.slo.model_dump(by_alias=True),
    }


def descriptor_path(repo_root: Path, tenant: str, service: str) -> Path:
    """Where the descriptor of ``tenant/service`` lives."""
    return repo_root / SERVICES_DIR / tenant / service / DESCRIPTOR
