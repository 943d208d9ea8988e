"""Tenantry: a multi-tenant Kubernetes + Helm platform-as-a-service.

The package is layered (see README "Layout"): `spec` models → pure planners →
adapters (`kube`, `helm`, `tools`) → actions → `cli`. Callers import modules, not
names, so the origin of every name stays visible (``errors.KubeError``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tenantry")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
