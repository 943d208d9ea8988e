"""Tenants' secret values kept in AWS Secrets Manager (``store: aws-secrets-manager``).

One Secrets Manager secret per tenant's secret, ``<prefix><tenant>/<environment>/<name>``,
holding its keys as a JSON object of strings — the shape AWS's own rotation functions and
the External Secrets Operator read and write. Tenantry writes one key at a time and reads a
tenant's secrets of one environment to copy them into the clusters (`store.sync`).
"""

from __future__ import annotations

import json
from typing import Any

from tenantry import aws, errors
from tenantry.spec import models


class NotTextError(errors.UsageError):
    """Secrets Manager keeps a key's value as JSON text; these bytes are not text."""


def secret_id(store: models.SecretsStore, tenant: str, environment: str, name: str) -> str:
    return f"{store.prefix}{tenant}/{environment}/{name}"


def put_key(client: Any, secret: str, key: str, value: bytes | None) -> bool:
    """Set (or with None remove) ``key`` of ``secret``; the secret is created with its first
    key and deleted with its last. Whether it still exists."""
    if value is not None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise NotTextError(
                "the value is not UTF-8 text, and Secrets Manager keeps text",
                fix="base64-encode it first (and decode it in the service)",
            ) from None
    current = _read(client, secret)
    keys = dict(current or {})
    if value is None:
        if key not in keys:
            return bool(keys)
        del keys[key]
    else:
        keys[key] = text
    with aws.translate(f"write {secret} in AWS Secrets Manager"):
        if not keys:
            client.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        elif current is None:
            client.create_secret(Name=secret, SecretString=json.dumps(keys))
        else:
            client.put_secret_value(SecretId=secret, SecretString=json.dumps(keys))
    return bool(keys)


def read_all(
    client: Any, store: models.SecretsStore, tenant: str, environment: str
) -> dict[str, dict[str, bytes]]:
    """Every secret of ``tenant`` in ``environment``: name → key → value."""
    prefix = secret_id(store, tenant, environment, "")
    names = []
    with aws.translate(f"list {prefix}* in AWS Secrets Manager"):
        for page in client.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}]
        ):
            for listed in page.get("SecretList", []):
                name = str(listed["Name"])
                if name.startswith(prefix) and "/" not in name[len(prefix) :]:
                    names.append(name)
    found = {}
    for full in names:
        keys = _read(client, full)
        if keys:
            found[full[len(prefix) :]] = {k: v.encode() for k, v in keys.items()}
    return found


def _read(client: Any, secret: str) -> dict[str, str] | None:
    """The keys of ``secret``, or None when it does not exist."""
    with aws.translate(f"read {secret} from AWS Secrets Manager"):
        try:
            answer = client.get_secret_value(SecretId=secret)
        except client.exceptions.ResourceNotFoundException:
            return None
    try:
        keys = json.loads(answer.get("SecretString") or "{}")
    except ValueError:
        keys = None
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise errors.TenantryError(
            f"{secret} in AWS Secrets Manager is not a JSON object of strings",
            fix='write it as {"key": "value", ...}: one string per key',
        )
    return keys
