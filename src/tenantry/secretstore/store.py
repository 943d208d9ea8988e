"""Set, delete, list and sync the keys of a tenant's secrets.

Where the environment keeps its values in AWS Secrets Manager (``store:
aws-secrets-manager``), a change is written there first (`aws_store`). Then a key is
written into every cluster of the environment, one after another, as the tenant's
deployer (the identity that deploys the tenant's services there, impersonated: the
platform needs no right of its own on the tenant's Secrets) — or, where a cluster runs
the External Secrets Operator, its ExternalSecret is kept (`external`). The ledger gets
one row per change with the verified identity, the key's new version and what happened
in each cluster. The value exists only in the request, in Secrets Manager and in the
clusters' Secrets.

A Secret Tenantry writes carries the label ``tenantry.dev/secret: "true"``; one of the
same name that it did not write (a team's own chart made it) is never overwritten.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lightkube.resources.core_v1 import Secret

from tenantry import aws, errors
from tenantry.deploy.deployer import ROTATION_SOURCE, STAGING
from tenantry.kube.client import Identity, Kube
from tenantry.ledger import Ledger, now, tables
from tenantry.secretstore import aws_store, external
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.spec.services import SECRET_KEY_PATTERN
from tenantry.tenancy import objects, reconcile

MANAGED_LABEL = external.MANAGED_LABEL
# Which store the values came from: a sync from AWS Secrets Manager touches only the
# Secrets it wrote, never those set before in the clusters alone.
STORE_LABEL = "tenantry.dev/secret-store"
# Kubernetes keeps a whole Secret under 1 MiB; one key stays well inside it.
MAX_VALUE_BYTES = 64 * 1024


class SecretWriteError(errors.TenantryError):
    """A change reached some of the environment's clusters but not all (the ledger row
    says which); setting or deleting the key again converges."""


class SecretConflictError(errors.TenantryError):
    """A Secret of that name exists in the tenant's namespace and Tenantry did not make it."""


@dataclass(frozen=True)
class Change:
    """What a set or delete did: the ledger row (no value in it), and the staging
    releases queued to deploy again so their pods roll (``service version: outcome``)."""

    row: tables.SecretChange
    redeploys: tuple[str, ...] = ()


def _check_environment(tenant: models.Tenant, environment: str) -> None:
    if environment not in tenant.environments:
        raise errors.UsageError(
            f"tenant {tenant.name} does not deploy to environment {environment!r}",
            fix=f"use one of: {', '.join(tenant.environments)}",
        )


def check_key(tenant: models.Tenant, environment: str, name: str, key: str) -> None:
    """Refuse a key that cannot be stored, naming the part and the fix (`UsageError`)."""
    _check_environment(tenant, environment)
    if (problem := models.dns_label_problem(name)) is not None:
        raise errors.UsageError(f"secret name {name!r}: {problem}",
                                fix="name it with a DNS label, e.g. db")  # fmt: skip
    if not re.fullmatch(SECRET_KEY_PATTERN, key):
        raise errors.UsageError(
            f"secret key {key!r} is not a Kubernetes Secret key",
            fix="use letters, digits, '-', '_' and '.', at most 253 (e.g. password)",
        )


def check_value(value: bytes) -> None:
    """Refuse an empty or oversized value (without ever showing it)."""
    if not value:
        raise errors.UsageError("the value is empty", fix="give the value on stdin or in a file")
    if len(value) > MAX_VALUE_BYTES:
        raise errors.UsageError(
            f"the value has {len(value)} bytes; a key holds at most {MAX_VALUE_BYTES}",
            fix="keep large files (certificates bundles, archives) out of secrets",
        )


def set_key(
    repo: Repository,
    ledger: Ledger,
    *,
    tenant: models.Tenant,
    environment: str,
    name: str,
    key: str,
    value: bytes,
    actor: str,
) -> Change:
    """Write ``key`` of secret ``name`` into every cluster of ``environment``."""
    check_key(tenant, environment, name, key)
    check_value(value)
    _keep_in_aws(repo, tenant.name, environment, name, key, value)
    return _change(repo, ledger, tenant, environment, name, key, value, actor, present=True)


