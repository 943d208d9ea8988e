"""`tenantry new service`, `render`, `lint`, `verify`: a team's services, before they ship."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tenantry import errors, gitrepo, helm
from tenantry.charts import render, scaffold
from tenantry.cli import client, output, warm
from tenantry.cli.tenants import RepoOption
from tenantry.spec import repository
from tenantry.verify import changes, ci, junit
from tenantry.verify import run as verification
from tenantry.verify.results import Check, ServiceReport

new_app = typer.Typer(help="Scaffold new things in the platform repository.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the service commands to ``app``."""
    app.add_typer(new_app, name="new")
    app.command("render")(render_cmd)
    app.command("lint")(lint_cmd)
    app.command("verify")(verify_cmd)


def select(
    loaded: repository.Repository, *, all_services: bool, base: str | None, head: str, verb: str
) -> list[repository.ServiceSource]:
    """The services ``--all`` or ``--base/--head`` name (shared by verify and publish); in
    a CI without either, the change the CI's own variables name (`tenantry.verify.ci`)."""
    if all_services:
        return list(loaded.services)
    if base:
        return changes.affected(gitrepo.changed_paths(loaded.root, base=base, head=head), loaded)
    found = ci.from_environment(os.environ, event=_github_event())
    if found is None:
        raise errors.UsageError(f"say what to {verb}",
                                fix="pass --all, or --base REF [--head REF]")  # fmt: skip
    output.err_console.print(f"{verb}: {found.describe()}")
    try:
        paths = gitrepo.changed_paths(loaded.root, base=found.base, head=found.head)
    except errors.UsageError as e:
        raise errors.UsageError(
            f"{found.ci} names {found.base}...{found.head} ({found.said_by}), which git "
            f"cannot compare here: {e.message}",
            fix="fetch the history the comparison needs (GitHub: actions/checkout with "
            "fetch-depth: 0; GitLab: GIT_DEPTH: 0; Jenkins: a full clone, or git fetch "
            "origin <target branch>)",
        ) from e
    return changes.affected(paths, loaded)


def _github_event() -> dict[str, Any] | None:
    """The payload of the GitHub Actions event, from the file GITHUB_EVENT_PATH names."""
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path or os.environ.get("GITHUB_ACTIONS") != "true":
        return None
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise errors.UsageError(f"GITHUB_EVENT_PATH names {path}, which is not a readable "
                                f"event: {e}", fix="pass --base REF (or --all)") from e  # fmt: skip
    return event if isinstance(event, dict) else None


def _split_ref(ref: str) -> tuple[str, str]:
    tenant, sep, name = ref.partition("/")
    if not sep or not tenant or not name or "/" in name:
        raise errors.UsageError(f"{ref!r} is not TEAM/SERVICE", fix="write it like payments/api")
    return tenant, name


@new_app.command("service")
def new_service_cmd(
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE, e.g. payments/api.")],
    image: Annotated[str, typer.Option("--image", help="The container image, registry/path:tag.")],
    port: Annotated[int, typer.Option("--port", help="The container port.")] = 8080,
    repo: RepoOption = Path(),
) -> None:
    """Scaffold services/TEAM/SERVICE/service.yaml, commented. Refuses to overwrite.

    Example: tenantry new service payments/api --image registry.acme.example/payments/api:0.1.0
    """
    tenant, name = _split_ref(ref)
    loaded = repository.load(repo.resolve())
    loaded.tenant(tenant)
    path = scaffold.write(loaded.root, tenant, name, image=image, port=port)
    try:
        repository.load(loaded.root)  # the scaffold must itself be valid (image registry ...)
    except errors.SpecError:
        shutil.rmtree(path.parent)  # nothing half-written: the repository is as it was
        raise
    output.err_console.print(f"wrote {path}; next: tenantry render {ref} && tenantry lint")
    typer.echo(str(path))


def render_cmd(
    ref: Annotated[str, typer.Argument(help="TEAM/SERVICE.")],
    env: Annotated[
        str | None,
        typer.Option("--env", help="Render for this environment (one the tenant uses)."),
    ] = None,
    repo: RepoOption = Path(),
) -> None:
    """Print the manifests a service renders to (through the real `helm template`).

    Example: tenantry render payments/api --env production | kubectl apply --dry-run=client -f -
    """
    loaded = repository.load(repo.resolve())
    service = loaded.service(ref)
    tenant = loaded.tenant(service.tenant)
    if env is not None and env not in tenant.environments:
        raise errors.UsageError(
            f"tenant {tenant.name} does not use environment {env!r}",
            fix=f"use one of: {', '.join(tenant.environments)}",
        )
    source = render.chart_input(service, environment=env or tenant.environments[0])
    sys.stdout.write(
        helm.template(
            source.chart, release=source.release, namespace=service.tenant, values=source.values
        )
    )


