"""Every error Tenantry raises on purpose, in one hierarchy.

The CLI maps these types to exit codes in one place (`tenantry.cli.app`); nothing
above the adapters catches a client library's or `subprocess`'s exceptions: the
adapters translate them here, chaining the original as ``__cause__``.

    TenantryError                 anything Tenantry reports to a person
    ├── UsageError                the command line itself is wrong (exit 2)
    ├── SpecError                 a platform-repository file is invalid
    ├── ToolError                 a pinned tool is missing, failed to build, or failed to run
    │   └── ToolMissingError      a tool is not installed; `tenantry tools install` fixes it
    ├── ClusterError              a local cluster could not be created, found or reached
    │   ├── ClusterNotFoundError  no local cluster has that name
    │   └── RealNodeUnsupportedError  this machine cannot run a real node (root, cgroups, runc)
    ├── KubeError                 the Kubernetes API server refused or failed a request
    │   ├── ForbiddenError        RBAC said no (403)
    │   ├── AdmissionDeniedError  an admission plugin said no (PodSecurity, policy)
    │   │   └── QuotaExceededError  ResourceQuota said no
    │   ├── NotFoundError         the object does not exist (404)
    │   ├── ConflictError         apply conflict or already exists (409)
    │   ├── InvalidError          validation or admission refused the object (422/400)
    │   └── KubeUnavailableError  the API server did not answer (retryable)
    ├── HelmError                 a helm command failed; carries helm's own stderr
    ├── WaitTimeoutError          a wait ran out of time; says what it was waiting for
    │   (defined beside the adapter or action that raises them:)
    ├── aws.AwsError              S3 or SQS refused or failed; AWS's error code, retryable by code
    ├── store.ImmutableVersionError   a chart version is already published with other content
    ├── store.DigestMismatchError     a downloaded archive is not the published one
    ├── promotion.PromotionError      a promotion or approval is refused
    └── verify.run.RolloutFailedError  a verified service's pods did not become ready (the
                                      kubelet's reason, exit code, events and log lines)

Every message names the object, the bad value and the fix, because it is the only
thing a user sees (tracebacks only with ``--debug``).
"""

from __future__ import annotations

from dataclasses import dataclass


class TenantryError(Exception):
    """Base of every error Tenantry reports; ``fix`` tells the user what to do next."""

    exit_code: int = 1
    # Whether trying the same thing again later may succeed; callers that retry
    # (the deployer, waits) decide by type, never by parsing messages.
    retryable: bool = False

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class UsageError(TenantryError):
    """The command line names something that does not exist or combines options wrongly."""

    exit_code = 2


@dataclass(frozen=True)
class SpecProblem:
    """One invalid field in one platform-repository file."""

    file: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} ({self.fix})"


class SpecError(TenantryError):
    """One or more platform-repository files are invalid; all problems are reported at once."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the platform repository:\n{lines}")

    def __str__(self) -> str:
        return self.message


class ToolError(TenantryError):
    """A pinned external tool failed to build, install, or run."""


class ToolMissingError(ToolError):
    """A pinned tool is not installed in the tool cache."""


class ClusterError(TenantryError):
    """A local cluster could not be created, deleted, or reached."""


class ClusterNotFoundError(ClusterError):
    """No local cluster of that name exists."""


class RealNodeUnsupportedError(ClusterError):
    """This machine cannot run a real node's containers (not root, no cgroups, no runc...);
    the message names what is missing and ``fix`` how to get it. kwok-only clusters
    still work here."""


class KubeError(TenantryError):
    """The Kubernetes API server refused or failed a request.

    ``reason`` and ``status_message`` are the API server's own ``Status`` fields,
    shown verbatim so users see exactly what RBAC or admission decided.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        reason: str = "",
        status_message: str = "",
        fix: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.code = code
        self.reason = reason
        self.status_message = status_message


class ForbiddenError(KubeError):
    """RBAC or an authorizer refused the request (HTTP 403)."""


class AdmissionDeniedError(KubeError):
    """An admission plugin (PodSecurity, a ValidatingAdmissionPolicy) refused the object."""


class QuotaExceededError(AdmissionDeniedError):
    """The namespace's ResourceQuota has no room for the object."""


class NotFoundError(KubeError):
    """The object or its namespace does not exist (HTTP 404)."""


class ConflictError(KubeError):
    """The object already exists or another field manager owns the field (HTTP 409)."""

    retryable = True


class InvalidError(KubeError):
    """Validation, quota or an admission policy refused the object (HTTP 400/422)."""


class KubeUnavailableError(KubeError):
    """The API server did not answer or answered 5xx; retrying later may succeed."""

    retryable = True


class HelmError(TenantryError):
    """A helm command exited non-zero; ``stderr`` is helm's own explanation."""

    def __init__(self, message: str, *, stderr: str = "", fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.stderr = stderr


class WaitTimeoutError(TenantryError):
    """A wait ran out of time; the message says what was not reached."""
