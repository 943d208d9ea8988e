"""Each policy rule with an object that passes and one that fails (pure)."""

from __future__ import annotations

import copy

import pytest

from tenantry.charts import manifests, policy

CONTEXT = policy.Context(
    tenant="alpha", namespace="alpha", registries=("registry.acme.example/alpha",)
)
LABELS = {
    "tenantry.dev/tenant": "alpha",
    "tenantry.dev/service": "web",
    "app.kubernetes.io/version": "1.0.0",
    "app.kubernetes.io/managed-by": "Helm",
}
CONTAINER = {
    "name": "app",
    "image": "registry.acme.example/alpha/web:1",
    "resources": {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "100m", "memory": "64Mi"},
    },
    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
}
GOOD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": LABELS},
    "spec": {"template": {"spec": {"containers": [CONTAINER]}}},
}


def rendered(manifest: dict) -> manifests.Rendered:
    return manifests.Rendered(source="web/templates/deployment.yaml", manifest=manifest)


def findings(manifest: dict) -> list[policy.Finding]:
    return policy.check([rendered(manifest)], CONTEXT)


def mutate(change) -> dict:
    manifest = copy.deepcopy(GOOD)
    change(manifest)
    return manifest


def container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_a_good_deployment_has_no_findings() -> None:
    assert findings(GOOD) == []


@pytest.mark.parametrize(
    ("rule", "change", "field", "problem"),
    [
        ("namespaced-only", lambda m: m.update(kind="ClusterRole"), "kind", "ClusterRole is cluster-scoped"),
        ("own-namespace", lambda m: m["metadata"].update(namespace="kube-system"), "metadata.namespace",
         "is 'kube-system', outside the tenant's namespace 'alpha'"),
        ("allowed-registries", lambda m: container(m).update(image="docker.io/nginx"),
         "spec.template.spec.containers[0].image", "'docker.io/nginx' is not from the tenant's registries"),
        ("allowed-registries", lambda m: container(m).update(image="registry.acme.example/beta/web:1"),
         "spec.template.spec.containers[0].image", "is not from the tenant's registries"),
        ("resources", lambda m: container(m)["resources"].pop("limits"),
         "spec.template.spec.containers[0].resources", "missing limits.cpu, limits.memory"),
        ("host-access", lambda m: container(m).update(securityContext={"privileged": True}),
         "spec.template.spec.containers[0].securityContext.privileged", "is true"),
        ("host-access", lambda m: m["spec"]["template"]["spec"].update(hostNetwork=True),
         "spec.template.spec.hostNetwork", "is true"),
        ("host-access", lambda m: m["spec"]["template"]["spec"].update(hostPID=True),
         "spec.template.spec.hostPID", "is true"),
        ("host-access", lambda m: m["spec"]["template"]["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
         "spec.template.spec.volumes[0].hostPath", "mounts the node's disk"),
        ("probes", lambda m: container(m).pop("readinessProbe"),
         "spec.template.spec.containers[0].readinessProbe", "is missing"),
        ("labels", lambda m: m["metadata"]["labels"].pop("tenantry.dev/service"), "metadata.labels",
         "missing tenantry.dev/service"),
        ("labels", lambda m: m["metadata"]["labels"].update({"tenantry.dev/tenant": "beta"}),
         "metadata.labels.tenantry.dev/tenant", "is 'beta', not 'alpha'"),
    ],
)  # fmt: skip
def test_each_rule_names_field_problem_and_fix(rule: str, change, field: str, problem: str) -> None:
    found = [f for f in findings(mutate(change)) if f.rule == rule]
    assert len(found) == 1, findings(mutate(change))
    assert found[0].field == field
    assert problem in found[0].problem
    assert found[0].fix
    assert str(found[0]).startswith(f"web/templates/deployment.yaml: {found[0].object}: {field}: ")


def test_jobs_need_no_probes_but_cronjob_images_are_checked() -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "labels": LABELS},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {**CONTAINER, "image": "quay.io/x:1", "readinessProbe": None}]}}}}},
    }  # fmt: skip
    del job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    rules = [f.rule for f in findings(job)]
    assert rules == ["allowed-registries"]
    assert findings(job)[0].field == "spec.jobTemplate.spec.template.spec.containers[0].image"


def test_init_containers_are_checked_too() -> None:
    manifest = mutate(lambda m: m["spec"]["template"]["spec"].update(
        initContainers=[{"name": "init", "image": "docker.io/busybox"}]))  # fmt: skip
    fields = {f.field for f in findings(manifest)}
    assert "spec.template.spec.initContainers[0].image" in fields
    assert "spec.template.spec.initContainers[0].resources" in fields


def test_split_keeps_the_source_file_and_drops_empty_documents() -> None:
    text = (
        "---\n# Source: web/templates/a.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n"
        "---\n# Source: web/templates/empty.yaml\n"
        "---\n# Source: web/templates/b.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
    )
    objects = manifests.split(text)
    assert [(o.source, o.ref) for o in objects] == [
        ("web/templates/a.yaml", "Service/a"),
        ("web/templates/b.yaml", "ConfigMap/b"),
    ]


def test_split_refuses_something_that_is_not_an_object() -> None:
    from tenantry import errors

    with pytest.raises(
        errors.HelmError, match=r"web/templates/x\.yaml rendered something that is not"
    ):
        manifests.split("# Source: web/templates/x.yaml\n- a\n- b\n")
