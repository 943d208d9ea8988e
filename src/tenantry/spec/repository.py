"""Load a platform repository: every file checked, every problem reported at once.

Pure apart from reading the files. `load` either returns a fully valid
`Repository` or raises `SpecError` listing every problem as
``file: field: message (fix)``; callers never see a half-valid repository, which is
what lets `tenants apply` promise that nothing is applied when anything is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tenantry import errors
from tenantry.spec import models, services

PLATFORM_FILE = "platform.yaml"
TENANTS_DIR = "tenants"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ServiceSource:
    """One service of a tenant: a descriptor for the base chart, or the team's own chart."""

    tenant: str
    name: str
    directory: Path
    descriptor: services.ServiceDescriptor | None
    own_chart: Path | None

    @property
    def ref(self) -> str:
        """``tenant/service``, as users write it."""
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class Repository:
    """A valid platform repository."""

    root: Path
    platform: models.Platform
    tenants: tuple[models.Tenant, ...]
    services: tuple[ServiceSource, ...] = ()

    def service(self, ref: str) -> ServiceSource:
        """The service ``tenant/service``; `UsageError` naming the known ones if absent."""
        for service in self.services:
            if service.ref == ref:
                return service
        known = ", ".join(s.ref for s in self.services) or "none"
        raise errors.UsageError(f"no service {ref!r} (known: {known})")

    def artifacts(self) -> models.Artifacts:
        """platform.yaml's S3 ``artifacts``; `UsageError` naming the missing section if
        unset, or the registry if the charts are in one."""
        if self.platform.artifacts is None:
            raise errors.UsageError(
                f"{self.root / PLATFORM_FILE} has no artifacts section",
                fix="add artifacts: {bucket: NAME} (see examples/platform-repo/platform.yaml)",
            )
        if self.platform.bucket is None:
            raise errors.UsageError(
                f"{self.root / PLATFORM_FILE} keeps charts in an OCI registry, not S3",
                fix="use the registry's path (artifacts.kind: oci), or set artifacts.bucket",
            )
        return self.platform.bucket

    def queue(self) -> models.Queue:
        """platform.yaml's ``queue``; `UsageError` naming the missing section if unset."""
        if self.platform.queue is None:
            raise errors.UsageError(
                f"{self.root / PLATFORM_FILE} has no queue section",
                fix="add queue: {name: NAME} (see examples/platform-repo/platform.yaml)",
            )
        return self.platform.queue

    def tenant(self, name: str) -> models.Tenant:
        """The tenant called ``name``; `UsageError` naming the known ones if absent."""
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        known = ", ".join(t.name for t in self.tenants) or "none"
        raise errors.UsageError(f"no tenant named {name!r} (known: {known})")


def load(root: Path) -> Repository:
    """Read and validate ``root``; raise `SpecError` with every problem found."""
    problems: list[errors.SpecProblem] = []
    platform = _load_model(root / PLATFORM_FILE, models.Platform, root, problems, context=None)
    if platform is not None:
        problems += _platform_problems(platform)
    tenants_dir = root / TENANTS_DIR
    paths = (
        sorted(p for p in tenants_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if tenants_dir.is_dir()
        else []
    )
    context = (
        models.TenantContext.of(platform, frozenset(_declared_names(paths)))
        if platform is not None
        else None
    )
    tenants: list[tuple[str, models.Tenant]] = []
    for path in paths:
        tenant = _load_model(path, models.Tenant, root, problems, context=context)
        if tenant is not None:
            tenants.append((_rel(path, root), tenant))
    problems += _duplicate_names(tenants)
    valid = {t.name for _, t in tenants}
    # A tenant whose file is invalid is reported there; its services are not also
    # "not a tenant" (with the advice to add the file that is right there).
    invalid = {p.stem for p in paths} - valid
    found_services = _load_services(root, valid, problems, skip=invalid)
    if platform is not None:
        problems += _canary_problems(platform, found_services, root)
    if problems:
        raise errors.SpecError(problems)
    assert platform is not None
    return Repository(
        root=root,
        platform=platform,
        tenants=tuple(t for _, t in tenants),
        services=tuple(found_services),
    )


def _load_services(
    root: Path, tenant_names: set[str], problems: list[errors.SpecProblem], *, skip: set[str]
) -> list[ServiceSource]:
    found: list[ServiceSource] = []
    services_dir = root / services.SERVICES_DIR
    if not services_dir.is_dir():
        return found
    for tenant_dir in sorted(d for d in services_dir.iterdir() if d.is_dir()):
        if tenant_dir.name in skip:
            continue
        for service_dir in sorted(d for d in tenant_dir.iterdir() if d.is_dir()):
            where = _rel(service_dir, root)
            if tenant_dir.name not in tenant_names:
                problems.append(
                    errors.SpecProblem(
                        where, "(directory)", f"{tenant_dir.name!r} is not a tenant",
                        f"move it under services/<tenant>/ or add tenants/{tenant_dir.name}.yaml",
                    )
                )  # fmt: skip
                continue
            # The directory names the service (an own chart has no other name), and
            # that name goes into PromQL selectors, S3 keys and helm release names
            # unquoted: `web"} or up{tenant="payments` must stop here.
            bad_name = models.dns_label_problem(service_dir.name)
            if bad_name is not None:
                problems.append(
                    errors.SpecProblem(
                        where, "(directory)", f"{bad_name}: the directory names the service",
                        f"rename the directory{_suggestion(service_dir.name)}",
                    )
                )  # fmt: skip
            descriptor_file = service_dir / services.DESCRIPTOR
            chart_dir = service_dir / services.OWN_CHART
            if descriptor_file.exists() == chart_dir.is_dir():
                problems.append(
                    errors.SpecProblem(
                        where, "(directory)",
                        "needs exactly one of service.yaml (base chart) or chart/ (own chart)",
                        "keep one of them",
                    )
                )  # fmt: skip
                continue
            descriptor = None
            if descriptor_file.exists():
                descriptor = _load_model(
                    descriptor_file, services.ServiceDescriptor, root, problems, context=None
                )
                if descriptor is None or bad_name is not None:
                    continue
                if descriptor.name != service_dir.name:
                    problems.append(
                        errors.SpecProblem(
                            _rel(descriptor_file, root), "name",
                            f"is {descriptor.name!r} but the directory is {service_dir.name}",
                            f"set name: {service_dir.name} or rename the directory",
                        )
                    )  # fmt: skip
                    continue
            if bad_name is not None:
                continue
            source = ServiceSource(
                tenant=tenant_dir.name,
                name=service_dir.name,
                directory=service_dir,
                descriptor=descriptor,
                own_chart=chart_dir if descriptor is None else None,
            )
            links = chart_link_problems(source)
            if links:
                problems += links
                continue
            found.append(source)
    return found


def _suggestion(name: str) -> str:
    # A valid name close to the bad one, when there is an obvious one.
    near = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].rstrip("-")
    return f", e.g. to {near}" if models.dns_label_problem(near) is None else ""