def delete_key(
    repo: Repository,
    ledger: Ledger,
    *,
    tenant: models.Tenant,
    environment: str,
    name: str,
    key: str,
    actor: str,
) -> Change:
    """Remove ``key`` from secret ``name`` in every cluster of ``environment`` (the Secret
    itself with its last key); `UsageError` if it was never set."""
    check_key(tenant, environment, name, key)
    known = {(r.name, r.key) for r in ledger.secret_keys(tenant=tenant.name,
                                                          environment=environment)}  # fmt: skip
    if (name, key) not in known:
        raise errors.UsageError(
            f"{tenant.name} has no key {name}/{key} in {environment}",
            fix=f"list the keys: tenantry secrets list {tenant.name} --env {environment}",
        )
    present = _keep_in_aws(repo, tenant.name, environment, name, key, None)
    return _change(repo, ledger, tenant, environment, name, key, None, actor, present=present)


def _keep_in_aws(
    repo: Repository, tenant: str, environment: str, name: str, key: str, value: bytes | None
) -> bool:
    """Where the environment keeps its values in AWS Secrets Manager, write there first:
    it is the record the clusters are copied from, so nothing reaches a cluster that it
    does not hold (a refusal here writes nothing anywhere). Whether the secret still has
    a key after the change (elsewhere: always, as far as this can tell)."""
    store = repo.platform.environment(environment).secrets
    if store.store != "aws-secrets-manager":
        return True
    client = aws.secrets_manager(store, field=f"environments.{environment}.secrets.endpoint")
    path = aws_store.secret_id(store, tenant, environment, name)
    return aws_store.put_key(client, path, key, value)


def sync(
    repo: Repository, ledger: Ledger, *, tenant: models.Tenant, environment: str, actor: str
) -> list[Change]:
    """Copy ``tenant``'s secrets of ``environment`` from AWS Secrets Manager into every
    cluster of it: each key that differs from what a cluster holds, or that Secrets
    Manager no longer has, is written (or removed) everywhere and recorded as a ``sync``.
    What changed there — AWS's rotation, a person with access to it — reaches the pods."""
    _check_environment(tenant, environment)
    store = repo.platform.environment(environment).secrets
    if store.store != "aws-secrets-manager":
        raise errors.UsageError(
            f"environment {environment} keeps its secrets in its clusters (store: "
            f"{store.store}): there is nothing to copy from",
            fix="set values with tenantry secrets set; or give the environment "
            "secrets: {store: aws-secrets-manager} in platform.yaml",
        )
    client = aws.secrets_manager(store, field=f"environments.{environment}.secrets.endpoint")
    wanted = aws_store.read_all(client, store, tenant.name, environment)
    differs: set[tuple[str, str]] = set()
    for cluster in repo.platform.environment(environment).clusters:
        target = reconcile.resolve(cluster, environment, repo.root)
        if cluster.external_secrets is not None:
            _externals(target, cluster, store, tenant.name, environment, set(wanted))
            continue
        held = _managed(target, tenant.name)
        for name in wanted.keys() | held.keys():
            have, want = held.get(name, {}), wanted.get(name, {})
            differs |= {(name, k) for k in have.keys() | want.keys() if have.get(k) != want.get(k)}
    changes = []
    for name, key in sorted(differs):
        value = wanted.get(name, {}).get(key)
        changes.append(_change(repo, ledger, tenant, environment, name, key, value, actor,
                               action="sync", present=name in wanted))  # fmt: skip
    return changes


