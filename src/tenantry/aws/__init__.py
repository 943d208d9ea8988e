"""The AWS adapter: S3 and SQS clients for the platform's artifact store and queue.

One place decides where requests go: AWS itself by the standard credential chain,
any S3/SQS-compatible endpoint named in platform.yaml, or a named endpoint that
whoever runs it resolves at run time — ``local``, the local server of `tenantry up`,
which the local platform registers from above (`register_endpoint`), so this adapter
never imports it. botocore's errors are translated here into `AwsError`.

boto3 is imported when a client is made, not with this module: every command loads
this module (the local platform registers its endpoint), few talk to S3 or SQS, and
boto3 alone takes a quarter of a second to import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenantry import errors
from tenantry.spec import models

if TYPE_CHECKING:
    from botocore.config import Config


def _config() -> Config:
    # Bounded retries with backoff: a short outage of S3 or SQS is ridden out, a long
    # one surfaces as an error the caller retries on its own schedule. The read
    # timeout must outlast SQS's 20 s long poll; TENANTRY_AWS_TIMEOUT_S shortens both
    # where a quick failure is wanted (tests of an outage).
    from botocore.config import Config

    timeout = float(os.environ.get("TENANTRY_AWS_TIMEOUT_S", "25"))
    return Config(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=min(3.0, timeout),
        read_timeout=timeout,
    )


class AwsError(errors.TenantryError):
    """S3 or SQS refused or failed a request; ``code`` is AWS's error code."""

    def __init__(self, message: str, *, code: str = "", fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.code = code
        self.retryable = code in (
            "",
            "SlowDown",
            "ServiceUnavailable",
            "InternalError",
            "RequestTimeout",
        )


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn botocore errors raised inside the block into `AwsError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        message = str(e.response.get("Error", {}).get("Message", e))
        raise AwsError(f"{action}: {code}: {message}", code=code) from e
    except BotoCoreError as e:
        raise AwsError(f"{action}: {e}", fix="check that the S3/SQS endpoint is reachable") from e


@dataclass(frozen=True)
class Clients:
    """S3 and SQS clients for one platform."""

    s3: Any
    sqs: Any
    endpoint: str | None


# Resolves a named endpoint to the URL of the server running now; None when none runs.
EndpointResolver = Callable[[], str | None]

_resolvers: dict[str, EndpointResolver] = {}

# The endpoint name the local platform's S3/SQS server answers to in platform.yaml.
LOCAL = "local"


def register_endpoint(name: str, resolve: EndpointResolver) -> None:
    """Let ``artifacts.endpoint: <name>`` mean the server ``resolve`` finds."""
    _resolvers[name] = resolve


def endpoint_for(artifacts: models.Artifacts) -> str | None:
    """The endpoint URL to use, resolving a named endpoint (``local``) to its server."""
    return _resolve(artifacts.endpoint, field="artifacts.endpoint")


def _resolve(endpoint: str | None, *, field: str) -> str | None:
    if endpoint is None or "://" in endpoint:
        return endpoint
    resolve = _resolvers.get(endpoint)
    if resolve is None:
        raise errors.TenantryError(
            f"platform.yaml says {field}: {endpoint}, which nothing here resolves",
            fix=f"run it through the tenantry command, or set {field} to a URL",
        )
    url = resolve()
    if url is None:
        raise errors.TenantryError(
            f"platform.yaml says {field}: {endpoint}, but that server is not running",
            fix="start the local platform: tenantry up",
        )
    return url


def secrets_manager(store: models.SecretsStore, *, field: str) -> Any:
    """A Secrets Manager client for an environment's ``secrets`` store."""
    import boto3

    endpoint = _resolve(store.endpoint, field=field)
    kwargs: dict[str, Any] = {"region_name": store.region, "config": _config()}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if store.endpoint == LOCAL:
        # The local server accepts any credentials; these never leave the machine.
        kwargs.update(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
    return boto3.client("secretsmanager", **kwargs)


def clients(platform: models.Platform) -> Clients:
    """Clients for the platform's artifact store and queue."""
    bucket = platform.bucket
    if bucket is None or platform.queue is None:
        raise errors.UsageError(
            "platform.yaml has no S3 artifacts/queue section",
            fix="add artifacts: {bucket: ...} and queue: {name: ...} (see examples/platform-repo)",
        )
    import boto3

    endpoint = endpoint_for(bucket)
    kwargs: dict[str, Any] = {"region_name": bucket.region, "config": _config()}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if bucket.endpoint == LOCAL:
        # The local server accepts any credentials; these never leave the machine.
        kwargs.update(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
    return Clients(
        s3=boto3.client("s3", **kwargs), sqs=boto3.client("sqs", **kwargs), endpoint=endpoint
    )


def route53_client() -> Any:
    """A Route 53 client with the environment's credentials (the traffic router on AWS)."""
    import boto3

    return boto3.client("route53", config=_config())