def chart_link_problems(service: ServiceSource) -> list[errors.SpecProblem]:
    """One problem per symbolic link in ``service``'s own chart (the chart directory included).

    Copying and packaging a chart follow links, so a link such as
    ``templates/secret.yaml -> /etc/passwd``, or one to a directory outside the chart,
    would put files of the publishing machine into the published archive. Links are
    refused rather than resolved: what a team's chart contains is what it committed.
    """
    if service.own_chart is None:
        return []
    chart = service.own_chart
    where = f"{services.SERVICES_DIR}/{service.tenant}/{service.name}/{services.OWN_CHART}"
    links: list[Path] = []
    if chart.is_symlink():
        links.append(chart)
    else:
        # os.walk does not descend into linked directories, but lists them.
        for directory, dirnames, filenames in os.walk(chart):
            links += [Path(directory) / n for n in dirnames + filenames]
        links = [link for link in links if link.is_symlink()]
    return [
        errors.SpecProblem(
            where if link == chart else f"{where}/{link.relative_to(chart).as_posix()}",
            "(symlink)",
            f"is a symbolic link (to {link.readlink()}); a chart may hold only regular "
            "files, or the link's target on the publishing machine would be published",
            "replace the link with the file's content",
        )
        for link in sorted(links)
    ]


class YamlError(errors.TenantryError):
    """A file is not YAML that can be read: ``where`` is its line and column when known."""

    def __init__(self, where: str, message: str, *, fix: str) -> None:
        super().__init__(message, fix=fix)
        self.where = where