def _externals(
    target: reconcile.ClusterTarget,
    cluster: models.ClusterRef,
    store: models.SecretsStore,
    tenant: str,
    environment: str,
    names: set[str],
) -> None:
    """Where the operator copies the values, an ExternalSecret for each secret Secrets
    Manager holds and none for one it no longer does."""
    assert cluster.external_secrets is not None
    with target.connect() as kube:
        for name in external.names(kube, tenant=tenant):
            if name not in names:
                external.remove(kube, tenant=tenant, name=name)
        for name in sorted(names):
            path = aws_store.secret_id(store, tenant, environment, name)
            external.apply(kube, external.manifest(cluster.external_secrets, path, tenant=tenant,
                                                   name=name), cluster=cluster.name)  # fmt: skip


def _managed(target: reconcile.ClusterTarget, tenant: str) -> dict[str, dict[str, bytes]]:
    """The Secrets Tenantry copied from AWS Secrets Manager into the tenant's namespace of
    one cluster (read as the tenant's deployer): name → key → value."""
    deployer = Identity.service_account(tenant, objects.DEPLOYER_SA)
    with Kube.connect(target.kubeconfig, context=target.context, as_identity=deployer) as kube:
        found = kube.list(Secret, namespace=tenant, labels={
            MANAGED_LABEL: "true", STORE_LABEL: "aws-secrets-manager"})  # fmt: skip
    return {
        s.metadata.name: {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
        for s in found
        if s.metadata is not None and s.metadata.name
    }


def _change(
    repo: Repository,
    ledger: Ledger,
    tenant: models.Tenant,
    environment: str,
    name: str,
    key: str,
    value: bytes | None,
    actor: str,
    *,
    action: str = "",
    present: bool,
) -> Change:
    """Write the change into every cluster; ``present``: whether the secret still has a
    key afterwards (an ExternalSecret is kept while it does)."""
    env = repo.platform.environment(environment)
    outcomes = []
    for cluster in env.clusters:
        target = reconcile.resolve(cluster, environment, repo.root)
        try:
            if cluster.external_secrets is not None and env.secrets.store != "tenantry":
                outcome = _external(target, cluster, env.secrets, tenant.name, environment,
                                    name, present=present)  # fmt: skip
            else:
                _write(target, tenant.name, name, key, value, store=env.secrets.store)
                outcome = "written" if value is not None else "deleted"
        except errors.TenantryError as e:
            outcomes.append((cluster.name, f"failed: {e.message}"))
        else:
            outcomes.append((cluster.name, outcome))
    done = all(not outcome.startswith("failed") for _, outcome in outcomes)
    version = ledger.secret_version(tenant=tenant.name, environment=environment, name=name,
                                    key=key) + 1  # fmt: skip
    row = ledger.add(
        tables.SecretChange(
            at=now(), tenant=tenant.name, environment=environment, name=name, key=key,
            action=f"{action}{'' if value is not None else '-delete'}" if action
            else ("set" if value is not None else "delete"), version=version,
            actor=actor,
            clusters="\n".join(f"{c}: {o}" for c, o in outcomes),
            result="done" if done else "failed",
        )
    )  # fmt: skip
    if not done:
        failed = [f"{c} ({o.removeprefix('failed: ')})" for c, o in outcomes
                  if o.startswith("failed: ")]  # fmt: skip
        raise SecretWriteError(
            f"{name}/{key} (version {version}) was not written to every cluster of "
            f"{environment}: {'; '.join(failed)}",
            fix="run the same command again once those clusters answer (the others "
            "already have it)",
        )
    redeploys = _roll(repo, ledger, tenant, name, key, actor) if environment == STAGING else ()
    return Change(row, redeploys)


def _roll(
    repo: Repository, ledger: Ledger, tenant: models.Tenant, name: str, key: str, actor: str
) -> tuple[str, ...]:
    """Queue what staging runs of each service that reads the key to deploy again (the
    same version): pods read a Secret when they start, so only new pods see a new value.
    Which services read it, the platform repository's descriptors say."""
    readers = {
        s.name
        for s in repo.services
        if s.tenant == tenant.name
        and s.descriptor is not None
        and (name, key) in {(r.name, r.key) for r in s.descriptor.secrets.values()}
    }
    queued = []
    for service in sorted(readers):
        running = ledger.released(tenant=tenant.name, service=service, environment=STAGING)
        if running is None:
            continue
        requested = ledger.request_deploy(
            tenant=tenant.name, service=service, version=running.version,
            digest=running.digest, source=ROTATION_SOURCE, requested_by=actor,
        )  # fmt: skip
        queued.append(f"{tenant.name}/{service} {running.version}: {requested.outcome}")
    return tuple(queued)


def _external(
    target: reconcile.ClusterTarget,
    cluster: models.ClusterRef,
    store: models.SecretsStore,
    tenant: str,
    environment: str,
    name: str,
    *,
    present: bool,
) -> str:
    """The cluster's operator copies the values: keep its ExternalSecret while the secret
    exists in Secrets Manager, delete it with the secret."""
    assert cluster.external_secrets is not None
    with target.connect() as kube:
        if not present:
            external.remove(kube, tenant=tenant, name=name)
            return "ExternalSecret deleted"
        path = aws_store.secret_id(store, tenant, environment, name)
        external.apply(kube, external.manifest(cluster.external_secrets, path, tenant=tenant,
                                               name=name), cluster=cluster.name)  # fmt: skip
    return "ExternalSecret applied (the operator copies the value)"


def _write(
    target: reconcile.ClusterTarget,
    tenant: str,
    name: str,
    key: str,
    value: bytes | None,
    *,
    store: str,
) -> None:
    """Set (or with None remove) one key, touching no other: concurrent changes of other
    keys of the same Secret both land, and this process never reads another value."""
    deployer = Identity.service_account(tenant, objects.DEPLOYER_SA)
    where = f"Secret {tenant}/{name} in cluster {target.name}"
    encoded = base64.b64encode(value).decode() if value is not None else None
    with Kube.connect(target.kubeconfig, context=target.context, as_identity=deployer) as kube:
        try:
            current = kube.get(Secret, name, namespace=tenant)
        except errors.NotFoundError:
            if encoded is None:
                return
            try:
                kube.create({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": tenant, "labels": {
                        **objects.MANAGED_BY, objects.TENANT_LABEL: tenant,
                        MANAGED_LABEL: "true", STORE_LABEL: store}},
                    "data": {key: encoded},
                })  # fmt: skip
                return
            except errors.ConflictError:
                current = kube.get(Secret, name, namespace=tenant)  # made meanwhile
        labels = (current.metadata.labels if current.metadata else None) or {}
        if labels.get(MANAGED_LABEL) != "true":
            raise SecretConflictError(
                f"{where} exists and Tenantry did not make it",
                fix="rename the secret in the service's descriptor, or delete that Secret "
                "(kubectl delete secret) if nothing else uses it",
            )
        change = {"metadata": {"labels": {STORE_LABEL: store}}, "data": {key: encoded}}
        patched = kube.merge_patch(Secret, name, change, namespace=tenant)
        if encoded is None and not patched.data:
            kube.delete(Secret, name, namespace=tenant)


def keys(ledger: Ledger, *, tenant: str, environment: str | None = None) -> list[dict[str, object]]:
    """Every key of ``tenant``'s secrets: environment, name, key, version, who changed it
    when, whether every cluster has it. Never a value."""
    return [
        {
            "environment": row.environment,
            "name": row.name,
            "key": row.key,
            "version": row.version,
            "changedBy": row.actor,
            "changedAt": row.at.isoformat(timespec="seconds"),
            "result": row.result,
            "clusters": row.clusters,
        }
        for row in ledger.secret_keys(tenant=tenant, environment=environment)
    ]


def missing(
    ledger: Ledger, *, tenant: str, environment: str, refs: Sequence[tuple[str, str]]
) -> list[str]:
    """The ``name/key`` of each reference that has no value in ``environment``."""
    have = {(r.name, r.key) for r in ledger.secret_keys(tenant=tenant, environment=environment)}
    return [f"{name}/{key}" for name, key in refs if (name, key) not in have]
