"""`tenantry new service`: a commented descriptor to start from (pure text + one write)."""

from __future__ import annotations

from pathlib import Path

from tenantry import errors
from tenantry.spec import models, services

_TEMPLATE = """\
# {tenant}/{name}: rendered by the platform's base chart into a Deployment, Service,
# PodDisruptionBudget (replicas > 1), ServiceAccount, optional ConfigMap, HPA and
# Ingress, all meeting the platform's policy. `tenantry render {tenant}/{name}` shows them.
apiVersion: tenantry.dev/v1
kind: Service
name: {name}
version: 0.1.0                  # SemVer; publishing adds the git commit as build metadata
image: {image}
port: {port}                    # the container port; the Service listens on 80
replicas: 2
resources:                      # required: the namespace quota counts these
  requests: {{cpu: 100m, memory: 128Mi}}
  limits: {{cpu: 500m, memory: 256Mi}}
probes:                         # HTTP paths on the container port
  readiness: /ready
  liveness: /healthz
env: {{}}                         # NAME: value
config: {{}}                      # file name: contents, mounted at /etc/config
# ingress:
#   host: {name}.{tenant}.example.com
# autoscaling:                  # replaces `replicas` with an HPA on CPU
#   minReplicas: 2
#   maxReplicas: 10
#   targetCpuUtilizationPercentage: 75
slo:                            # the canary analysis holds new versions to these
  successRate: 99.5             # percent of requests that succeed
  latencyP99Ms: 500
"""


def descriptor_text(tenant: str, name: str, *, image: str, port: int) -> str:
    """The scaffolded descriptor for ``tenant/name`` (pure)."""
    return _TEMPLATE.format(tenant=tenant, name=name, image=image, port=port)


def write(repo_root: Path, tenant: str, name: str, *, image: str, port: int) -> Path:
    """Write the scaffold; refuses to overwrite an existing service."""
    # Checked before anything is written: the loader would refuse the directory, and
    # a name like `..` must not choose where the file goes.
    if (problem := models.dns_label_problem(name)) is not None:
        raise errors.UsageError(
            f"service name {problem}", fix="choose a service name such as refunds or web-2"
        )
    path = services.descriptor_path(repo_root, tenant, name)
    if path.parent.exists():
        raise errors.UsageError(
            f"{path.parent} already exists",
            fix="edit its service.yaml, or choose another service name",
        )
    path.parent.mkdir(parents=True)
    path.write_text(descriptor_text(tenant, name, image=image, port=port))
    return path
