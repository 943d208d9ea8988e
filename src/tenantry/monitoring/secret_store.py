"""Receiver secrets in and out: read from Kubernetes Secrets in the platform's monitoring
namespace, and written as files only their owner can read, for Alertmanager.

The I/O half of `tenantry.observability.secrets`, which says which secrets are needed
and whether their values are usable.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from lightkube.resources.core_v1 import Secret

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.observability.secrets import Reader, UnreadableValueError
from tenantry.spec import models


def cluster_reader(kube: Kube, namespace: str) -> Reader:
    """A `Reader` of Secrets in ``namespace`` (the platform's monitoring namespace)."""

    def read(ref: models.SecretRef) -> str | None:
        try:
            secret = kube.get(Secret, ref.name, namespace=namespace)
        except errors.NotFoundError:
            return None
        encoded = (secret.data or {}).get(ref.key)
        if encoded is None:
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            # Reported as that receiver's problem (its alerts are skipped), never a crash.
            raise UnreadableValueError(
                "is not UTF-8 text (set it with kubectl create secret generic "
                "--from-literal=KEY=VALUE)"
            ) from e

    return read


def write(directory: Path, values: dict[str, str]) -> None:
    """Write each secret to ``directory/<name>`` readable by its owner only; remove stale ones."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for stale in set(p.name for p in directory.iterdir()) - set(values):
        (directory / stale).unlink()
    for name, value in values.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