def _annotate(loaded: repository.Repository, reports: list[ServiceReport]) -> None:
    """In GitHub Actions, each failed check is also an error annotation on the service's
    file (its descriptor, or its chart) in the pull request."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    for report in reports:
        service = loaded.service(report.ref)
        for check in report.checks:
            if check.status != "failed":
                continue
            title = f"tenantry {check.name}: {report.ref}"
            # On stderr, which GitHub reads for workflow commands too: stdout stays what
            # --output asked for.
            for file, line, message in _places(loaded, service, check):
                sys.stderr.write(ci.github_annotation(file, title, message, line=line) + "\n")


def _places(
    loaded: repository.Repository, service: repository.ServiceSource, check: Check
) -> list[tuple[str, int | None, str]]:
    """Where a failed check points in the repository: each finding's template and line in
    a team's own chart; else the service's descriptor (the base chart is not in it)."""
    whole = service.own_chart or (service.directory / "service.yaml")
    fallback: list[tuple[str, int | None, str]] = [
        (str(whole.relative_to(loaded.root)), None, check.detail)
    ]
    if service.own_chart is None or not check.places:
        return fallback
    found = []
    for place in check.places:
        path = service.own_chart / place.template.partition("/")[2]  # helm prefixes the chart
        try:
            line = ci.line_of(path.read_text(), place.field)
        except (OSError, UnicodeDecodeError):
            path, line = service.own_chart, None
        found.append((str(path.relative_to(loaded.root)), line, place.message))
    return found


def _print_reports(reports: list[ServiceReport], fmt: output.Format) -> None:
    rows = [
        {
            "service": report.ref,
            "check": check.name,
            "result": check.status,
            "seconds": round(check.seconds, 2),
            "detail": check.detail
            if fmt != "table"
            else check.detail.splitlines()[0][:120]
            if check.detail
            else "",
        }
        for report in reports
        for check in report.checks
    ]
    output.emit(rows, fmt, title="checks")
    for report in reports:
        for check in report.checks:
            if check.status == "failed" and fmt == "table":
                output.err_console.print(
                    f"\n[bold red]{report.ref}: {check.name} failed[/]", soft_wrap=True
                )
                output.err_console.print(check.detail, markup=False, soft_wrap=True)


def _services_at(
    loaded: repository.Repository, paths: list[Path]
) -> list[repository.ServiceSource]:
    if not paths:
        return list(loaded.services)
    chosen = []
    for path in paths:
        resolved = path.resolve()
        matches = [
            s for s in loaded.services
            if resolved == s.directory or s.directory in resolved.parents
            or resolved in s.directory.parents
        ]  # fmt: skip
        if not matches:
            raise errors.UsageError(f"{path} is not in or under a service directory")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def lint_cmd(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Service directories (or parents); default: every service."),
    ] = None,
    repo: RepoOption = Path(),
) -> None:
    """Check descriptors, `helm lint`, and policy on the rendered objects. No cluster needed.

    Each finding names the template file, the object, the field, the problem and the fix.

    Example: tenantry lint services/payments
    """
    loaded = repository.load(repo.resolve())
    reports = []
    known_keys = _known_keys()
    for service in _services_at(loaded, list(paths or [])):
        checks, _ = verification.static_checks(loaded, service, namespace=service.tenant,
                                               known_keys=known_keys)  # fmt: skip
        reports.append(ServiceReport(service.ref, tuple(checks)))
    _print_reports(reports, ctx.obj.output)
    _annotate(loaded, reports)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


def verify_cmd(
    ctx: typer.Context,
    base: Annotated[
        str | None, typer.Option("--base", help="Git ref the change starts from.")
    ] = None,
    head: Annotated[str, typer.Option("--head", help="Git ref of the change.")] = "HEAD",
    all_services: Annotated[bool, typer.Option("--all", help="Verify every service.")] = False,
    junit_file: Annotated[
        Path | None, typer.Option("--junit", help="Also write JUnit XML here.")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Services at a time.")] = 1,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a service may take to roll out.")
    ] = 120.0,
    fresh_cluster: Annotated[
        bool,
        typer.Option(
            "--fresh-cluster", help="Use a new cluster for this run instead of the warm one."
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Verify in this existing cluster (kind in CI, a shared test cluster) instead "
            "of a local one; its images must already be pushed or loaded.",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="The kubeconfig's context (default: its current one)."),
    ] = None,
    repo: RepoOption = Path(),
) -> None:
    """Verify changed services for real: lint, then install each as its tenant into a cluster.

    Installs each service with `helm upgrade --install --wait` *as the tenant's deployer*
    into a throwaway namespace on the warm local cluster `verify` (or a fresh cluster, or
    the cluster of --kubeconfig), checks the rollout and the chart's tests, and cleans up.
    On a local cluster the tenant's own images are loaded into its real node first. A
    pod that does not become ready fails with the kubelet's reason, exit code, events
    and last log lines. Exit 0 only if every service passed. CI runs it on every pull
    request.

    Example: tenantry verify --base origin/main --head HEAD --junit verify.xml
    """
    if context is not None and kubeconfig is None:
        raise errors.UsageError("--context needs --kubeconfig", fix="pass --kubeconfig PATH too")
    if kubeconfig is not None and fresh_cluster:
        raise errors.UsageError(
            "--fresh-cluster and --kubeconfig exclude each other",
            fix="drop --fresh-cluster: verify uses the cluster of --kubeconfig",
        )
    loaded = repository.load(repo.resolve())
    chosen = select(loaded, all_services=all_services, base=base, head=head, verb="verify")
    if not chosen:
        output.err_console.print("no services changed; nothing to verify")
        if junit_file:
            junit_file.write_text(junit.to_xml([]))
        return
    where: contextlib.AbstractContextManager[verification.Cluster]
    if kubeconfig is not None:
        where = contextlib.nullcontext(_external_cluster(kubeconfig, context))
    else:
        where = verification.verification_cluster(
            fresh=fresh_cluster, on_progress=lambda line: output.err_console.print(line)
        )
    with where as cluster:
        output.err_console.print(f"verifying {', '.join(s.ref for s in chosen)} ...")
        output.err_console.print(f"in {cluster.describe()}")
        reports = verification.verify_all(
            loaded,
            chosen,
            cluster=cluster,
            jobs=jobs,
            options=verification.Options(timeout_s=timeout, known_keys=_known_keys()),
            on_done=lambda r: output.err_console.print(
                f"{r.ref}: {'passed' if r.passed else 'FAILED'} in {r.seconds:.1f}s"
            ),
        )
    if cluster.local is not None and not fresh_cluster:
        _keep_warm(cluster.local.workdir)
    _print_reports(reports, ctx.obj.output)
    _annotate(loaded, reports)
    if junit_file:
        junit_file.write_text(junit.to_xml(reports))
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


def _external_cluster(kubeconfig: Path, context: str | None) -> verification.Cluster:
    """The cluster of --kubeconfig. A CI keeps that kubeconfig in a secret, which it
    withholds from a fork's pull request: when it is missing there, say so."""
    try:
        return verification.external_cluster(kubeconfig, context=context)
    except errors.UsageError as e:
        fork = _fork()
        if fork is None:
            raise
        raise errors.UsageError(
            f"{e.message}; this run is a pull request from the fork {fork}, and the CI gives "
            "such runs none of the repository's secrets",
            fix="verify pull requests in a local cluster (drop --kubeconfig, as the pipelines "
            "in examples/ci do), or have a maintainer push the branch to this repository",
        ) from e