def parse_yaml(text: str) -> Any:
    """The document in ``text``; `YamlError` for anything PyYAML cannot turn into data.

    Not only `yaml.YAMLError`: PyYAML builds ``2020-13-45`` as a date and lets the
    ValueError out, and nests by recursion, so ``[[[[…`` thousands deep is a
    RecursionError. Both are a person's typo (or an attack), not a crash.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        raise YamlError(
            where, f"invalid YAML: {getattr(e, 'problem', None) or e}", fix="fix the YAML syntax"
        ) from e
    except ValueError as e:
        raise YamlError(
            "(yaml)", f"invalid YAML: a date or number that cannot exist ({e})",
            fix="correct it, or quote it if it is meant as text",
        ) from e  # fmt: skip
    except RecursionError as e:
        raise YamlError(
            "(yaml)", "invalid YAML: nested too deeply to read",
            fix="flatten the document",
        ) from e  # fmt: skip


def _declared_names(paths: list[Path]) -> list[str]:
    # The names other tenants may refer to in allowFrom, read leniently: a file that
    # fails to parse is reported by its own validation, not here.
    names = []
    for path in paths:
        try:
            data = parse_yaml(path.read_text())
        except (OSError, UnicodeDecodeError, YamlError):
            continue
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            names.append(data["name"])
    return names


def load_text(text: str, model: type[BaseModel], file: str) -> BaseModel:
    """Validate one file's text as ``model``; `SpecError` on any problem (for tests/tools)."""
    problems: list[errors.SpecProblem] = []
    result = _validate_text(text, model, file, problems, context=None)
    if problems or result is None:
        raise errors.SpecError(problems)
    return result


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _load_model(
    path: Path,
    model: type[M],
    root: Path,
    problems: list[errors.SpecProblem],
    *,
    context: models.TenantContext | None,
) -> M | None:
    file = _rel(path, root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        problems.append(errors.SpecProblem(file, "(file)", "does not exist", f"create {file}"))
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.append(errors.SpecProblem(file, "(file)", f"cannot be read: {e}", "fix the file"))
        return None
    result = _validate_text(text, model, file, problems, context=context)
    if result is not None and isinstance(result, models.Tenant) and path.stem != result.name:
        problems.append(
            errors.SpecProblem(
                file,
                "name",
                f"is {result.name!r} but the file is {path.name}",
                f"rename the file to {result.name}.yaml or set name: {path.stem}",
            )
        )
    return result


def _validate_text(
    text: str,
    model: type[M],
    file: str,
    problems: list[errors.SpecProblem],
    *,
    context: models.TenantContext | None,
) -> M | None:
    try:
        data = parse_yaml(text)
    except YamlError as e:
        problems.append(errors.SpecProblem(file, e.where, e.message, e.fix or ""))
        return None
    if not isinstance(data, Mapping):
        problems.append(
            errors.SpecProblem(
                file,
                "(document)",
                f"is a {type(data).__name__}, not a mapping",
                f"write the {model.__name__} fields as `key: value` lines",
            )
        )
        return None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        problems += [_problem(file, err) for err in e.errors()]
        return None


def _problem(file: str, err: Mapping[str, Any]) -> errors.SpecProblem:
    field = ".".join(str(p) for p in err["loc"]) or "(document)"
    kind = err["type"]
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if kind == "extra_forbidden":
        return errors.SpecProblem(
            file, field, "is not a known field", "remove it or correct its spelling"
        )
    if kind == "missing":
        return errors.SpecProblem(file, field, "is required", "add it")
    if kind == "value_error":
        return errors.SpecProblem(file, field, message, "correct the value")
    shown = f"{value!r}: " if isinstance(value, str | int | float | bool) else ""
    return errors.SpecProblem(file, field, f"{shown}{message}", "correct the value")


def _platform_problems(platform: models.Platform) -> list[errors.SpecProblem]:
    problems = []
    seen: dict[str, str] = {}
    env_names = [e.name for e in platform.environments]
    for dup in sorted({n for n in env_names if env_names.count(n) > 1}):
        problems.append(
            errors.SpecProblem(
                PLATFORM_FILE,
                "environments",
                f"{dup!r} appears twice",
                "give each environment a unique name",
            )
        )
    for env in platform.environments:
        for i, cluster in enumerate(env.clusters):
            if cluster.name in seen:
                problems.append(
                    errors.SpecProblem(
                        PLATFORM_FILE,
                        f"environments.{env.name}.clusters.{i}.name",
                        f"cluster {cluster.name!r} is already in environment "
                        f"{seen[cluster.name]!r}",
                        "a cluster serves one environment: tenant namespaces are named "
                        "after the team alone",
                    )
                )
            seen[cluster.name] = env.name
    if platform.server is not None and platform.server.management_cluster not in seen:
        problems.append(errors.SpecProblem(
            PLATFORM_FILE, "server.managementCluster",
            f"{platform.server.management_cluster!r} is not a cluster of any environment",
            f"name one of: {', '.join(sorted(seen))}",
        ))  # fmt: skip
    return problems


def _canary_problems(
    platform: models.Platform, found: list[ServiceSource], root: Path
) -> list[errors.SpecProblem]:
    """A service's canary interval must be longer than the platform's scrape interval."""
    if platform.traffic is None:
        return []
    scrape = platform.traffic.scrape_interval_s
    problems = []
    for service in found:
        own = service.descriptor.canary if service.descriptor else None
        if own is not None and own.interval_s is not None and own.interval_s < scrape:
            problems.append(errors.SpecProblem(
                _rel(service.directory / services.DESCRIPTOR, root), "canary.intervalS",
                f"{own.interval_s:g} is shorter than the platform's scrapeIntervalS {scrape:g}",
                f"use at least {scrape:g} seconds (an interval needs new data)",
            ))  # fmt: skip
    return problems


def _duplicate_names(tenants: list[tuple[str, models.Tenant]]) -> list[errors.SpecProblem]:
    problems = []
    first_file: dict[str, str] = {}
    for file, tenant in tenants:
        if tenant.name in first_file:
            problems.append(
                errors.SpecProblem(
                    file,
                    "name",
                    f"{tenant.name!r} is already used by {first_file[tenant.name]}",
                    "choose another name",
                )
            )
        first_file.setdefault(tenant.name, file)
    return problems
