"""Package a service as a chart archive with its provenance (helm package).

A descriptor service becomes the base chart with the descriptor's values baked in
and renamed to the service; a team's own chart is packaged as it is (renamed to
the service, so the repository's index keys on the service name). The chart's
version is the descriptor's (or Chart.yaml's) SemVer, unchanged: versions are
immutable, so a change must bump it. Provenance — git commit, author, time and a
digest of the chart's content — goes into Chart.yaml annotations; the archive's
own sha256 is computed after packaging and travels in the object's metadata and
the index (an archive cannot contain its own digest).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenantry import errors, helm
from tenantry.charts import render
from tenantry.spec.repository import ServiceSource, chart_link_problems


@dataclass(frozen=True)
class Provenance:
    """Where a chart came from."""

    git_commit: str
    author: str
    time: str


@dataclass(frozen=True)
class Package:
    """A packaged chart, ready to upload."""

    tenant: str
    service: str
    version: str
    app_version: str
    path: Path
    digest: str
    content_digest: str
    provenance: Provenance

    @property
    def key(self) -> str:
        """Its object key in the bucket."""
        return f"{self.tenant}/{self.service}-{self.version}.tgz"


def content_digest(chart_dir: Path) -> str:
    """sha256 over the chart's file names and contents, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(chart_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refuse_chart_links(services: list[ServiceSource]) -> None:
    """`SpecError` naming every symbolic link in these services' own charts.

    Loading the repository already refuses them; this is checked again where the
    chart is read, because a link added since (or a hand-built `ServiceSource`) would
    otherwise be followed by the copy below and by helm package.
    """
    problems = [problem for service in services for problem in chart_link_problems(service)]
    if problems:
        raise errors.SpecError(problems)


def chart_metadata(text: str, *, file: str) -> dict[str, Any]:
    """The mapping a Chart.yaml's ``text`` holds; a `SpecError` naming ``file`` if none.

    Packaging sets keys on it, so a list or a plain string there was a TypeError
    traceback instead of the file to fix.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = errors.SpecProblem(file, "(document)", f"invalid YAML: {e}", "fix the YAML")
        raise errors.SpecError([problem]) from e
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise errors.SpecError(
            [
                errors.SpecProblem(
                    file,
                    "(document)",
                    f"is {kind}, not a mapping",
                    "write Chart.yaml as a mapping with apiVersion, name and version",
                )
            ]
        )
    return data


SECRET_KEYS_ANNOTATION = "tenantry.dev/secret-keys"  # noqa: S105 (an annotation's name)


def secret_keys(archive: Path) -> list[tuple[str, str]]:
    """The ``(secret, key)`` pairs a packaged chart's pods read, as `package` noted them
    in its Chart.yaml (none for a team's own chart: Tenantry does not know)."""
    with tarfile.open(archive) as tar:
        charts = [m for m in tar.getmembers() if m.name.count("/") == 1
                  and m.name.endswith("/Chart.yaml")]  # fmt: skip
        member = charts[0] if charts else None
        extracted = tar.extractfile(member) if member is not None else None
        chart = yaml.safe_load(extracted.read()) if extracted is not None else None
    noted = ((chart or {}).get("annotations") or {}).get(SECRET_KEYS_ANNOTATION, "")
    return [(name, key) for name, _, key in (ref.partition("/") for ref in noted.split(",") if ref)]


def package(service: ServiceSource, *, provenance: Provenance, workdir: Path) -> Package:
    """Build ``service``'s chart archive in ``workdir``."""
    refuse_chart_links([service])
    source = render.chart_input(service)
    chart_dir = workdir / service.tenant / service.name
    shutil.rmtree(chart_dir, ignore_errors=True)
    shutil.copytree(source.chart, chart_dir)
    chart_file = chart_dir / "Chart.yaml"
    # Named by its place in the platform repository, not by the copy in workdir.
    chart = chart_metadata(chart_file.read_text(), file=str(source.chart / "Chart.yaml"))
    chart["name"] = service.name
    if service.descriptor is not None:
        chart["version"] = service.descriptor.version
        chart["appVersion"] = service.descriptor.image.rsplit(":", 1)[-1]
        chart["description"] = f"{service.ref}, from the platform's base chart"
        (chart_dir / "values.yaml").write_text(yaml.safe_dump(source.values, sort_keys=False))
    chart_file.write_text(yaml.safe_dump(chart, sort_keys=False))
    digest_of_content = content_digest(chart_dir)
    chart["annotations"] = {
        **(chart.get("annotations") or {}),
        "tenantry.dev/tenant": service.tenant,
        "tenantry.dev/git-commit": provenance.git_commit,
        "tenantry.dev/author": provenance.author,
        "tenantry.dev/published-at": provenance.time,
        "tenantry.dev/content-digest": digest_of_content,
    }
    if service.descriptor is not None and service.descriptor.secrets:
        # What the pods read, for the deployer to check before helm runs.
        chart["annotations"][SECRET_KEYS_ANNOTATION] = ",".join(sorted(
            f"{ref.name}/{ref.key}" for ref in service.descriptor.secrets.values()))  # fmt: skip
    chart_file.write_text(yaml.safe_dump(chart, sort_keys=False))
    archive = helm.package(chart_dir, destination=workdir / service.tenant)
    return Package(
        tenant=service.tenant,
        service=service.name,
        version=str(chart["version"]),
        app_version=str(chart.get("appVersion", "")),
        path=archive,
        digest=sha256_file(archive),
        content_digest=digest_of_content,
        provenance=provenance,
    )
