"""Changed paths → the services to verify (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from tenantry.spec import repository, services


def affected(paths: Iterable[str], repo: repository.Repository) -> list[repository.ServiceSource]:
    """Services whose files, tenant or platform changed; deleted ones are not listed."""
    tenants: set[str] = set()
    changed: set[tuple[str, str]] = set()
    for path in paths:
        parts = PurePosixPath(path).parts
        if parts == (repository.PLATFORM_FILE,):
            return list(repo.services)
        if len(parts) == 2 and parts[0] == repository.TENANTS_DIR:
            tenants.add(PurePosixPath(parts[1]).stem)
        elif len(parts) >= 4 and parts[0] == services.SERVICES_DIR:
            changed.add((parts[1], parts[2]))
    return [s for s in repo.services if s.tenant in tenants or (s.tenant, s.name) in changed]
