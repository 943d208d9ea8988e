"""Pure parts of the Kubernetes adapter: identities, error classification, rollout state."""

from __future__ import annotations

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.apps_v1 import DeploymentSpec, DeploymentStatus
from lightkube.models.meta_v1 import ObjectMeta, Status
from lightkube.resources.apps_v1 import Deployment

from tenantry import errors
from tenantry.kube import client, waits


def test_service_account_identity_leaves_groups_to_the_api_server() -> None:
    identity = client.Identity.service_account("team-a", "tenantry-deployer")
    assert identity.headers() == [
        ("Impersonate-User", "system:serviceaccount:team-a:tenantry-deployer"),
    ]


def test_groups_repeat_the_impersonate_group_header() -> None:
    identity = client.Identity("alice", groups=("devs", "ops"))
    assert identity.headers() == [
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
    ]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (403, errors.ForbiddenError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.InvalidError),
        (400, errors.InvalidError),
        (503, errors.KubeUnavailableError),
        (429, errors.KubeUnavailableError),
        (418, errors.KubeError),
    ],
)
def test_api_errors_map_to_types_and_keep_the_status(code: int, kind: type) -> None:
    status = Status(code=code, reason="Reason", message="the server's own words")
    err = client.from_api_error(ApiError(status=status), "create Pod/ns/p")
    assert type(err) is kind
    assert err.code == code
    assert err.reason == "Reason"
    assert err.status_message == "the server's own words"
    assert "create Pod/ns/p" in str(err) and "the server's own words" in str(err)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'pods "p" is forbidden: exceeded quota: q, requested: cpu=2, limited: cpu=1',
            errors.QuotaExceededError,
        ),
        (
            'pods "p" is forbidden: violates PodSecurity "restricted:latest": privileged',
            errors.AdmissionDeniedError,
        ),
        ('pods is forbidden: User "u" cannot create resource "pods"', errors.ForbiddenError),
        (
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'p' "
            "denied request: images x are not from the tenant's allowed registries",
            errors.AdmissionDeniedError,
        ),
    ],
)
def test_forbidden_is_split_by_who_refused(message: str, kind: type) -> None:
    err = client.from_api_error(
        ApiError(status=Status(code=403, reason="Forbidden", message=message)), "x"
    )
    assert type(err) is kind


def test_describe_names_kind_namespace_and_name() -> None:
    assert (
        client.describe({"kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}) == "Pod/n/p"
    )
    assert client.describe({"kind": "Namespace", "metadata": {"name": "n"}}) == "Namespace/n"


def _deployment(
    replicas: int | None, generation: int, status: DeploymentStatus | None
) -> Deployment:
    return Deployment(
        metadata=ObjectMeta(name="d", generation=generation),
        spec=DeploymentSpec(replicas=replicas, selector=None, template=None),  # type: ignore[arg-type]
        status=status,
    )


def _status(
    observed: int, total: int, updated: int, ready: int, available: int
) -> DeploymentStatus:
    return DeploymentStatus(
        observedGeneration=observed, replicas=total, updatedReplicas=updated,
        readyReplicas=ready, availableReplicas=available,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("replicas", "generation", "status", "complete"),
    [
        (3, 1, None, False),
        (3, 2, _status(1, 3, 3, 3, 3), False),  # the controller has not seen the change
        (3, 2, _status(2, 3, 3, 2, 2), False),  # one new pod not ready yet
        (3, 2, _status(2, 4, 3, 3, 3), False),  # an old pod still runs
        (1, 2, _status(2, 2, 1, 1, 1), False),  # new pod unready, old one serving
        (3, 2, _status(2, 3, 3, 3, 3), True),
        (None, 1, _status(1, 1, 1, 1, 1), True),
        (0, 1, DeploymentStatus(observedGeneration=1), True),
    ],
)
def test_rollout_state_is_complete_only_when_every_replica_is_current_and_available(
    replicas: int | None, generation: int, status: DeploymentStatus | None, complete: bool
) -> None:
    assert waits.rollout_state(_deployment(replicas, generation, status)).complete is complete


def test_errors_print_their_fix() -> None:
    err = errors.ToolMissingError("helm is not installed", fix="run `tenantry tools install`")
    assert str(err) == "helm is not installed (run `tenantry tools install`)"
    assert err.exit_code == 1
    assert errors.UsageError("x").exit_code == 2


def test_retry_policy_is_in_the_type() -> None:
    assert errors.KubeUnavailableError("x").retryable
    assert not errors.ForbiddenError("x").retryable
    assert not errors.SpecError([]).retryable
