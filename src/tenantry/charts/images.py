"""Which images a rendered chart runs, and which of them are the tenant's own.

Pure. A real cluster pulls every image from its registry. The local clusters reach
no registry, so the platform stands in for the tenant's build pushing its images:
the images under ``<registry>/<tenant>/`` (a registry the platform allows) are built
and loaded into the real nodes before helm runs. Any other image is left to the
kubelet, which tries to pull it and reports why it could not — as a cluster whose
registry lacks an image does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tenantry.charts import manifests


def workload_images(objects: Iterable[manifests.Rendered]) -> list[str]:
    """Every container image of the rendered workloads and pods, in order, once each."""
    found: dict[str, None] = {}
    for obj in objects:
        spec = manifests.pod_spec(obj)
        if spec is None:
            continue
        for key in ("initContainers", "containers"):
            for container in spec[1].get(key) or []:
                image = container.get("image") if isinstance(container, dict) else None
                if isinstance(image, str) and image:
                    found.setdefault(image, None)
    return list(found)


def tenant_images(images: Iterable[str], registries: Sequence[str], tenant: str) -> list[str]:
    """The images of ``images`` that the tenant publishes itself: tagged, under
    ``<registry>/<tenant>/`` of an allowed registry, and not pinned by digest."""
    prefixes = tuple(f"{registry.rstrip('/')}/{tenant}/" for registry in registries)
    own = []
    for image in images:
        repository, _, tag = image.rpartition(":")
        if "@" in image or not repository or "/" in tag:
            continue
        if image.startswith(prefixes):
            own.append(image)
    return own
