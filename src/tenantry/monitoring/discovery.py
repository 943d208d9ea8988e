"""The identity Prometheus discovers pods as, in each cluster, and the files it reads.

The I/O half of `tenantry.observability.pods`: with a connection that may manage RBAC
(the platform's), apply the discovery identity (a ServiceAccount that may only read
pods), ask the API server for a token of it (TokenRequest: bound to the account and
expiring, so a leaked file stops working by itself), and write that token and the
cluster's CA as files only their owner can read. Prometheus reads the token file on
every request: refreshing it (`grant` again, e.g. on every `tenantry monitoring
apply`) needs no reload.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

from tenantry import errors
from tenantry.kube.client import Kube, translate
from tenantry.observability import pods

# A week: a local platform left running keeps discovering; each apply asks for a new one.
TOKEN_LIFETIME_S = 7 * 24 * 3600


def grant(kube: Kube, namespace: str, *, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
    """Make sure the discovery identity exists in ``kube``'s cluster (its ServiceAccount
    in ``namespace``) and return a fresh token of it."""
    for manifest in pods.discovery_identity(namespace):
        kube.apply(manifest)
    request = ServiceAccount.Token(
        metadata=ObjectMeta(name=pods.DISCOVERY_ACCOUNT, namespace=namespace),
        spec=TokenRequestSpec(audiences=[], expirationSeconds=lifetime_s),
    )
    action = f"create a token for ServiceAccount/{namespace}/{pods.DISCOVERY_ACCOUNT}"
    with translate(action):
        issued = kube.client.create(request, pods.DISCOVERY_ACCOUNT, namespace=namespace)
    token = issued.status.token if issued.status is not None else ""
    if not token:
        raise errors.ClusterError(
            f"{action}: the API server returned no token",
            fix="check that kube-controller-manager and the API server's service account "
            "signing key are configured (`kubectl create token` shows the same)",
        )
    return str(token)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only, replacing the file in one step."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)  # Prometheus never reads half a token


def write_access(
    directory: Path,
    *,
    cluster: str,
    api_server: str,
    ca_pem: bytes,
    token: str,
    node_pattern: str = ".+",
) -> pods.ClusterAccess:
    """Write the cluster's CA and the discovery token into ``directory`` (mode 0700, the
    files 0600) and return how Prometheus reaches the cluster with them."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_file, token_file = directory / "ca.crt", directory / "token"
    _write_private(ca_file, ca_pem)
    _write_private(token_file, token.encode())
    return pods.ClusterAccess(
        cluster=cluster,
        api_server=api_server,
        ca_file=str(ca_file),
        token_file=str(token_file),
        node_pattern=node_pattern,
    )
