"""Tenant → objects, and observed + desired → plan: tables, no cluster."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tenantry.spec import repository
from tenantry.tenancy import objects, reconcile
from tenantry.tenancy.plan import ObjectKey, differences, plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)
PAYMENTS = REPO.tenant("payments")
CHECKOUT = REPO.tenant("checkout")


def by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def test_tenant_gets_namespace_quota_limits_deployer_bindings_and_isolation() -> None:
    got = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    kinds = sorted(m["kind"] for m in got)
    assert kinds == sorted(
        ["Namespace", "ResourceQuota", "LimitRange", "ServiceAccount", "RoleBinding",
         "RoleBinding", "RoleBinding", "RoleBinding", "NetworkPolicy"]
    )  # fmt: skip
    for manifest in got:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tenantry"
        assert manifest["metadata"]["labels"][objects.TENANT_LABEL] == "payments"
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == "payments"


def test_namespace_enforces_restricted_pod_security_and_carries_registries() -> None:
    ns = by_kind(
        objects.tenant_objects(
            PAYMENTS, REPO.platform, environment="staging", people_may_write=True
        ),
        "Namespace",
    )[0]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[objects.ENVIRONMENT_LABEL] == "staging"
    assert (
        ns["metadata"]["annotations"][objects.REGISTRIES_ANNOTATION]
        == "registry.acme.example/payments"
    )
    assert ns["metadata"]["annotations"]["splunk.com/index"] == "payments"


def test_tenant_without_registries_gets_the_platforms() -> None:
    tenant = PAYMENTS.model_copy(update={"registries": ()})
    assert objects.tenant_registries(tenant, REPO.platform) == (
        "registry.acme.example",
        "ghcr.io/acme",
    )


def test_quota_bounds_requests_and_limits_and_merges_defaults() -> None:
    quota = by_kind(
        objects.tenant_objects(
            PAYMENTS, REPO.platform, environment="staging", people_may_write=True
        ),
        "ResourceQuota",
    )[0]
    assert quota["spec"]["hard"] == {
        "requests.cpu": "4", "limits.cpu": "4",
        "requests.memory": "8Gi", "limits.memory": "8Gi",
        "pods": "30", "services": "20", "persistentvolumeclaims": "10",
        "requests.storage": "100Gi", "services.loadbalancers": "0",
    }  # fmt: skip


def test_network_policy_admits_same_namespace_platform_and_named_tenants_only() -> None:
    policy = by_kind(
        objects.tenant_objects(
            PAYMENTS, REPO.platform, environment="staging", people_may_write=True
        ),
        "NetworkPolicy",
    )[0]
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]
    selector = policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchExpressions"][0]
    assert selector["key"] == "kubernetes.io/metadata.name"
    assert selector["values"] == ["checkout", "tenantry-ingress", "tenantry-monitoring"]


def test_deployer_cannot_touch_rbac_quota_limits_or_network_policies() -> None:
    writable = {
        (group, resource)
        for rule in objects.DEPLOYER_RULES
        if "create" in rule["verbs"] or "patch" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for forbidden in [
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "roles"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("networking.k8s.io", "networkpolicies"),
        ("", "namespaces"),
    ]:
        assert forbidden not in writable


def test_members_binding_only_when_there_are_members() -> None:
    assert "tenantry-members" not in [
        m["metadata"]["name"]
        for m in objects.tenant_objects(
            CHECKOUT, REPO.platform, environment="staging", people_may_write=True
        )
    ]


def test_platform_objects_include_one_shared_admission_policy() -> None:
    kinds = [m["kind"] for m in objects.platform_objects(REPO.platform)]
    assert kinds.count("ValidatingAdmissionPolicy") == 1
    assert kinds.count("ValidatingAdmissionPolicyBinding") == 1
    impersonate = next(
        m
        for m in objects.platform_objects(REPO.platform)
        if m["metadata"]["name"] == objects.ROLE_IMPERSONATE
    )
    assert impersonate["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"],
         "resourceNames": [objects.DEPLOYER_SA]}
    ]  # fmt: skip


def _observed(manifests: list[dict]) -> dict[ObjectKey, dict]:
    result = {}
    for manifest in manifests:
        current = copy.deepcopy(manifest)
        current["metadata"]["uid"] = "u"  # the API server adds fields of its own
        current["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = "x"
        result[ObjectKey.of(manifest)] = current
    return result


def test_plan_creates_everything_in_an_empty_cluster_namespaces_first() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    result = plan("c", desired, {})
    assert result.summary()["create"] == len(desired)
    assert result.changes[0].key.kind == "Namespace"


def test_plan_is_empty_when_the_cluster_matches() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    assert plan("c", desired, _observed(desired)).empty


def test_plan_updates_only_the_drifted_object_and_names_the_field() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    observed = _observed(desired)
    quota = ObjectKey("ResourceQuota", "payments", "tenantry-quota")
    observed[quota]["spec"]["hard"]["pods"] = "999"
    result = plan("c", desired, observed)
    assert [(c.key, c.fields) for c in result.of("update")] == [(quota, ("spec.hard.pods",))]


def test_plan_recreates_an_object_deleted_by_hand() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    observed = _observed(desired)
    del observed[ObjectKey("NetworkPolicy", "payments", "tenantry-isolation")]
    assert [c.key.kind for c in plan("c", desired, observed).of("create")] == ["NetworkPolicy"]


def test_plan_deletes_a_removed_tenant_by_its_namespace_only() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    gone = objects.tenant_objects(
        CHECKOUT, REPO.platform, environment="staging", people_may_write=True
    )
    result = plan("c", desired, _observed(desired + gone))
    assert [str(c.key) for c in result.of("delete")] == ["Namespace/checkout"]


def test_plan_deletes_a_binding_that_is_no_longer_wanted() -> None:
    desired = objects.tenant_objects(
        PAYMENTS, REPO.platform, environment="staging", people_may_write=True
    )
    without_members = [m for m in desired if m["metadata"]["name"] != "tenantry-members"]
    result = plan("c", without_members, _observed(desired))
    assert [str(c.key) for c in result.of("delete")] == ["RoleBinding/payments/tenantry-members"]


@pytest.mark.parametrize(
    ("desired", "observed", "paths"),
    [
        ({"a": "1"}, {"a": "1", "b": "2"}, []),
        ({"a": "1000m"}, {"a": "1"}, []),
        ({"a": "1Gi"}, {"a": "1024Mi"}, []),
        ({"a": "x"}, {"a": "y"}, ["a"]),
        ({"a": {"b": [1, 2]}}, {"a": {"b": [1]}}, ["a.b"]),
        ({"a": [{"k": 1}]}, {"a": [{"k": 1, "extra": 2}]}, []),
        ({"a": {"b": 1}}, {"a": None}, ["a"]),
    ],
)
def test_differences(desired: dict, observed: dict, paths: list[str]) -> None:
    assert differences(desired, observed) == paths


def _bindings(manifests: list[dict]) -> dict[str, tuple[str, list[str]]]:
    """RoleBinding name → (ClusterRole, subject names)."""
    return {
        m["metadata"]["name"]: (m["roleRef"]["name"], [s["name"] for s in m["subjects"]])
        for m in by_kind(manifests, "RoleBinding")
    }


OWNERS = ["alice@acme.example", "bob@acme.example", "payments-leads"]
MEMBERS = ["erin@acme.example", "payments-devs"]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("staging", {
            "tenantry-owners": (objects.ROLE_OWNER, OWNERS),
            "tenantry-members": (objects.ROLE_MEMBER, MEMBERS),
        }),
        ("production", {
            "tenantry-owners-viewer": (objects.ROLE_VIEWER, OWNERS),
            "tenantry-members-viewer": (objects.ROLE_VIEWER, MEMBERS),
        }),
    ],
)  # fmt: skip
def test_people_write_only_where_the_environment_lets_them(
    environment: str, expected: dict[str, tuple[str, list[str]]]
) -> None:
    manifests = [
        m
        for m in reconcile.desired(REPO, environment)
        if m["metadata"].get("namespace") == "payments"
    ]
    people = {k: v for k, v in _bindings(manifests).items() if "deployer" not in v[0]}
    assert people == expected
    # The deployer and the platform's right to impersonate it are the same everywhere.
    assert _bindings(manifests)[objects.DEPLOYER_SA] == (
        objects.ROLE_DEPLOYER,
        [objects.DEPLOYER_SA],
    )


def test_people_write_follows_the_platforms_setting_not_the_environments_name() -> None:
    staging, production = REPO.platform.environments
    assert staging.people_may_write and not production.people_may_write
    opened = production.model_copy(update={"people_write": True})
    assert opened.people_may_write
    closed = staging.model_copy(update={"people_write": False})
    assert not closed.people_may_write


def test_a_caller_that_does_not_say_gets_read_only_people() -> None:
    names = _bindings(objects.tenant_objects(PAYMENTS, REPO.platform, environment="x"))
    assert set(names) >= {"tenantry-owners-viewer", "tenantry-members-viewer"}
    assert "tenantry-owners" not in names


def test_viewer_reads_workloads_logs_and_quota_but_never_secrets_exec_or_writes() -> None:
    granted = {
        (group, resource, verb)
        for rule in objects.VIEWER_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {verb for _, _, verb in granted} == {"get", "list", "watch"}
    resources = {(group, resource) for group, resource, _ in granted}
    for readable in [("", "pods"), ("", "pods/log"), ("apps", "deployments"), ("", "services"),
                     ("", "configmaps"), ("", "events"), ("", "resourcequotas")]:  # fmt: skip
        assert readable in resources
    for hidden in ["secrets", "pods/exec", "pods/attach", "pods/portforward", "serviceaccounts"]:
        assert hidden not in {resource for _, resource in resources}
    assert objects.ROLE_VIEWER in [
        m["metadata"]["name"] for m in objects.platform_objects(REPO.platform)
    ]


def test_flipping_people_write_replaces_the_bindings_instead_of_changing_their_role() -> None:
    # A RoleBinding's roleRef is immutable: the plan creates the read-only bindings and
    # deletes the writable ones rather than updating them in place.
    before = objects.tenant_objects(PAYMENTS, REPO.platform, environment="production",
                                    people_may_write=True)  # fmt: skip
    after = objects.tenant_objects(PAYMENTS, REPO.platform, environment="production")
    result = plan("c", after, _observed(before))
    assert [str(c.key) for c in result.of("create")] == [
        "RoleBinding/payments/tenantry-members-viewer",
        "RoleBinding/payments/tenantry-owners-viewer",
    ]
    assert [str(c.key) for c in result.of("delete")] == [
        "RoleBinding/payments/tenantry-members",
        "RoleBinding/payments/tenantry-owners",
    ]
    assert result.of("update") == []
