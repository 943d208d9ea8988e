"""Tenantry: a multi-tenant Kubernetes + Helm platform-as-a-service.

The package is layered (see README "Layout"): `spec` models → pure planners →
adapters (`kube`, `helm`, `tools`) → actions → `cli`. Callers import modules, not
names, so the origin of every name stays visible (``errors.KubeError``).
"""


def version() -> str:
    """The installed package's version (read on demand: importlib.metadata is slow to load)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("tenantry")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"
