"""`tenantry publish`: package changed services and upload them, recording each in the ledger."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenantry import errors, gitrepo
from tenantry.artifacts import package, source
from tenantry.aws import Clients
from tenantry.ledger import Ledger, now, tables
from tenantry.spec.repository import Repository, ServiceSource


@dataclass(frozen=True)
class Published:
    """What publishing one service did."""

    ref: str
    version: str
    key: str
    digest: str
    result: str


def provenance(root: Path) -> package.Provenance:
    """Provenance from the repository's checked-out commit."""
    return package.Provenance(
        git_commit=gitrepo.head_commit(root),
        author=gitrepo.head_author(root),
        time=now().isoformat(timespec="seconds"),
    )


def publish(
    repo: Repository,
    services: Sequence[ServiceSource],
    *,
    clients: Clients | None,
    ledger: Ledger,
    origin: package.Provenance,
    on_done: Callable[[Published], None] | None = None,
) -> list[Published]:
    """Package and upload each service to the platform's chart store (its S3 bucket
    through ``clients``, or its OCI registry); every outcome is recorded in the ledger."""
    with contextlib.closing(source.for_repository(repo, clients)) as charts:
        return _publish(charts, services, ledger=ledger, origin=origin, on_done=on_done)


def _publish(
    charts: source.ChartSource, services: Sequence[ServiceSource], *, ledger: Ledger,
    origin: package.Provenance, on_done: Callable[[Published], None] | None,
) -> list[Published]:  # fmt: skip
    # Every chart is checked before the first upload, so a refused one leaves no
    # half-published set behind.
    package.refuse_chart_links(list(services))
    results = []
    with tempfile.TemporaryDirectory(prefix="tenantry-publish-") as workdir:
        for service in services:
            pkg = package.package(service, provenance=origin, workdir=Path(workdir))
            key = charts.key(pkg.tenant, pkg.service, pkg.version)
            # Recorded before the upload: the deployer trusts only digests the ledger holds,
            # and the bucket's event may reach it before this call returns.
            row: tables.Publication = ledger.add(
                tables.Publication(
                    tenant=pkg.tenant, service=pkg.service, version=pkg.version,
                    digest=pkg.digest, git_commit=origin.git_commit, author=origin.author,
                    key=key, result="publishing", at=now(),
                )
            )  # fmt: skip
            try:
                outcome = charts.publish(pkg)
            except errors.TenantryError:
                ledger.set_publication(row.id, result="failed")
                raise
            ledger.set_publication(row.id, result=outcome)
            result = Published(service.ref, pkg.version, key, pkg.digest, outcome)
            results.append(result)
            if on_done:
                on_done(result)
    return results
