"""People reach a real API server with their own bearer tokens, and RBAC decides by environment.

One cluster, created with the local people's token file (`tenantry.local.people`),
holds payments twice, planned once as production (people read only) and once as
staging (people write), plus checkout as staging. Every request below carries a
person's own ``Authorization: Bearer`` token, never the admin certificate or
impersonation, so what is proven is what alice's kubectl would get.
"""

from __future__ import annotations

import dataclasses
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret

from tenantry import errors
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.local import people, platform
from tenantry.spec import models, repository
from tenantry.tenancy import objects
from tenantry.tenancy.plan import plan
from tests.conftest import SESSION_ID

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)
PROD, STAGING, CHECKOUT = "payments-prod", "payments-stg", "checkout"
ALICE, BOB, ERIN, CAROL = (f"{n}@acme.example" for n in ("alice", "bob", "erin", "carol"))
IMAGE = "registry.acme.example/payments/api:1"


@pytest.fixture(scope="module")
def people_cluster(state_dir: Path) -> Iterator[localcluster.LocalCluster]:
    """A cluster whose API server accepts the example's people's tokens, with payments
    onboarded as production (``payments-prod``) and staging (``payments-stg``)."""
    roster = people.ensure(REPO)
    name = f"people-{SESSION_ID}"
    created = localcluster.create(name, nodes=1, token_file=roster.token_file)
    try:
        payments, checkout = REPO.tenant("payments"), REPO.tenant("checkout")
        desired = [
            *objects.platform_objects(REPO.platform),
            *objects.tenant_objects(payments, REPO.platform, environment="production",
                                    namespace=PROD, people_may_write=False),
            *objects.tenant_objects(payments, REPO.platform, environment="staging",
                                    namespace=STAGING, people_may_write=True),
            *objects.tenant_objects(checkout, REPO.platform, environment="staging",
                                    people_may_write=True),
        ]  # fmt: skip
        with created.connect() as admin:
            # The planner's order: namespaces and roles before what lives in them.
            for change in plan(name, desired, {}).changes:
                assert change.manifest is not None
                admin.apply(change.manifest)
            admin.apply(pod("web", PROD))
        yield created
    finally:
        localcluster.delete(name)


@pytest.fixture(scope="module")
def people_admin(people_cluster: localcluster.LocalCluster) -> Iterator[Kube]:
    with people_cluster.connect() as kube:
        yield kube


@pytest.fixture
def person(people_cluster: localcluster.LocalCluster) -> Iterator[Callable[[str], Kube]]:
    """``person("alice@acme.example")``: a connection with alice's own bearer token."""
    opened: list[Kube] = []

    def connect(user: str) -> Kube:
        kube = people_cluster.connect_with_token(people.token(user))
        opened.append(kube)
        return kube

    yield connect
    for kube in opened:
        kube.close()


def pod(name: str, namespace: str) -> dict[str, Any]:
    """A pod that Pod Security ``restricted`` and the registry policy admit."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": IMAGE,
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"cpu": "100m", "memory": "64Mi"}},
            }],
        },
    }  # fmt: skip


def deployment(name: str, namespace: str) -> dict[str, Any]:
    template = pod(name, namespace)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": template["spec"]},
        },
    }


def secret(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": {"k": "v"}}  # fmt: skip


def may(
    kube: Kube, namespace: str, verb: str, resource: str, subresource: str = "", group: str = ""
) -> bool:
    """What the API server says this connection's own user may do (SelfSubjectAccessReview)."""
    attributes = {"namespace": namespace, "verb": verb, "resource": resource, "group": group}
    if subresource:
        attributes["subresource"] = subresource
    review = kube.create({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    })  # fmt: skip
    return bool(review["status"]["allowed"])  # type: ignore[index]


def token_review(admin: Kube, token: str) -> dict[str, Any]:
    review = admin.create({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token},
    })  # fmt: skip
    return dict(review["status"])  # type: ignore[index]


def test_token_review_says_whose_token_it_is_and_a_group_users_group(people_admin: Kube) -> None:
    alice = token_review(people_admin, people.token(ALICE))
    assert alice["authenticated"] is True
    assert alice["user"]["username"] == ALICE
    assert alice["user"]["groups"] == ["system:authenticated"]
    devs = token_review(people_admin, people.token("member-of-payments-devs"))
    assert devs["user"]["username"] == "member-of-payments-devs"
    assert "payments-devs" in devs["user"]["groups"]
    assert token_review(people_admin, "not-a-token-anyone-has").get("authenticated") is not True


def test_an_unknown_token_is_unauthorized(people_cluster: localcluster.LocalCluster) -> None:
    with (
        people_cluster.connect_with_token("x" * 43) as stranger,
        pytest.raises(errors.KubeError) as refused,
    ):
        stranger.list(Pod, namespace=PROD)
    assert refused.value.code == 401