def _fork() -> str | None:
    """The fork whose pull request this CI run is, if it is one (`ci.fork`). Asked only to
    explain another error, so an unreadable GitHub event counts as no fork."""
    try:
        return ci.fork(os.environ, event=_github_event())
    except errors.UsageError:
        return None


def _known_keys() -> verification.KnownKeys | verification.KeysUnknown:
    """Which secret keys have values where, asked of the Tenantry server when one is
    configured (`tenantry login`); else why nobody can say."""
    try:
        api = client.Client.from_environment()
    except errors.TenantryError as e:
        fork = _fork()
        if fork is None:
            return verification.KeysUnknown(f"{e.message}; {e.fix}" if e.fix else e.message)
        return verification.KeysUnknown(
            f"{e.message}: this run is a pull request from the fork {fork}, which gets none "
            "of the repository's secrets (a run from a branch of this repository checks them)"
        )

    def lookup(tenant: str) -> dict[str, set[tuple[str, str]]]:
        keys: dict[str, set[tuple[str, str]]] = {}
        for item in api.call("GET", f"/tenants/{tenant}/secrets")["items"]:
            if item["result"] == "done":  # written to every cluster of the environment
                keys.setdefault(item["environment"], set()).add((item["name"], item["key"]))
        return keys

    return lookup


def _keep_warm(cluster_dir: Path) -> None:
    """People verify again and again on the warm cluster: the next verify, lint or render
    runs in a process that has imported everything already (`tenantry.cli.warm`)."""
    pid = warm.start(while_exists=cluster_dir)
    if pid is not None:
        output.err_console.print(
            f"started a warm process (pid {pid}) for the next verify, lint and render: it "
            f"exits after {warm.IDLE_S // 60} idle minutes or with the cluster "
            f"({warm.ENV}=0 turns it off)"
        )
