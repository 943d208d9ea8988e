"""Registry credentials from a Kubernetes Secret, read from a real API server."""

from __future__ import annotations

import pytest

from tenantry.artifacts import oci
from tenantry.kube.client import Kube
from tenantry.spec import models


def test_credentials_come_from_a_secret_and_a_missing_or_bad_one_names_itself(
    admin: Kube, namespace: str
) -> None:
    admin.apply({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry", "namespace": namespace},
        "stringData": {"login": "ci-pusher:s3cr3t-value\n", "bad": "no separator"},
    })  # fmt: skip
    found = oci.credentials_from_secret(
        admin, namespace, models.SecretRef(name="registry", key="login")
    )
    assert found == oci.Credentials("ci-pusher", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(found)

    missing = models.SecretRef(name="nope", key="login")
    with pytest.raises(
        oci.RegistryError, match=f"Secret {namespace}/nope key login does not exist"
    ) as e:
        oci.credentials_from_secret(admin, namespace, missing)
    assert "kubectl" in (e.value.fix or "")
    bad = models.SecretRef(name="registry", key="bad")
    with pytest.raises(oci.RegistryError, match="does not hold one `user:password` line") as e:
        oci.credentials_from_secret(admin, namespace, bad)
    assert "no separator" not in str(e.value)