def test_in_production_an_owner_reads_pods_and_logs_but_writes_nothing(
    person: Callable[[str], Kube],
) -> None:
    alice = person(ALICE)
    assert [p.metadata.name for p in alice.list(Pod, namespace=PROD) if p.metadata] == ["web"]
    assert alice.get(Pod, "web", namespace=PROD).metadata is not None
    assert may(alice, PROD, "get", "pods", "log")
    assert may(alice, PROD, "list", "deployments", group="apps")
    with pytest.raises(errors.ForbiddenError) as refused:
        alice.create(deployment("api", PROD))
    assert ALICE in refused.value.status_message
    with pytest.raises(errors.ForbiddenError):
        alice.create(secret("helm-release-record", PROD))
    with pytest.raises(errors.ForbiddenError):
        alice.list(Secret, namespace=PROD)
    with pytest.raises(errors.ForbiddenError):
        alice.delete(Pod, "web", namespace=PROD)
    assert not may(alice, PROD, "create", "pods", "exec")
    assert not may(alice, PROD, "create", "pods", "portforward")


def test_in_staging_an_owner_deploys_and_so_does_her_group(person: Callable[[str], Kube]) -> None:
    alice = person(ALICE)
    alice.create(deployment("api", STAGING))
    assert alice.get(Deployment, "api", namespace=STAGING).spec.replicas == 1
    assert alice.delete(Deployment, "api", namespace=STAGING)
    alice.create(secret("api-config", STAGING))
    assert alice.delete(Secret, "api-config", namespace=STAGING)
    leads = person("member-of-payments-leads")
    leads.create(deployment("lead", STAGING))
    assert leads.delete(Deployment, "lead", namespace=STAGING)


@pytest.mark.parametrize("namespace", [PROD, STAGING])
def test_a_member_reads_but_writes_nowhere(person: Callable[[str], Kube], namespace: str) -> None:
    for user in (ERIN, "member-of-payments-devs"):
        member = person(user)
        member.list(Pod, namespace=namespace)
        assert may(member, namespace, "get", "pods", "log")
        with pytest.raises(errors.ForbiddenError):
            member.create(deployment("erin", namespace))
        with pytest.raises(errors.ForbiddenError):
            member.create(secret("erin", namespace))


def test_another_tenants_owner_cannot_read_payments(person: Callable[[str], Kube]) -> None:
    carol = person(CAROL)
    carol.list(Pod, namespace=CHECKOUT)  # her own tenant: allowed
    for namespace in (PROD, STAGING):
        with pytest.raises(errors.ForbiddenError) as refused:
            carol.list(Pod, namespace=namespace)
        assert CAROL in refused.value.status_message
        assert not may(carol, namespace, "get", "pods", "log")


def test_token_files_are_private_and_tokens_are_kept_across_runs(state_dir: Path) -> None:
    folder = people.directory()
    assert folder.is_relative_to(state_dir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (people.TOKENS_CSV, people.TOKENS_JSON):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    before = {user: people.token(user) for user in people.users()}
    again = people.ensure(REPO)
    assert again.added == ()
    assert {user: people.token(user) for user in people.users()} == before
    assert len(set(before.values())) == len(before)  # nobody shares a token
    with pytest.raises(errors.UsageError, match=r"no local token for 'zoe@acme\.example'"):
        people.token("zoe@acme.example")


def test_up_refuses_a_platform_cluster_made_without_peoples_tokens(state_dir: Path) -> None:
    # `staging` of this session's private state directory, never the local platform's.
    name = platform.CLUSTERS[0]
    localcluster.create(name, nodes=1)
    try:
        with pytest.raises(errors.ClusterError) as refused:
            platform.up(repo_root=EXAMPLE)
        assert f"local cluster {name!r} was created without people's tokens" in str(refused.value)
        assert refused.value.fix == "recreate the platform: `tenantry down`, then `tenantry up`"
        # Nothing else was started on the way to the refusal.
        existing = {c.name for c in localcluster.list_clusters()}
        assert not existing & set(platform.CLUSTERS[1:])
    finally:
        localcluster.delete(name)


def test_a_new_person_works_after_the_cluster_restarts(
    people_cluster: localcluster.LocalCluster,
) -> None:
    # Runs last in this module: it restarts the cluster.
    alice_token = people.token(ALICE)
    checkout = REPO.tenant("checkout")
    owners = models.People(users=(CAROL, "frank@acme.example"))
    tenants = tuple(
        t.model_copy(update={"owners": owners}) if t.name == "checkout" else t for t in REPO.tenants
    )
    assert checkout in REPO.tenants
    roster = people.ensure(dataclasses.replace(REPO, tenants=tenants))
    assert roster.added == ("frank@acme.example",)
    assert people_cluster.token_file_changed()
    frank = people.token("frank@acme.example")
    with (
        people_cluster.connect_with_token(frank) as kube,
        pytest.raises(errors.KubeError) as refused,
    ):
        kube.list(Pod, namespace=CHECKOUT)
    assert refused.value.code == 401  # the API server read the file before frank was in it

    started = time.monotonic()
    localcluster.restart(people_cluster.name)
    assert time.monotonic() - started < 120
    assert not people_cluster.token_file_changed()
    assert people_cluster.token_file == people.token_file()
    # Authenticated now; RBAC still has no binding for frank (the repo here was not applied).
    with people_cluster.connect_with_token(frank) as kube, pytest.raises(errors.ForbiddenError):
        kube.list(Pod, namespace=CHECKOUT)
    assert people.token(ALICE) == alice_token
    with people_cluster.connect_with_token(alice_token) as kube:
        assert may(kube, STAGING, "create", "deployments", group="apps")
