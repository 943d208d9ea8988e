"""What a service's descriptor may say about secrets, and which keys a rendered chart
reads (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tenantry.charts import manifests, secret_refs
from tenantry.spec import services

BASE = {"name": "api", "version": "1.0.0", "image": "registry.acme.example/payments/api:1.0.0"}


def test_a_descriptor_maps_variables_to_its_own_tenant_s_secret_keys() -> None:
    descriptor = services.ServiceDescriptor.model_validate(
        {**BASE, "secrets": {"DB_PASSWORD": {"name": "db", "key": "password"},
                             "API_TOKEN": {"name": "upstream", "key": "token.v2"}}}
    )  # fmt: skip
    assert services.values(descriptor, tenant="payments")["secrets"] == [
        {"env": "API_TOKEN", "name": "upstream", "key": "token.v2"},
        {"env": "DB_PASSWORD", "name": "db", "key": "password"},
    ]


@pytest.mark.parametrize(
    ("secrets", "env", "says"),
    [
        ({"DB": {"name": "checkout/db", "key": "password"}}, {}, "another tenant's secret"),
        ({"DB": {"name": "Db_1", "key": "password"}}, {}, "DNS-1123 label"),
        ({"DB": {"name": "db", "key": "pass word"}}, {}, "String should match pattern"),
        ({"1DB": {"name": "db", "key": "password"}}, {}, "not an environment variable name"),
        ({"DB": {"name": "db", "key": "password"}}, {"DB": "x"}, "also set in env"),
        ({"PORT": {"name": "db", "key": "password"}}, {}, "also set in env (or is PORT)"),
        ({"DB": {"name": "db", "key": "password", "value": "hunter2"}}, {}, "Extra inputs"),
    ],
)
def test_a_bad_reference_is_refused_with_the_reason(
    secrets: dict[str, Any], env: dict[str, str], says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        services.ServiceDescriptor.model_validate({**BASE, "env": env, "secrets": secrets})
    assert says in str(refused.value)


def _deployment(pod: dict[str, Any]) -> manifests.Rendered:
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
                "spec": {"template": {"spec": pod}}}  # fmt: skip
    return manifests.Rendered(manifest=manifest, source="templates/deployment.yaml")


def test_every_way_a_pod_reads_a_secret_is_found_except_the_chart_s_own() -> None:
    pod = {
        "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "bootstrap"}}]}],
        "containers": [{"name": "app", "env": [
            {"name": "PLAIN", "value": "x"},
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "OWN", "valueFrom": {"secretKeyRef": {"name": "own", "key": "k"}}},
        ]}],
        "volumes": [{"name": "tls", "secret": {"secretName": "tls",
                                                "items": [{"key": "tls.crt", "path": "c"}]}},
                    {"name": "cfg", "configMap": {"name": "cfg"}}],
    }  # fmt: skip
    own = manifests.Rendered(
        manifest={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "own"}},
        source="templates/secret.yaml",
    )
    assert secret_refs.references([_deployment(pod), own]) == {
        "bootstrap": set(), "db": {"password"}, "tls": {"tls.crt"},
    }  # fmt: skip


def test_a_key_without_a_value_is_missing_in_each_environment_that_lacks_it() -> None:
    refs = {"db": {"password", "user"}, "bootstrap": set()}
    known = {"staging": {("db", "password"), ("db", "user"), ("bootstrap", "a")},
             "production": {("db", "user")}}  # fmt: skip
    assert secret_refs.missing(refs, known, ["staging", "production", "qa"]) == [
        ("production", "bootstrap", "*"),
        ("production", "db", "password"),
        ("qa", "bootstrap", "*"),
        ("qa", "db", "password"),
        ("qa", "db", "user"),
    ]
    assert secret_refs.missing({}, {}, ["staging"]) == []


def test_an_environment_keeps_its_values_in_its_clusters_unless_it_names_secrets_manager() -> None:
    from tenantry.spec import models

    cluster = {"name": "c", "local": "c"}
    default = models.Environment.model_validate({"name": "staging", "clusters": [cluster]})
    assert default.secrets.store == "tenantry"
    aws = models.Environment.model_validate({"name": "production", "clusters": [cluster],
        "secrets": {"store": "aws-secrets-manager", "prefix": "acme/tenantry/"}})  # fmt: skip
    assert (aws.secrets.store, aws.secrets.prefix) == ("aws-secrets-manager", "acme/tenantry/")
    for bad in ({"store": "vault"}, {"prefix": "has space/"}):
        with pytest.raises(ValidationError):
            models.Environment.model_validate({"name": "x", "clusters": [cluster],
                                               "secrets": bad})  # fmt: skip


def test_a_tenants_chart_may_not_bring_an_external_secret_or_a_store() -> None:
    from tenantry.charts import policy

    context = policy.Context(tenant="payments", namespace="payments", registries=())
    for kind in ("ExternalSecret", "SecretStore", "PushSecret"):
        obj = manifests.Rendered(
            source="templates/es.yaml",
            manifest={
                "apiVersion": "external-secrets.io/v1",
                "kind": kind,
                "metadata": {"name": "x"},
            },
        )
        rules = {f.rule for f in policy.check([obj], context)}
        assert "platform-secrets-only" in rules, kind
    other = manifests.Rendered(
        source="templates/x.yaml",
        manifest={
            "apiVersion": "example.com/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "x"},
        },
    )
    assert "platform-secrets-only" not in {f.rule for f in policy.check([other], context)}
